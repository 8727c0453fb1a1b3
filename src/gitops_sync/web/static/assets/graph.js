// The dependency graph, drawn with Cytoscape.js (vendor/cytoscape.min.js, MIT). With nothing selected a
// registry of up to WHOLE_GRAPH_LIMIT capabilities is drawn whole; with a capability selected, only its
// neighbourhood, so the drawing stays readable and fast at any registry size.
// The canvas is not keyboard-operable: the detail panel lists the same dependencies as text.

import { count } from "./dom.js";

export const WHOLE_GRAPH_LIMIT = 250;
const NEIGHBOURHOOD_DEPTH = 1; // what the detail panel lists: direct dependencies and dependents
const NEIGHBOURHOOD_LIMIT = 150;

const STYLE = [
  {
    selector: "node",
    style: {
      label: "data(label)",
      "font-size": 11,
      "font-family": "system-ui, sans-serif",
      color: "#1f2937",
      "text-valign": "bottom",
      "text-margin-y": 4,
      "text-background-color": "#ffffff",
      "text-background-opacity": 0.8,
      "text-background-padding": 1,
      "text-wrap": "wrap",
      "text-max-width": 170,
      "min-zoomed-font-size": 7,
      width: 18,
      height: 18,
      "background-color": "#64748b",
      "border-width": 2,
      "border-color": "#ffffff",
    },
  },
  { selector: "node.type-service", style: { "background-color": "#2563eb", shape: "round-rectangle" } },
  { selector: "node.type-pattern", style: { "background-color": "#7c3aed", shape: "ellipse" } },
  { selector: "node.state-warning", style: { "border-color": "#d97706", "border-width": 3 } },
  { selector: "node.state-error", style: { "border-color": "#dc2626", "border-width": 3 } },
  {
    selector: "node.missing",
    style: { "background-color": "#ffffff", "border-color": "#dc2626", "border-style": "dashed", "border-width": 2 },
  },
  {
    selector: "node.selected",
    style: { width: 28, height: 28, "font-size": 12, "font-weight": "bold", "underlay-color": "#f59e0b", "underlay-opacity": 0.45, "underlay-padding": 6 },
  },
    {
    selector: "edge",
    style: {
      width: 1.5,
      "curve-style": "bezier",
      "line-color": "#94a3b8",
      "target-arrow-color": "#94a3b8",
      "target-arrow-shape": "triangle",
      "arrow-scale": 0.9,
    },
  },
  { selector: "edge.unsatisfied", style: { "line-color": "#dc2626", "target-arrow-color": "#dc2626", "line-style": "dashed", width: 2 } },
  { selector: "edge.missing", style: { "line-color": "#dc2626", "target-arrow-color": "#dc2626", "line-style": "dotted", width: 2 } },
  { selector: "edge.near", style: { "line-color": "#475569", "target-arrow-color": "#475569", width: 2 } },
];

export class GraphView {
  /**
   * @param {HTMLElement} container where the canvas goes
   * @param {HTMLElement} caption a line of text saying what is drawn
   * @param {(id: string) => void} onSelect called when a node is clicked
   */
  constructor(container, caption, onSelect) {
    this.container = container;
    this.caption = caption;
    this.onSelect = onSelect;
    this.cy = null;
    this.signature = "";
    // Cytoscape measures its container only on window resizes; the panels around it move without one.
    new ResizeObserver(() => this.fit()).observe(container);
  }

  /**
   * Draw `graph` ({nodes, edges} as /v1/graph answers) around `selectedId` (null: nothing selected);
   * `total` is the registry's size, when the graph was not fetched because it is too large to draw.
   */
  draw(graph, selectedId, total = graph.nodes.length) {
    const whole = selectedId === null || !graph.nodes.some((node) => node.id === selectedId);
    if (whole && Math.max(total, graph.nodes.length) > WHOLE_GRAPH_LIMIT) {
      this.clear();
      this.caption.textContent =
        `${count(total)} capabilities: the graph is drawn whole up to ${count(WHOLE_GRAPH_LIMIT)}. ` +
        "Select a capability to draw its neighbourhood.";
      return;
    }
    const part = whole ? graph : neighbourhood(graph, selectedId);
    const elements = toElements(part, selectedId);
    const signature = elements.map((element) => element.data.id).join("\n");
    if (!this.cy) this.create();
    if (signature === this.signature) {
      for (const element of elements) this.cy.getElementById(element.data.id).classes(element.classes);
    } else {
      this.signature = signature;
      this.cy.resize();
      this.cy.elements().remove();
      this.cy.add(elements);
      this.cy.layout(layoutFor(part, whole, selectedId)).run();
    }
    this.emphasise(selectedId);
    const nodes = this.cy.nodes().length;
    const edges = this.cy.edges().length;
    this.container.dataset.nodes = String(nodes);
    this.container.dataset.edges = String(edges);
    const scope = whole ? "the whole registry" : `around ${selectedId}`;
    this.caption.textContent = `${count(nodes)} capabilities and ${count(edges)} dependencies, ${scope}.`;
    this.container.setAttribute("aria-label", `Dependency graph: ${this.caption.textContent}`);
  }

  create() {
    this.cy = window.cytoscape({
      container: this.container,
      style: STYLE,
      minZoom: 0.1,
      maxZoom: 4,
      boxSelectionEnabled: false,
    });
    this.cy.on("tap", "node", (event) => {
      if (!event.target.hasClass("missing")) this.onSelect(event.target.id());
    });
  }

  emphasise(selectedId) {
    this.cy.elements().removeClass("near");
    if (selectedId === null) return;
    this.cy.getElementById(selectedId).connectedEdges().addClass("near");
  }

  /** Fit the drawing into its box (after a resize, or on the "Fit" button). */
  fit() {
    if (!this.cy) return;
    this.cy.resize();
    this.cy.fit(undefined, 24);
  }

  clear() {
    this.cy?.elements().remove();
    this.signature = "";
    this.container.dataset.nodes = "0";
    this.container.dataset.edges = "0";
  }
}

/** The capabilities within NEIGHBOURHOOD_DEPTH steps of `id` (either direction), at most NEIGHBOURHOOD_LIMIT. */
function neighbourhood(graph, id) {
  const out = new Map();
  const into = new Map();
  for (const edge of graph.edges) {
    if (!out.has(edge.from)) out.set(edge.from, []);
    if (!into.has(edge.to)) into.set(edge.to, []);
    out.get(edge.from).push(edge.to);
    into.get(edge.to).push(edge.from);
  }
  const keep = new Set([id]);
  let frontier = [id];
  for (let depth = 0; depth < NEIGHBOURHOOD_DEPTH && frontier.length; depth += 1) {
    const next = [];
    for (const current of frontier) {
      for (const other of [...(out.get(current) ?? []), ...(into.get(current) ?? [])]) {
        if (keep.size >= NEIGHBOURHOOD_LIMIT) break;
        if (!keep.has(other)) {
          keep.add(other);
          next.push(other);
        }
      }
    }
    frontier = next;
  }
  return {
    nodes: graph.nodes.filter((node) => keep.has(node.id)),
    edges: graph.edges.filter((edge) => keep.has(edge.from) && keep.has(edge.to)),
  };
}

function toElements(graph, selectedId) {
  const known = new Set(graph.nodes.map((node) => node.id));
  const elements = graph.nodes.map((node) => ({
    group: "nodes",
    data: { id: node.id, label: label(node.id) },
    classes: [`type-${node.type}`, `state-${node.state}`, node.id === selectedId ? "selected" : ""].join(" "),
  }));
  const missing = new Set();
  for (const edge of graph.edges) {
    if (!known.has(edge.to) && !missing.has(edge.to)) {
      missing.add(edge.to);
      elements.push({ group: "nodes", data: { id: edge.to, label: `${label(edge.to)}\n(missing)` }, classes: "missing" });
    }
  }
  const edgeIds = new Set();
  for (const edge of graph.edges) {
    if (!known.has(edge.from)) continue;
    const state = edge.satisfied === true ? "satisfied" : edge.satisfied === false ? "unsatisfied" : "missing";
    let id = `${edge.from}\u2192${edge.to}\u2192${edge.relationship}`;
    for (let n = 2; edgeIds.has(id); n += 1) id = `${edge.from}\u2192${edge.to}\u2192${edge.relationship}\u2192${n}`;
    edgeIds.add(id);
    elements.push({ group: "edges", data: { id, source: edge.from, target: edge.to }, classes: state });
  }
  return elements;
}

/** "chora.devex.registry" as "chora.devex." over "registry": short lines that do not overlap. */
function label(id) {
  const dot = id.lastIndexOf(".");
  return dot > 0 && dot < id.length - 1 ? `${id.slice(0, dot + 1)}\n${id.slice(dot + 1)}` : id;
}

function layoutFor(graph, whole, selectedId) {
  if (!whole) return { name: "preset", positions: layered(graph, selectedId), padding: 24, animate: false };
  if (graph.nodes.length > 12) {
    return { name: "cose", animate: false, randomize: true, nodeRepulsion: () => 9000, idealEdgeLength: () => 70, padding: 24, componentSpacing: 60, nodeDimensionsIncludeLabels: true };
  }
  return { name: "breadthfirst", directed: true, spacingFactor: 1.1, padding: 24, animate: false, nodeDimensionsIncludeLabels: true };
}

const PER_ROW = 5;
const COLUMN = 165;
const ROW = 95;

/** Positions for a neighbourhood: dependents above the selected capability, its dependencies below. */
function layered(graph, selectedId) {
  const dependents = new Set(graph.edges.filter((edge) => edge.to === selectedId).map((edge) => edge.from));
  const dependencies = new Set(graph.edges.filter((edge) => edge.from === selectedId).map((edge) => edge.to));
  dependents.delete(selectedId);
  dependencies.delete(selectedId);
  for (const id of dependents) dependencies.delete(id);
  const above = [...dependents].sort();
  const below = [...dependencies].sort();
  const positions = {};
  const place = (ids, direction) => {
    ids.forEach((id, index) => {
      const row = Math.floor(index / PER_ROW);
      const inRow = Math.min(PER_ROW, ids.length - row * PER_ROW);
      const column = index % PER_ROW;
      // Rows after the first are shifted by half a column, so no edge from the centre runs through a node.
      const shift = row % 2 === 1 ? COLUMN / 2 : 0;
      positions[id] = { x: (column - (inRow - 1) / 2) * COLUMN + shift, y: direction * (row + 1) * ROW };
    });
  };
  place(above.reverse(), -1);
  place(below, 1);
  positions[selectedId] = { x: 0, y: 0 };
  return positions;
}
