// The detail panel: one capability's metadata as a key/value list, and its dependencies and
// dependents with a satisfied / unsatisfied / missing mark on each.

import { capabilityPath, getJSON } from "./api.js";
import { clip, h, satisfactionMark, stateBadge } from "./dom.js";

const MAX_DEPTH = 4;

/** The capability, its direct dependencies and its direct dependents, fetched together. */
export async function loadDetail(id, signal) {
  const path = capabilityPath(id);
  const [item, dependencies, dependents] = await Promise.all([
    getJSON(path, { signal }),
    getJSON(`${path}/dependencies`, { signal }),
    getJSON(`${path}/dependents`, { signal }),
  ]);
  return { item, dependencies: dependencies.items, dependents: dependents.items };
}

/** The panel's content for a loaded detail; `onSelect(id)` follows a link to another capability. */
export function renderDetail(detail, { onSelect, onClose }) {
  const { item } = detail;
  const metadata = item.metadata ?? {};
  const description = metadata.dc_description;
  return [
    h(
      "div",
      { class: "detail-head" },
      h("h2", { id: "detail-title", tabindex: "-1", class: "detail-id" }, item.id),
      h("button", { type: "button", class: "close", "aria-label": "Close the details", onclick: onClose }, "\u2715"),
    ),
    h(
      "p",
      { class: "detail-badges" },
      h("span", { class: "badge type" }, item.type),
      " ",
      h("span", { class: "badge version" }, `v${item.version}`),
      " ",
      stateBadge(item.state),
    ),
    metadata.dc_title ? h("p", { class: "detail-title" }, String(metadata.dc_title)) : null,
    typeof description === "string" ? h("p", { class: "detail-description" }, clip(description, 2000)) : null,
    edgeSection("Dependencies", "dependencies", detail.dependencies, onSelect,
      "This capability depends on nothing."),
    edgeSection("Dependents", "dependents", detail.dependents, onSelect,
      "No capability depends on this one."),
    h("section", { "aria-labelledby": "metadata-heading" },
      h("h3", { id: "metadata-heading" }, "Metadata"),
      keyValues(metadata, 0)),
  ];
}

function edgeSection(title, name, entries, onSelect, none) {
  const direct = entries.filter((entry) => (entry.depth ?? 1) === 1);
  const bad = direct.filter((entry) => entry.satisfied !== true).length;
  const headingId = `${name}-heading`;
  return h(
    "section",
    { class: `edges ${name}`, "aria-labelledby": headingId },
    h("h3", { id: headingId }, `${title} (${direct.length})`,
      bad ? h("span", { class: "count-bad" }, ` \u00B7 ${bad} not satisfied`) : null),
    direct.length === 0
      ? h("p", { class: "empty" }, none)
      : h("ul", { class: "edge-list" }, direct.map((entry) => edgeRow(entry, name, onSelect))),
  );
}

function edgeRow(entry, name, onSelect) {
  const target = entry.present === false
    ? h("span", { class: "edge-id absent" }, entry.id)
    : h("button", { type: "button", class: "edge-id link", onclick: () => onSelect(entry.id),
        title: `Show ${entry.id}` }, entry.id);
  const version = entry.version === null || entry.version === undefined ? "not registered" : `v${entry.version}`;
  const wants = name === "dependencies"
    ? `${entry.relationship}, wants ${entry.constraint}, has ${version}`
    : `${entry.relationship}, wants ${entry.constraint} of this`;
  const state = entry.satisfied === true ? "satisfied" : entry.present === false ? "missing" : entry.satisfied === false ? "unsatisfied" : "unknown";
  return h(
    "li",
    { class: `edge ${state}`, dataset: { id: entry.id, satisfied: String(entry.satisfied) } },
    target,
    h("span", { class: "edge-info" }, wants),
    satisfactionMark(entry),
  );
}

/** Metadata as nested key/value lists; plain values as text, lists of plain values inline. */
function keyValues(value, depth) {
  if (value === null || typeof value !== "object") return h("span", { class: "value" }, clip(String(value)));
  if (depth >= MAX_DEPTH) return h("code", { class: "value" }, clip(JSON.stringify(value)));
  if (Array.isArray(value)) {
    if (value.length === 0) return h("span", { class: "value empty" }, "(none)");
    if (value.every((entry) => entry === null || typeof entry !== "object")) {
      return h("ul", { class: "chips" }, value.map((entry) => h("li", {}, clip(String(entry), 200))));
    }
    return h("ol", { class: "nested" }, value.map((entry) => h("li", {}, keyValues(entry, depth + 1))));
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return h("span", { class: "value empty" }, "(empty)");
  return h(
    "dl",
    { class: depth === 0 ? "metadata" : "metadata nested" },
    entries.map(([key, entry]) => [h("dt", {}, key), h("dd", {}, keyValues(entry, depth + 1))]),
  );
}
