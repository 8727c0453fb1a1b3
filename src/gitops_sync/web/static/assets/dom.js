// Building DOM nodes from data. Every value goes in as text (textContent), never as HTML, so a
// manifest's metadata cannot inject markup or script into the page.

/**
 * h("a", {href: "#x", class: "link", onclick: fn}, "text", childNode, [more]) -> HTMLElement.
 * Attributes named on* become event listeners; `false`, null and undefined attributes are left out.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `element`. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const STATE_LABELS = { ok: "OK", warning: "Warning", error: "Error" };

/** A state badge that reads without colour too (a symbol and a word). */
export function stateBadge(state) {
  const known = Object.hasOwn(STATE_LABELS, state) ? state : "unknown";
  const symbol = { ok: "\u25CF", warning: "\u25B2", error: "\u2716", unknown: "?" }[known];
  return h(
    "span",
    { class: `badge state-${known}` },
    h("span", { "aria-hidden": "true" }, symbol),
    " ",
    STATE_LABELS[known] ?? String(state ?? "unknown"),
  );
}

/** A mark for one dependency edge: satisfied, unsatisfied, or missing (target absent). */
export function satisfactionMark(entry) {
  if (entry.present === false) {
    return h("span", { class: "mark mark-missing", title: "No capability with this id is registered" },
      h("span", { "aria-hidden": "true" }, "\u2716"), " missing");
  }
  if (entry.satisfied === true) {
    return h("span", { class: "mark mark-satisfied", title: "The version satisfies the constraint" },
      h("span", { "aria-hidden": "true" }, "\u2714"), " satisfied");
  }
  if (entry.satisfied === false) {
    return h("span", { class: "mark mark-unsatisfied", title: "The version does not satisfy the constraint" },
      h("span", { "aria-hidden": "true" }, "\u2716"), " unsatisfied");
  }
  return h("span", { class: "mark mark-unknown", title: "Not known" }, "\u2013 unknown");
}

/** Cut very long text for display; the full value stays in the title attribute. */
export function clip(text, limit = 600) {
  const value = String(text);
  return value.length <= limit ? value : `${value.slice(0, limit)}\u2026`;
}

const numberFormat = new Intl.NumberFormat("en");
export function count(n) {
  return numberFormat.format(n);
}
