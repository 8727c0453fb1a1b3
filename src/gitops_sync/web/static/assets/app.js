// The web view of the registry: wires the API, the table, the detail panel, the graph, the problems
// and the live updates together. All state lives in `view`; every change goes through `refresh*`.

import { ApiError, capabilityPath, followEvents, getJSON, listAll } from "./api.js";
import { loadDetail, renderDetail } from "./detail.js";
import { count, fill, h } from "./dom.js";
import { GraphView, WHOLE_GRAPH_LIMIT } from "./graph.js";
import { renderProblems } from "./problems.js";
import { VirtualTable } from "./table.js";

const STATUS_EVERY_MS = 10000;
const FETCH_ONE_BY_ONE = 200; // a change naming more capabilities than this reloads the list instead
const PARALLEL = 8;
const EVENTS_RETRY_MS = 3000;

const $ = (id) => document.getElementById(id);

const view = {
  items: new Map(), // id -> capability, as /v1/capabilities answers
  ordered: [], // every capability sorted by id
  graph: { nodes: [], edges: [] },
  graphStale: false, // true when the graph was not fetched (a large registry with nothing selected)
  revision: 0, // the registry revision the page shows; change events at or below it are already in
  ready: false, // false while the first (or a snapshot) load runs: events wait in `early`
  early: [],
  selected: null,
  transitive: false, // the detail panel lists indirect dependencies and dependents too
  loading: null, // AbortController of the running full load
  detail: null, // AbortController of the running detail load
  queue: Promise.resolve(), // change events are applied one after the other, in order
  snapshot: 0, // the revision of a snapshot event that came while a load ran
  eventId: "", // set once an event with an id arrived: from then on a reconnect resumes after it
};

const table = new VirtualTable($("table-scroll"), $("capabilities"), (id) => select(id, { focus: true }));
const graph = new GraphView($("graph"), $("graph-caption"), (id) => select(id, { focus: false }));

// ---- loading -----------------------------------------------------------------------------------

async function loadEverything() {
  view.loading?.abort();
  const controller = new AbortController();
  view.loading = controller;
  view.ready = false;
  const fresh = new Map();
  try {
    setLive("loading", "Loading\u2026");
    const { revision } = await listAll({
      signal: controller.signal,
      onPage: (items) => {
        for (const item of items) fresh.set(item.id, item);
        if (!view.ready) {
          view.items = fresh;
          reorder();
          refreshTable();
          setLive("loading", `Loading\u2026 ${count(fresh.size)} capabilities so far`);
        }
      },
    });
    view.items = fresh;
    view.revision = revision;
    if (view.snapshot > revision) {
      // A snapshot came in while loading, newer than some pages: load again, from that revision on.
      view.snapshot = 0;
      loadEverything();
      return;
    }
    view.snapshot = 0;
    view.ready = true;
    reorder();
    refreshTable();
    hideError();
    setLive(view.events ? view.liveState : "loading", null);
    await Promise.all([loadGraph(), loadStatus()]);
    if (view.selected !== null) showDetail(view.selected, { focus: false });
    const early = view.early.splice(0);
    for (const change of early) enqueue(change);
  } catch (error) {
    if (controller.signal.aborted) return;
    showError(`Could not load the registry: ${describe(error)}. Trying again in 5 s.`);
    setTimeout(loadEverything, 5000);
  }
}

async function loadGraph() {
  if (view.items.size > WHOLE_GRAPH_LIMIT && view.selected === null) {
    // Only a selection's neighbourhood is drawn at this size: fetch the graph when one is made.
    view.graphStale = true;
    refreshGraph();
    return;
  }
  view.graphStale = false;
  try {
    view.graph = await getJSON("v1/graph");
    refreshGraph();
  } catch (error) {
    $("graph-caption").textContent = `Could not load the graph: ${describe(error)}`;
  }
}

let graphTimer = null;
function scheduleGraph() {
  clearTimeout(graphTimer);
  graphTimer = setTimeout(loadGraph, 250);
}

async function loadStatus() {
  try {
    const status = await getJSON("v1/status");
    refreshStatus(status);
  } catch (error) {
    $("role").textContent = "unknown";
    fill($("problem-list"), h("li", { class: "problem severity-error" }, `Could not load the status: ${describe(error)}`));
  }
}

let statusTimer = null;
function scheduleStatus(delay = 250) {
  clearTimeout(statusTimer);
  statusTimer = setTimeout(async () => {
    await loadStatus();
    scheduleStatus(STATUS_EVERY_MS);
  }, delay);
}

// ---- live updates ------------------------------------------------------------------------------

function enqueue(change) {
  view.queue = view.queue.then(() => applyChange(change)).catch((error) => {
    console.error("gitops-sync: a change could not be applied; reloading", error);
    loadEverything();
  });
}

async function applyChange(change) {
  if (!view.ready) {
    view.early.push(change);
    return;
  }
  if (typeof change.revision === "number" && change.revision <= view.revision) return;
  const upserted = Array.isArray(change.upserted) ? change.upserted : [];
  const deleted = Array.isArray(change.deleted) ? change.deleted : [];
  if (upserted.length > FETCH_ONE_BY_ONE) {
    await loadEverything();
    return;
  }
  for (const id of deleted) view.items.delete(id);
  await inParallel(upserted, async (id) => {
    try {
      const item = await getJSON(capabilityPath(id));
      view.items.set(item.id, item);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) view.items.delete(id);
      else throw error;
    }
  });
  if (typeof change.revision === "number") view.revision = Math.max(view.revision, change.revision);
  reorder();
  refreshTable();
  scheduleGraph();
  scheduleStatus();
  if (view.selected !== null) showDetail(view.selected, { focus: false });
}

async function inParallel(values, work) {
  const pending = [...values];
  const workers = Array.from({ length: Math.min(PARALLEL, pending.length) }, async () => {
    while (pending.length) await work(pending.shift());
  });
  await Promise.all(workers);
}

/**
 * Follow /v1/events. EventSource itself reconnects after a dropped connection, resuming after the last
 * event id; after an answer that is not a stream (a 502 from a proxy, a 503 while the service starts)
 * it gives up, so a new one is made, and the page reloads what it may have missed meanwhile.
 */
function startEvents(recreated = false) {
  view.events?.close();
  view.eventId = "";
  view.events = followEvents({
    onChange: (change, eventId) => {
      view.eventId ||= eventId;
      enqueue(change);
    },
    onSnapshot: (snapshot, eventId) => {
      view.eventId ||= eventId;
      const revision = typeof snapshot.revision === "number" ? snapshot.revision : Number.POSITIVE_INFINITY;
      if (!view.ready) {
        // A load is running (the stream sends a snapshot on connecting): it decides when it ends.
        view.snapshot = Math.max(view.snapshot, revision);
        return;
      }
      // Nothing to catch up on when the page already shows this revision (or a later one).
      if (revision > view.revision) loadEverything();
    },
    onState: (state, { reconnected } = {}) => {
      view.liveState = state;
      if (view.ready) setLive(state, null);
      if (state === "closed") {
        setTimeout(() => startEvents(true), EVENTS_RETRY_MS);
        return;
      }
      // Without an event id to resume from, the server cannot send what the page missed while away.
      const missed = reconnected ? !view.eventId : recreated;
      if (state === "live" && missed && view.ready) loadEverything();
    },
  });
}

// ---- rendering ---------------------------------------------------------------------------------

function reorder() {
  view.ordered = [...view.items.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  refreshTypes();
}

const searchable = new WeakMap(); // item -> its id, title and description in lower case

function matches(item, words, type, state) {
  if (type && item.type !== type) return false;
  if (state && item.state !== state) return false;
  if (words.length === 0) return true;
  let text = searchable.get(item);
  if (text === undefined) {
    const metadata = item.metadata ?? {};
    text = `${item.id}\n${metadata.dc_title ?? ""}\n${metadata.dc_description ?? ""}`.toLowerCase();
    searchable.set(item, text);
  }
  return words.every((word) => text.includes(word));
}

function refreshTable() {
  const words = $("search").value.toLowerCase().split(/\s+/).filter(Boolean);
  const type = $("type-filter").value;
  const state = $("state-filter").value;
  const shown = view.ordered.filter((item) => matches(item, words, type, state));
  table.setRows(shown);
  $("no-match").hidden = shown.length > 0 || !view.ready;
  $("no-match").textContent =
    view.ordered.length === 0 ? "The registry holds no capabilities yet." : "No capability matches the search and filters.";
  $("shown").textContent =
    shown.length === view.ordered.length
      ? `${count(shown.length)} capabilities`
      : `${count(shown.length)} of ${count(view.ordered.length)} capabilities`;
  $("revision").textContent = String(view.revision || "\u2013");
}

function refreshTypes() {
  const select = $("type-filter");
  const types = [...new Set(view.ordered.map((item) => item.type))].sort();
  const current = [...select.options].slice(1).map((option) => option.value);
  if (types.join("\n") === current.join("\n")) return;
  const chosen = select.value;
  fill(select, h("option", { value: "" }, "All types"), types.map((type) => h("option", { value: type }, type)));
  select.value = types.includes(chosen) ? chosen : "";
}

function refreshGraph() {
  if (!window.cytoscape) {
    $("graph-caption").textContent = "The graph library did not load.";
    return;
  }
  graph.draw(view.graph, view.selected, view.items.size);
}

function refreshStatus(status) {
  $("role").textContent = status.leader ? "leader" : "standby";
  $("commit").textContent = status.commit ? status.commit.slice(0, 12) : "\u2013";
  $("commit").title = status.commit ?? "";
  const cycle = status.last_cycle;
  $("last-cycle").textContent = cycle ? describeCycle(cycle) : "none yet";
  $("last-cycle").title = cycle
    ? ["trigger", "started_at", "finished_at", "created", "updated", "deleted", "unchanged", "errors"]
        .filter((key) => cycle[key] !== undefined && cycle[key] !== null)
        .map((key) => `${key}: ${cycle[key]}`)
        .join("\n")
    : "";
  const problems = Array.isArray(status.problems) ? status.problems : [];
  renderProblems($("problems"), $("problem-list"), $("problem-count"), problems);
}

function describeCycle(cycle) {
  const when = cycle.finished_at ? new Date(cycle.finished_at) : null;
  const time = when && !Number.isNaN(when.getTime()) ? when.toLocaleTimeString() : "running";
  const changed = (cycle.created ?? 0) + (cycle.updated ?? 0) + (cycle.deleted ?? 0);
  const errors = cycle.errors ?? 0;
  return `${time} \u00B7 ${count(changed)} changed, ${count(errors)} error${errors === 1 ? "" : "s"}`;
}

function setLive(state, text) {
  const live = $("live");
  const labels = { live: "Live", reconnecting: "Reconnecting\u2026", closed: "Disconnected", loading: "Loading\u2026" };
  live.dataset.state = state;
  live.textContent = text ?? labels[state] ?? state;
}

function showError(message) {
  const banner = $("error");
  banner.textContent = message;
  banner.hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

function describe(error) {
  return error instanceof Error ? error.message : String(error);
}

// ---- selection and the detail panel ------------------------------------------------------------

function select(id, { focus }) {
  const hash = `#${encodeURIComponent(id)}`;
  if (location.hash !== hash) history.pushState(null, "", hash);
  open(id, focus);
}

function open(id, focus) {
  view.selected = id;
  table.select(id);
  if (view.graphStale) loadGraph();
  else refreshGraph();
  showDetail(id, { focus });
}

function close() {
  view.detail?.abort();
  const wasOpen = view.selected;
  view.selected = null;
  $("detail").hidden = true;
  document.body.classList.remove("has-detail");
  if (location.hash) history.pushState(null, "", location.pathname + location.search);
  table.select(null);
  refreshGraph();
  if (wasOpen !== null) table.focusActive();
}

async function showDetail(id, { focus }) {
  view.detail?.abort();
  const controller = new AbortController();
  view.detail = controller;
  const panel = $("detail");
  if (panel.hidden || panel.dataset.id !== id) {
    panel.dataset.id = id;
    fill(panel, h("p", { class: "loading" }, `Loading ${id}\u2026`));
    panel.hidden = false;
    document.body.classList.add("has-detail");
  }
  try {
    const detail = await loadDetail(id, { signal: controller.signal, transitive: view.transitive });
    if (controller.signal.aborted) return;
    const scroll = panel.scrollTop;
    const onTransitive = (checked) => {
      view.transitive = checked;
      showDetail(id, { focus: false });
    };
    const hadFocus = document.activeElement?.id === "transitive";
    fill(panel, renderDetail(detail, { onSelect: (other) => select(other, { focus: true }), onClose: close, onTransitive }));
    if (hadFocus) $("transitive").focus();
    panel.scrollTop = scroll;
  } catch (error) {
    if (controller.signal.aborted) return;
    const gone = error instanceof ApiError && error.status === 404;
    fill(
      panel,
      h("div", { class: "detail-head" },
        h("h2", { id: "detail-title", tabindex: "-1", class: "detail-id" }, id),
        h("button", { type: "button", class: "close", "aria-label": "Close the details", onclick: close }, "\u2715")),
      h("p", { class: "empty" }, gone ? "This capability is not in the registry (any more)." : `Could not load it: ${describe(error)}`),
    );
  }
  if (focus) $("detail-title")?.focus();
}

function fromHash() {
  const id = decodeURIComponent(location.hash.slice(1));
  if (id) open(id, false);
  else if (view.selected !== null) close();
}

// ---- start -------------------------------------------------------------------------------------

for (const id of ["search", "type-filter", "state-filter"]) $(id).addEventListener("input", refreshTable);
$("fit").addEventListener("click", () => graph.fit());
window.addEventListener("popstate", fromHash);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && view.selected !== null && !(event.target instanceof HTMLInputElement)) close();
  if (event.key === "/" && !(event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement)) {
    event.preventDefault();
    $("search").focus();
  }
});

startEvents();
fromHash();
loadEverything();
scheduleStatus(STATUS_EVERY_MS);
