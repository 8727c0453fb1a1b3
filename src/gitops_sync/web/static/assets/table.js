// The capabilities table, virtualised: only the rows in view (and a few around them) are in the DOM,
// so 10,000 capabilities scroll as smoothly as 10. Rows have a fixed height for that reason.
// Keyboard: Tab reaches the current row; arrows, Page Up/Down, Home and End move; Enter opens.

import { h, stateBadge } from "./dom.js";

const OVERSCAN = 8;

export class VirtualTable {
  /**
   * @param {HTMLElement} scroller the scrolling container around the table
   * @param {HTMLTableElement} table a table with a <thead> and an empty <tbody>
   * @param {(id: string) => void} onOpen called when a row is clicked or Enter is pressed on it
   */
  constructor(scroller, table, onOpen) {
    this.scroller = scroller;
    this.table = table;
    this.body = table.tBodies[0];
    this.onOpen = onOpen;
    this.rows = [];
    this.activeIndex = 0;
    this.selectedId = null;
    this.rowHeight = 0;
    this.pending = false;
    scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(scroller);
    this.body.addEventListener("keydown", (event) => this.onKey(event));
    this.body.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-index]");
      if (!row) return;
      this.activeIndex = Number(row.dataset.index);
      this.onOpen(this.rows[this.activeIndex].id);
    });
  }

  /** Show `rows` (already filtered and sorted); keeps the current row where it still is. */
  setRows(rows) {
    const activeId = this.rows[this.activeIndex]?.id;
    this.rows = rows;
    const kept = activeId === undefined ? -1 : rows.findIndex((row) => row.id === activeId);
    this.activeIndex = kept >= 0 ? kept : Math.min(this.activeIndex, Math.max(0, rows.length - 1));
    this.table.setAttribute("aria-rowcount", String(rows.length + 1));
    this.render();
  }

  /** Mark the capability shown in the detail panel; brings its row into view if it is listed. */
  select(id) {
    this.selectedId = id;
    const index = id === null ? -1 : this.rows.findIndex((row) => row.id === id);
    if (index >= 0) {
      this.activeIndex = index;
      this.scrollIntoView(index);
    }
    this.render();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  measure() {
    if (this.rowHeight) return this.rowHeight;
    const probe = this.row({ id: "x", type: "x", version: "0", state: "ok", metadata: {} }, 0);
    this.body.replaceChildren(probe);
    this.rowHeight = probe.getBoundingClientRect().height || 36;
    return this.rowHeight;
  }

  headerHeight() {
    return this.table.tHead?.getBoundingClientRect().height ?? 0;
  }

  render() {
    const rowHeight = this.measure();
    const total = this.rows.length;
    const top = Math.max(0, this.scroller.scrollTop - this.headerHeight());
    const visible = Math.ceil(this.scroller.clientHeight / rowHeight) + 1;
    const first = Math.max(0, Math.floor(top / rowHeight) - OVERSCAN);
    const last = Math.min(total, first + visible + 2 * OVERSCAN);
    const hadFocus = this.body.contains(document.activeElement);
    const children = [];
    if (first > 0) children.push(spacer(first * rowHeight));
    for (let index = first; index < last; index += 1) children.push(this.row(this.rows[index], index));
    if (last < total) children.push(spacer((total - last) * rowHeight));
    this.body.replaceChildren(...children);
    if (hadFocus) this.focusActive();
  }

  row(item, index) {
    const title = item.metadata?.dc_title ?? "";
    const active = index === this.activeIndex;
    const selected = item.id === this.selectedId;
    return h(
      "tr",
      {
        class: `row${selected ? " selected" : ""}`,
        tabindex: active ? "0" : "-1",
        "aria-rowindex": String(index + 2),
        "aria-current": selected ? "true" : false,
        dataset: { index: String(index), id: item.id },
      },
      h("td", { class: "col-id", title: item.id }, item.id),
      h("td", { class: "col-title", title }, title),
      h("td", { class: "col-type" }, item.type),
      h("td", { class: "col-version" }, item.version),
      h("td", { class: "col-state" }, stateBadge(item.state)),
    );
  }

  onKey(event) {
    const page = Math.max(1, Math.floor(this.scroller.clientHeight / this.measure()) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    let target = null;
    if (event.key in moves) target = this.activeIndex + moves[event.key];
    else if (event.key === "Home") target = 0;
    else if (event.key === "End") target = this.rows.length - 1;
    else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      const item = this.rows[this.activeIndex];
      if (item) this.onOpen(item.id);
      return;
    } else return;
    event.preventDefault();
    if (this.rows.length === 0) return;
    this.activeIndex = Math.max(0, Math.min(this.rows.length - 1, target));
    this.scrollIntoView(this.activeIndex);
    this.render();
    this.focusActive();
  }

  scrollIntoView(index) {
    const rowHeight = this.measure();
    const header = this.headerHeight();
    const rowTop = header + index * rowHeight;
    const viewTop = this.scroller.scrollTop + header;
    const viewBottom = this.scroller.scrollTop + this.scroller.clientHeight;
    if (rowTop < viewTop) this.scroller.scrollTop = rowTop - header;
    else if (rowTop + rowHeight > viewBottom) this.scroller.scrollTop = rowTop + rowHeight - this.scroller.clientHeight;
  }

  focusActive() {
    this.body.querySelector(`tr[data-index="${this.activeIndex}"]`)?.focus({ preventScroll: true });
  }
}

function spacer(height) {
  const cell = h("td", { colspan: "5" });
  cell.style.height = `${height}px`; // through CSSOM, which a strict Content-Security-Policy allows
  return h("tr", { class: "spacer", "aria-hidden": "true" }, cell);
}
