// The detail panel: one capability's metadata as a key/value list, and its dependencies and
// dependents with a satisfied / unsatisfied / missing mark on each.

import { capabilityPath, getJSON } from "./api.js";
import { clip, h, satisfactionMark, stateBadge } from "./dom.js";

const MAX_DEPTH = 4;

/** The capability, its dependencies and its dependents (direct, or all of them), fetched together. */
export async function loadDetail(id, { signal, transitive }) {
  const path = capabilityPath(id);
  const query = transitive ? "?transitive=true" : "";
  const [item, dependencies, dependents] = await Promise.all([
    getJSON(path, { signal }),
    getJSON(`${path}/dependencies${query}`, { signal }),
    getJSON(`${path}/dependents${query}`, { signal }),
  ]);
  return { item, transitive, dependencies: dependencies.items, dependents: dependents.items };
}

/**
 * The panel's content for a loaded detail; `onSelect(id)` follows a link to another capability,
 * `onTransitive(checked)` asks for the detail again with (or without) the indirect ones.
 */
export function renderDetail(detail, { onSelect, onClose, onTransitive }) {
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
    h("label", { class: "toggle" },
      h("input", { type: "checkbox", id: "transitive", checked: detail.transitive,
        onchange: (event) => onTransitive(event.target.checked) }),
      " Include indirect dependencies and dependents"),
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
  const ordered = [...entries].sort((a, b) => (a.depth ?? 1) - (b.depth ?? 1));
  const bad = ordered.filter((entry) => entry.satisfied !== true).length;
  const indirect = ordered.filter((entry) => (entry.depth ?? 1) > 1).length;
  const headingId = `${name}-heading`;
  return h(
    "section",
    { class: `edges ${name}`, "aria-labelledby": headingId },
    h("h3", { id: headingId }, `${title} (${ordered.length})`,
      indirect ? h("span", { class: "count-indirect" }, ` \u00B7 ${indirect} indirect`) : null,
      bad ? h("span", { class: "count-bad" }, ` \u00B7 ${bad} not satisfied`) : null),
    ordered.length === 0
      ? h("p", { class: "empty" }, none)
      : h("ul", { class: "edge-list" }, ordered.map((entry) => edgeRow(entry, name, onSelect))),
  );
}

function edgeRow(entry, name, onSelect) {
  const target = entry.present === false
    ? h("span", { class: "edge-id absent" }, entry.id)
    : h("button", { type: "button", class: "edge-id link", onclick: () => onSelect(entry.id),
        title: `Show ${entry.id}` }, entry.id);
  const version = entry.version === null || entry.version === undefined ? "not registered" : `v${entry.version}`;
  const depth = entry.depth ?? 1;
  const through = depth > 1 ? `indirect (${depth} steps${entry.via ? `, via ${entry.via}` : ""}): ` : "";
  const wants = name === "dependencies"
    ? `${through}${entry.relationship}, wants ${entry.constraint}, has ${version}`
    : `${through}${entry.relationship}, wants ${entry.constraint} of ${depth > 1 ? "it" : "this"}`;
  const state = entry.satisfied === true ? "satisfied" : entry.present === false ? "missing" : entry.satisfied === false ? "unsatisfied" : "unknown";
  return h(
    "li",
    { class: `edge ${state}${depth > 1 ? " indirect" : ""}`, dataset: { id: entry.id, depth: String(depth) } },
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
