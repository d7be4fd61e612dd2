// The architecture graph view: a layered drawing of a layer graph with collapsible module groups,
// pan and zoom, search, colour by layer type (or, in a diff, status and weight-change heat), and a
// side panel with the clicked layer's attributes, parameters, statistics and histogram.
// Used by the ArchitectureGraph widget, the VersionDiff view and the JupyterLab sidebar.
import { histogramChart, injectStyle } from "./charts";
import { GraphModel, type GraphData, type GraphNode, type Layout, type VisibleNode, groupKey, nodeKey } from "./graph_layout";
import { LAYER_COLORS, STATUS_COLORS, fmt, h, heat as heatColor, svg } from "./style";

export type { GraphData, GraphNode } from "./graph_layout";
export type Status = "added" | "removed" | "changed" | "same";

export interface GraphOptions {
  /** Diff status per layer id; a collapsed group shows the strongest of its members'. */
  status?: Record<string, Status>;
  /** Weight-change magnitude per layer id in [0, 1] (drawn as the node's fill). */
  heat?: Record<string, number>;
  /** Called when a layer or group is clicked (its id: a layer id or a group path). */
  onSelect?: (nodeId: string) => void;
  /** Extra content for the details panel of a layer or group (e.g. a diff's histogram overlay). */
  details?: (nodeId: string, el: HTMLElement, isGroup: boolean) => void;
  /** Height of the drawing area in pixels. */
  height?: number;
  /** A layer to bring into view first (e.g. a diff's first change); the view starts at the top otherwise. */
  focus?: string;
  /** Words for the heat legend (default "weight change"). */
  heatLabel?: string;
}

export interface GraphHandle {
  root: HTMLElement;
  /** Show a layer (expanding the groups that hide it), centre on it and open its details. */
  select(nodeId: string): void;
  toggle(group: string): void;
  destroy(): void;
}

const CSS = `
.nbmh-graph { position: relative; font: 12px var(--jp-ui-font-family, system-ui, sans-serif);
  color: var(--jp-ui-font-color1, #212121); background: var(--jp-layout-color1, #fff);
  border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; overflow: hidden; }
.nbmh-graph-bar { display: flex; align-items: center; gap: 6px; padding: 5px 8px; flex-wrap: wrap;
  border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); background: var(--jp-layout-color2, #f5f5f5); }
.nbmh-graph-bar .nbmh-title { font-weight: 600; margin-right: 6px; }
.nbmh-graph-bar input { width: 200px; padding: 3px 6px; font: inherit; color: inherit;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; }
.nbmh-graph-bar button { font: inherit; color: inherit; padding: 2px 8px; min-width: 26px; cursor: pointer;
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; }
.nbmh-graph-bar button:hover { background: var(--jp-layout-color3, #e8e8e8); }
.nbmh-graph-bar .nbmh-info { color: var(--jp-ui-font-color2, #616161); margin-left: auto; white-space: nowrap; }
.nbmh-graph-bar .nbmh-found { color: var(--jp-ui-font-color2, #616161); min-width: 60px; }
.nbmh-graph-canvas { position: relative; cursor: grab; touch-action: none; }
.nbmh-graph-canvas.nbmh-dragging { cursor: grabbing; }
.nbmh-graph-canvas > svg { display: block; width: 100%; height: 100%; user-select: none; }
.nbmh-node { cursor: pointer; }
.nbmh-node text { font-size: 11px; pointer-events: none; }
.nbmh-node .nbmh-t1 { font-weight: 600; }
.nbmh-node.nbmh-match > rect.nbmh-box { stroke: #ffd400 !important; stroke-width: 4px !important; }
.nbmh-node.nbmh-selected > rect.nbmh-box { stroke: var(--jp-brand-color1, #1976d2) !important; stroke-width: 4px !important; }
.nbmh-edge { fill: none; stroke: var(--jp-ui-font-color3, #9e9e9e); stroke-width: 1.3; }
.nbmh-frame rect { fill: var(--jp-layout-color2, #f3f4f6); fill-opacity: 0.55; stroke: var(--jp-border-color1, #c5c9cf);
  stroke-dasharray: 4 3; }
.nbmh-frame text { font-size: 10px; fill: var(--jp-ui-font-color2, #616161); cursor: pointer; }
.nbmh-frame text:hover { fill: var(--jp-brand-color1, #1976d2); text-decoration: underline; }
.nbmh-legend { display: flex; flex-wrap: wrap; gap: 3px 12px; padding: 4px 8px; font-size: 11px;
  border-top: 1px solid var(--jp-border-color2, #e0e0e0); background: var(--jp-layout-color2, #f5f5f5); }
.nbmh-legend span { display: inline-flex; align-items: center; gap: 4px; white-space: nowrap; }
.nbmh-legend i { display: inline-block; width: 11px; height: 11px; border-radius: 2px; }
.nbmh-legend .nbmh-heatbar { width: 70px; height: 9px; border-radius: 2px;
  background: linear-gradient(90deg, ${heatColor(0)}, ${heatColor(0.33)}, ${heatColor(0.66)}, ${heatColor(1)}); }
.nbmh-panel { position: absolute; top: 0; right: 0; bottom: 0; width: 340px; max-width: 70%; overflow: auto;
  padding: 10px 12px; box-sizing: border-box; background: var(--jp-layout-color1, #fff);
  border-left: 1px solid var(--jp-border-color1, #bdbdbd); box-shadow: -2px 0 6px rgba(0,0,0,.08); display: none; }
.nbmh-panel.nbmh-open { display: block; }
.nbmh-panel h3 { margin: 0 0 2px; font-size: 14px; display: flex; align-items: center; gap: 6px; }
.nbmh-graph .nbmh-panel h4 { margin: 12px 0 4px; font-size: 12px; color: var(--jp-ui-font-color2, #616161);
  text-transform: none; letter-spacing: normal; }
.nbmh-panel .nbmh-id { font-family: var(--jp-code-font-family, monospace); font-size: 11px; word-break: break-all;
  color: var(--jp-ui-font-color2, #616161); }
.nbmh-panel table { border-collapse: collapse; width: 100%; font-size: 11px; }
.nbmh-panel td, .nbmh-panel th { padding: 2px 4px; text-align: left; vertical-align: top;
  border-bottom: 1px solid var(--jp-border-color3, #eee); }
.nbmh-panel th { font-weight: 600; color: var(--jp-ui-font-color2, #616161); }
.nbmh-panel td.nbmh-num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.nbmh-graph .nbmh-panel code { font-family: var(--jp-code-font-family, monospace); font-size: 11px; word-break: break-all; }
.nbmh-panel .nbmh-close { position: absolute; top: 6px; right: 8px; border: none; background: none; font-size: 16px;
  cursor: pointer; color: var(--jp-ui-font-color2, #616161); }
.nbmh-panel button.nbmh-action { font: inherit; margin-top: 6px; padding: 2px 10px; cursor: pointer;
  color: inherit; background: var(--jp-layout-color2, #f5f5f5); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; }
.nbmh-chip { display: inline-block; padding: 0 6px; border-radius: 8px; color: #fff; font-size: 10px; font-weight: 600; }
.nbmh-panel label { font-size: 11px; display: inline-flex; gap: 4px; align-items: center; }
`;

const FRAME_LABEL = 10;
const FONT = "11px system-ui, sans-serif";
const BOLD = "600 11px system-ui, sans-serif";
let measureCtx: CanvasRenderingContext2D | null = null;

function textWidth(text: string, font: string): number {
  if (!measureCtx) measureCtx = document.createElement("canvas").getContext("2d");
  if (!measureCtx) return text.length * 6.5;
  measureCtx.font = font;
  return measureCtx.measureText(text).width;
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** The last part of a layer id ("transformer.h.3.attn.c_proj" → "c_proj"; "h.3" keeps its container). */
export function shortName(id: string): string {
  if (id.includes(":")) {
    const [scope, op] = [id.slice(0, id.lastIndexOf(":")), id.slice(id.lastIndexOf(":") + 1)];
    return scope ? `${shortName(scope)}:${op}` : op;
  }
  const parts = id.split(".");
  const last = parts[parts.length - 1];
  return /^\d+$/.test(last) && parts.length > 1 ? parts.slice(-2).join(".") : last;
}

function shapeText(shape: unknown[] | undefined): string {
  if (!shape || shape.length === 0) return "scalar";
  return shape.map((s) => (s === null || s === undefined ? "?" : String(s))).join("×");
}

function countParams(node: GraphNode): number {
  return node.params.reduce((s, p) => s + (p[4] ? 0 : p[3]), 0);
}

const STATUS_RANK: Record<Status, number> = { same: 0, changed: 1, added: 2, removed: 2 };

/** Text colour that reads on a fill (dark text on light fills). */
function inkFor(fill: string): string {
  const m = fill.match(/\d+/g);
  let r: number, g: number, b: number;
  if (fill.startsWith("#")) {
    const n = parseInt(fill.slice(1), 16);
    [r, g, b] = [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  } else if (m && m.length >= 3) {
    [r, g, b] = m.slice(0, 3).map(Number);
  } else return "#fff";
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#1b1b1b" : "#fff";
}

export function renderGraph(el: HTMLElement, graph: GraphData, opts: GraphOptions = {}): GraphHandle {
  injectStyle("nbmh-graph-style", CSS);
  const model = new GraphModel(graph);
  const initial = new Set((graph.collapsed ?? []).filter((g) => g in graph.groups));
  let collapsed = new Set(initial);
  const diffMode = opts.status !== undefined || opts.heat !== undefined;
  const total = graph.nodes.length;

  // -- DOM ---------------------------------------------------------------------------------------
  const search = h("input", { type: "search", placeholder: "Search layers (name or type)…", "aria-label": "search layers" });
  const found = h("span", { class: "nbmh-found" });
  const info = h("span", { class: "nbmh-info" });
  const btn = (label: string, title: string, fn: () => void) => h("button", { title, onclick: fn as EventListener }, label);
  const bar = h(
    "div",
    { class: "nbmh-graph-bar" },
    graph.title ? h("span", { class: "nbmh-title" }, graph.title) : null,
    search,
    found,
    btn("+", "zoom in", () => zoomBy(1.25)),
    btn("−", "zoom out", () => zoomBy(0.8)),
    btn("fit", "fit the graph in view", () => fit()),
    btn("reset", "collapse blocks back to the overview", () => {
      collapsed = new Set(initial);
      draw(true);
    }),
    info,
  );
  const svgEl = svg("svg", {});
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "nbmh-arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "var(--jp-ui-font-color3, #9e9e9e)" }));
  defs.append(marker);
  const viewport = svg("g", { class: "nbmh-viewport" });
  svgEl.append(defs, viewport);
  const legend = h("div", { class: "nbmh-legend" });
  const panel = h("div", { class: "nbmh-panel" });
  const canvas = h("div", { class: "nbmh-graph-canvas", style: `height:${opts.height ?? 520}px` }, svgEl, panel);
  const root = h("div", { class: "nbmh-graph", "data-total": total }, bar, canvas, legend);
  el.append(root);

  // -- state ----------------------------------------------------------------------------------------
  let layout: Layout | null = null;
  let view = { k: 1, x: 0, y: 0 };
  let selected: string | null = null; // visible key
  let matches: number[] = [];
  let matchAt = -1;
  let drawCount = 0;
  const nodeEls = new Map<string, SVGGElement>();

  function statusOf(v: VisibleNode): Status | undefined {
    if (!opts.status) return undefined;
    if (!v.isGroup) return opts.status[v.id] ?? "same";
    const seen = new Set(v.members.map((i) => opts.status?.[graph.nodes[i].id] ?? "same"));
    if (seen.size === 1) return [...seen][0];
    let best: Status = "same";
    for (const s of seen) if (STATUS_RANK[s] > STATUS_RANK[best]) best = s;
    return best === "same" ? "same" : "changed";
  }

  function heatOf(v: VisibleNode): number | undefined {
    if (!opts.heat) return undefined;
    let best: number | undefined;
    for (const i of v.members) {
      const t = opts.heat[graph.nodes[i].id];
      if (t !== undefined && t !== null && (best === undefined || t > best)) best = t;
    }
    return best;
  }

  function labels(v: VisibleNode): [string, string] {
    if (v.isGroup) {
      const g = graph.groups[v.id];
      return [clip(g?.type || shortName(v.id), 30), clip(`${shortName(v.id)} · ${v.members.length} layers`, 34)];
    }
    const n = v.node as GraphNode;
    const name = n.kind === "op" ? shortName(n.group || n.id) : shortName(n.id);
    const out = n.out ? `  ${shapeText(n.out)}` : "";
    return [clip(n.type, 30), clip(name + out, 36)];
  }

  function measure(v: VisibleNode): [number, number] {
    const [a, b] = labels(v);
    const w = Math.max(textWidth(a, BOLD), textWidth(b, FONT)) + (diffMode ? 30 : 22);
    return [Math.max(v.isGroup ? 110 : 80, Math.min(260, Math.ceil(w))), v.isGroup ? 42 : 36];
  }

  function fillOf(v: VisibleNode): string {
    const family = v.isGroup ? "group" : (v.node as GraphNode).family;
    if (!diffMode) return LAYER_COLORS[family] ?? LAYER_COLORS.other;
    const t = heatOf(v);
    if (t !== undefined) return heatColor(t);
    return "var(--jp-layout-color2, #eef0f2)";
  }

  // -- drawing -------------------------------------------------------------------------------------
  function edgePath(points: { x: number; y: number }[]): string {
    if (points.length === 0) return "";
    if (points.length < 3) return `M${points[0].x},${points[0].y}` + points.slice(1).map((p) => `L${p.x},${p.y}`).join("");
    // a smooth curve through dagre's bend points (quadratic segments between midpoints)
    let d = `M${points[0].x},${points[0].y}`;
    for (let i = 1; i < points.length - 1; i++) {
      const p = points[i];
      const q = points[i + 1];
      const mx = i === points.length - 2 ? q.x : (p.x + q.x) / 2;
      const my = i === points.length - 2 ? q.y : (p.y + q.y) / 2;
      d += ` Q${p.x},${p.y} ${mx},${my}`;
    }
    return d;
  }

  function drawNode(v: VisibleNode): SVGGElement {
    const g = svg("g", { class: "nbmh-node", transform: `translate(${v.x - v.width / 2},${v.y - v.height / 2})` });
    g.dataset.key = v.key;
    g.dataset.id = v.id;
    g.dataset.kind = v.isGroup ? "group" : "layer";
    const fill = fillOf(v);
    const status = statusOf(v);
    if (status) g.dataset.status = status;
    const stroke = status && status !== "same" ? STATUS_COLORS[status] : diffMode ? "var(--jp-border-color1, #b0b6bd)" : "rgba(0,0,0,.25)";
    const strokeWidth = status && status !== "same" ? 3 : 1;
    if (v.isGroup) {
      // a stacked card: this node stands for many layers
      g.append(svg("rect", { x: 4, y: -4, width: v.width, height: v.height, rx: 6, fill, "fill-opacity": 0.45, stroke: "rgba(0,0,0,.2)" }));
    }
    const box = svg("rect", { class: "nbmh-box", width: v.width, height: v.height, rx: 6, fill, stroke, "stroke-width": strokeWidth });
    if (status === "removed") box.setAttribute("stroke-dasharray", "6 3");
    g.append(box);
    const ink = diffMode && fill.startsWith("var(") ? "var(--jp-ui-font-color1, #212121)" : inkFor(fill);
    let textX = v.width / 2;
    if (diffMode) {
      // keep the layer type visible in a diff: a swatch of its family colour
      const family = v.isGroup ? "group" : (v.node as GraphNode).family;
      g.append(svg("rect", { x: 5, y: 6, width: 6, height: v.height - 12, rx: 2, fill: LAYER_COLORS[family] ?? LAYER_COLORS.other }));
      textX += 4;
    }
    const [a, b] = labels(v);
    const t1 = svg("text", { class: "nbmh-t1", x: textX, y: v.isGroup ? 17 : 15, "text-anchor": "middle", fill: ink });
    t1.textContent = a;
    const t2 = svg("text", { x: textX, y: v.isGroup ? 32 : 29, "text-anchor": "middle", fill: ink, "fill-opacity": 0.9 });
    t2.textContent = b;
    g.append(t1, t2);
    if (v.isGroup) {
      const plus = svg("text", { x: v.width - 12, y: 15, "text-anchor": "middle", fill: ink, "font-weight": 700 });
      plus.textContent = "+";
      g.append(plus);
    }
    const title = svg("title", {});
    title.textContent = v.isGroup ? `${v.id} (${v.members.length} layers; double-click to expand)` : v.id;
    g.append(title);
    return g;
  }

  function draw(refit: boolean): void {
    delete root.dataset.drawn;
    layout = model.layout(collapsed, measure);
    viewport.replaceChildren();
    nodeEls.clear();
    const frames = svg("g", { class: "nbmh-frames" });
    for (const f of layout.frames) {
      const g = svg("g", { class: "nbmh-frame" });
      // the frame reaches up past dagre's border for its label, into the gap above the rank
      const top = f.y - f.height / 2 - FRAME_LABEL;
      g.append(svg("rect", { x: f.x - f.width / 2, y: top, width: f.width, height: f.height + FRAME_LABEL, rx: 8 }));
      const label = svg("text", { x: f.x - f.width / 2 + 8, y: top + 12 });
      const info = graph.groups[f.path];
      label.textContent = `− ${shortName(f.path)}${info?.type ? `  (${info.type})` : ""}`;
      label.dataset.group = f.path;
      const tip = svg("title", {});
      tip.textContent = `${f.path}: click to collapse`;
      label.append(tip);
      g.append(label);
      frames.append(g);
    }
    const edges = svg("g", { class: "nbmh-edges" });
    for (const e of layout.edges) edges.append(svg("path", { class: "nbmh-edge", d: edgePath(e.points), "marker-end": "url(#nbmh-arrow)" }));
    const nodes = svg("g", { class: "nbmh-nodes" });
    for (const v of layout.nodes) {
      const g = drawNode(v);
      nodeEls.set(v.key, g);
      nodes.append(g);
    }
    viewport.append(frames, edges, nodes);
    root.dataset.visible = String(layout.nodes.length);
    root.dataset.layoutMs = layout.ms.toFixed(1);
    info.textContent = `${layout.nodes.length === total ? total : `${layout.nodes.length} shown of ${total}`} layers` + (graph.summary?.parameters !== undefined ? ` · ${fmt(graph.summary.parameters)} parameters` : "");
    drawLegend();
    markMatches();
    if (selected && !layout.byKey.has(selected)) selected = null;
    if (selected) nodeEls.get(selected)?.classList.add("nbmh-selected");
    if (refit) fit();
    const count = ++drawCount;
    // "drawn" once the browser has painted this layout (two frames: style+layout, then paint)
    requestAnimationFrame(() => requestAnimationFrame(() => {
      if (count !== drawCount) return;
      root.dataset.drawnAt = performance.now().toFixed(1);
      root.dataset.drawn = String(count);
    }));
  }

  function drawLegend(): void {
    legend.replaceChildren();
    if (!layout) return;
    if (diffMode) {
      if (opts.status) {
        for (const s of ["added", "removed", "changed"] as const) {
          legend.append(h("span", {}, h("i", { style: `background:none;border:3px ${s === "removed" ? "dashed" : "solid"} ${STATUS_COLORS[s]};width:7px;height:7px` }), s));
        }
      }
      if (opts.heat) legend.append(h("span", {}, `${opts.heatLabel ?? "weight change"}: low`, h("i", { class: "nbmh-heatbar" }), "high"));
      return;
    }
    const families = new Map<string, number>();
    for (const v of layout.nodes) {
      const f = v.isGroup ? "group" : (v.node as GraphNode).family;
      families.set(f, (families.get(f) ?? 0) + 1);
    }
    for (const [f] of [...families].sort((a, b) => b[1] - a[1])) {
      legend.append(h("span", {}, h("i", { style: `background:${LAYER_COLORS[f] ?? LAYER_COLORS.other}` }), f === "group" ? "block (collapsed)" : f));
    }
  }

  // -- pan and zoom --------------------------------------------------------------------------------
  function apply(): void {
    viewport.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.k})`);
  }

  function size(): [number, number] {
    const r = canvas.getBoundingClientRect();
    return [r.width || el.clientWidth || 800, r.height || opts.height || 520];
  }

  function zoomAt(k: number, cx: number, cy: number): void {
    const nk = Math.max(0.05, Math.min(4, k));
    view = { k: nk, x: cx - ((cx - view.x) * nk) / view.k, y: cy - ((cy - view.y) * nk) / view.k };
    apply();
  }

  function zoomBy(f: number): void {
    const [w, hgt] = size();
    zoomAt(view.k * f, w / 2, hgt / 2);
  }

  function fit(): void {
    if (!layout) return;
    const [w, hgt] = size();
    const k = Math.min(w / Math.max(1, layout.width), hgt / Math.max(1, layout.height), 1.25) * 0.96;
    if (k < 0.5) {
      // a tall model fitted whole is unreadable: start at a readable scale, top centred
      const kk = Math.min(0.9, w / Math.max(1, layout.width));
      view = { k: Math.max(kk, 0.5), x: (w - layout.width * Math.max(kk, 0.5)) / 2, y: 8 };
    } else {
      view = { k, x: (w - layout.width * k) / 2, y: (hgt - layout.height * k) / 2 };
    }
    apply();
  }

  function centreOn(key: string): void {
    const v = layout?.byKey.get(key);
    if (!v) return;
    const [w, hgt] = size();
    const k = Math.max(view.k, 0.8);
    view = { k, x: w / 2 - v.x * k - (panel.classList.contains("nbmh-open") ? 170 : 0), y: hgt / 2 - v.y * k };
    apply();
  }

  let drag: { x: number; y: number; vx: number; vy: number; moved: boolean; id: number } | null = null;
  const onDown = (e: PointerEvent) => {
    if (e.button !== 0 || panel.contains(e.target as Node) || legend.contains(e.target as Node)) return;
    drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false, id: e.pointerId };
  };
  const onMove = (e: PointerEvent) => {
    if (!drag || e.pointerId !== drag.id) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    if (!drag.moved) {
      drag.moved = true;
      canvas.setPointerCapture(e.pointerId);
      canvas.classList.add("nbmh-dragging");
    }
    view = { ...view, x: drag.vx + dx, y: drag.vy + dy };
    apply();
  };
  const onUp = (e: PointerEvent) => {
    if (!drag || e.pointerId !== drag.id) return;
    const wasDrag = drag.moved;
    drag = null;
    canvas.classList.remove("nbmh-dragging");
    if (canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
    if (!wasDrag) click(e.target as Element);
  };
  const onWheel = (e: WheelEvent) => {
    if (panel.contains(e.target as Node)) return;
    e.preventDefault();
    const r = svgEl.getBoundingClientRect();
    zoomAt(view.k * Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), e.clientX - r.left, e.clientY - r.top);
  };
  const onDbl = (e: MouseEvent) => {
    const g = (e.target as Element).closest?.(".nbmh-node") as SVGGElement | null;
    if (g?.dataset.kind === "group" && g.dataset.id) toggle(g.dataset.id);
  };
  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  canvas.addEventListener("wheel", onWheel, { passive: false });
  canvas.addEventListener("dblclick", onDbl);

  function click(target: Element | null): void {
    const label = target?.closest?.(".nbmh-frame text") as SVGTextElement | null;
    if (label?.dataset.group) {
      toggle(label.dataset.group);
      return;
    }
    const g = target?.closest?.(".nbmh-node") as SVGGElement | null;
    if (g?.dataset.key) choose(g.dataset.key);
  }

  // -- groups -------------------------------------------------------------------------------------------
  function toggle(group: string): void {
    const key = groupKey(group);
    if (collapsed.has(group)) {
      collapsed.delete(group);
      if (selected === key) selected = null;
    } else {
      collapsed.add(group);
      selected = key;
    }
    const anchor = layout?.byKey.get(key) ?? null;
    const before = anchor ? { x: anchor.x * view.k + view.x, y: anchor.y * view.k + view.y } : null;
    draw(false);
    // keep what was clicked where it was on screen: expanding must not throw the reader elsewhere
    const firstMember = layout?.nodes.find((v) => v.key === key || graph.groups[group] && v.id.startsWith(`${group}.`));
    if (before && firstMember && layout) {
      const members = layout.nodes.filter((v) => v.key === key || v.id.startsWith(`${group}.`) || v.id.startsWith(`${group}:`));
      const top = Math.min(...members.map((v) => v.y - v.height / 2));
      const cx = members.reduce((s, v) => s + v.x, 0) / members.length;
      view = { ...view, x: before.x - cx * view.k, y: before.y - top * view.k - 20 * view.k };
      apply();
    }
    if (selected) showPanel(selected);
  }

  // -- selection and details ------------------------------------------------------------------------
  function choose(key: string): void {
    if (selected) nodeEls.get(selected)?.classList.remove("nbmh-selected");
    selected = key;
    nodeEls.get(key)?.classList.add("nbmh-selected");
    showPanel(key);
    opts.onSelect?.(key.slice(2));
  }

  function table(rows: (Node | string)[][], head?: string[]): HTMLTableElement {
    const t = h("table", {});
    if (head) t.append(h("tr", {}, ...head.map((c) => h("th", {}, c))));
    for (const r of rows) t.append(h("tr", {}, ...r.map((c, i) => h("td", i > 0 && typeof c === "string" && /^[-\d.,×e+–kKMGT% ]+$/.test(c) ? { class: "nbmh-num" } : {}, c))));
    return t;
  }

  function valueText(v: unknown): string {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return fmt(v, 4);
    if (typeof v === "string") return v;
    return clip(JSON.stringify(v), 120);
  }

  function showPanel(key: string): void {
    const v = layout?.byKey.get(key);
    panel.replaceChildren();
    if (!v) {
      panel.classList.remove("nbmh-open");
      return;
    }
    const close = h("button", { class: "nbmh-close", title: "close", onclick: (() => {
      panel.classList.remove("nbmh-open");
      if (selected) nodeEls.get(selected)?.classList.remove("nbmh-selected");
      selected = null;
    }) as EventListener }, "×");
    panel.append(close);
    const status = statusOf(v);
    if (v.isGroup) {
      const g = graph.groups[v.id];
      panel.append(
        h("h3", {}, h("span", { class: "nbmh-chip", style: `background:${LAYER_COLORS.group}` }, "block"), g?.type || shortName(v.id)),
        h("div", { class: "nbmh-id" }, v.id),
      );
      const byType = new Map<string, number>();
      for (const i of v.members) byType.set(graph.nodes[i].type, (byType.get(graph.nodes[i].type) ?? 0) + 1);
      panel.append(
        table([
          ["layers", String(v.members.length)],
          ["parameters", fmt(g?.parameters ?? v.members.reduce((s, i) => s + countParams(graph.nodes[i]), 0))],
          ...(status ? [["status", status]] : []),
        ]),
        h("button", { class: "nbmh-action", onclick: (() => toggle(v.id)) as EventListener }, "Expand this block"),
        h("h4", {}, "Layers inside"),
        table([...byType].sort((a, b) => b[1] - a[1]).map(([t, n]) => [t, String(n)])),
      );
      opts.details?.(v.id, panel, true);
      panel.classList.add("nbmh-open");
      return;
    }
    const n = v.node as GraphNode;
    panel.append(
      h("h3", {}, h("span", { class: "nbmh-chip", style: `background:${LAYER_COLORS[n.family] ?? LAYER_COLORS.other}` }, n.family), n.type),
      h("div", { class: "nbmh-id" }, n.id),
    );
    const facts: (Node | string)[][] = [["kind", n.kind]];
    if (n.module_type) facts.push(["module", h("code", {}, n.module_type)]);
    if (n.out) facts.push(["output", shapeText(n.out)]);
    if (status) facts.push(["status", status === "same" ? "same structure" : status]);
    panel.append(table(facts));
    if (n.params.length) {
      panel.append(h("h4", {}, `Parameters · ${fmt(countParams(n))}`));
      panel.append(table(n.params.map((p) => [
        h("code", {}, p[0].startsWith(`${n.id}.`) ? p[0].slice(n.id.length + 1) : p[0]),
        shapeText(p[1]),
        p[2],
        p[4] ? `tied to ${p[4]}` : fmt(p[3]),
      ]), ["name", "shape", "dtype", "count"]));
    }
    const attrs = Object.entries(n.attrs ?? {});
    if (attrs.length) {
      panel.append(h("h4", {}, "Attributes"));
      panel.append(table(attrs.map(([k, val]) => [k, valueText(val)])));
    }
    const st = graph.stats?.[n.id];
    if (st) {
      panel.append(h("h4", {}, "Weight statistics"));
      panel.append(table([
        ["mean", fmt(st.mean ?? null, 4)], ["std", fmt(st.std ?? null, 4)],
        ["min", fmt(st.min ?? null, 4)], ["max", fmt(st.max ?? null, 4)],
        ["zeros", st.sparsity !== undefined ? `${(st.sparsity * 100).toFixed(2)}%` : "–"], ["L2 norm", fmt(st.l2 ?? null, 4)],
      ]));
    }
    const hist = graph.histograms?.[n.id];
    if (hist) {
      const box = h("div", {});
      const log = h("input", { type: "checkbox" });
      panel.append(h("h4", {}, "Weight histogram"), h("label", {}, log, "log scale"), box);
      const series = [{ label: shortName(n.id), edges: hist.edges, counts: hist.counts, color: LAYER_COLORS[n.family] }];
      const chart = histogramChart(box, series, { height: 150, width: 300 });
      log.addEventListener("change", () => chart.update(series, { log: (log as HTMLInputElement).checked }));
    }
    opts.details?.(n.id, panel, false);
    panel.classList.add("nbmh-open");
  }

  // -- search -------------------------------------------------------------------------------------------
  function markMatches(): void {
    for (const g of nodeEls.values()) g.classList.remove("nbmh-match");
    for (const i of matches) nodeEls.get(model.owner(i, collapsed))?.classList.add("nbmh-match");
  }

  function runSearch(): void {
    const q = (search as HTMLInputElement).value.trim().toLowerCase();
    matches = [];
    matchAt = -1;
    if (q) graph.nodes.forEach((n, i) => {
      if (n.id.toLowerCase().includes(q) || n.type.toLowerCase().includes(q)) matches.push(i);
    });
    found.textContent = q ? (matches.length ? `${matches.length} found` : "none found") : "";
    root.dataset.matches = String(matches.length);
    markMatches();
  }

  function nextMatch(step: number): void {
    if (!matches.length) return;
    matchAt = (matchAt + step + matches.length) % matches.length;
    select(graph.nodes[matches[matchAt]].id);
    found.textContent = `${matchAt + 1} of ${matches.length}`;
  }

  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", (e: KeyboardEvent) => {
    if (e.key === "Enter") {
      e.preventDefault();
      nextMatch(e.shiftKey ? -1 : 1);
    } else if (e.key === "Escape") {
      (search as HTMLInputElement).value = "";
      runSearch();
    }
  });

  function select(nodeId: string): void {
    const i = model.index.get(nodeId);
    let key: string;
    if (i !== undefined) {
      const hiding = model.hiding(i, collapsed);
      if (hiding.length) {
        for (const g of hiding) collapsed.delete(g);
        draw(false);
      }
      key = nodeKey(nodeId);
    } else if (nodeId in graph.groups) {
      key = groupKey(nodeId);
    } else return;
    if (!layout?.byKey.has(key)) return;
    choose(key);
    centreOn(key);
  }

  // The first drawing waits until the element is in the page, so that fitting knows its size.
  let first = true;
  const start = () => {
    if (!first) return;
    first = false;
    draw(true);
    const i = opts.focus === undefined ? undefined : model.index.get(opts.focus);
    if (i !== undefined) centreOn(model.owner(i, collapsed));
  };
  if (el.isConnected && el.getBoundingClientRect().width > 0) start();
  else requestAnimationFrame(start);

  return {
    root,
    select,
    toggle,
    destroy() {
      canvas.removeEventListener("wheel", onWheel);
      root.remove();
    },
  };
}
