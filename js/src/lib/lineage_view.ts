// The version DAG of a model: dagre lays it out (top to bottom or left to right); each version shows
// its ref, tags, message and key metric; edges into another model (a fine-tune, a copy) are dashed.
// Drag to pan, ctrl/⌘ + wheel or the buttons to zoom, click a version for its details.
import dagre from "@dagrejs/dagre";
import { injectStyle } from "./charts";
import { SERIES_COLORS, fmt, h, svg } from "./style";

export interface LineageNode {
  id: string;
  ref: string;
  model: string;
  number: number;
  message: string;
  author: string;
  created: string;
  tags: string[];
  params: Record<string, unknown>;
  metrics: Record<string, unknown>;
  metric: number | null;
  parameters: number;
  parents: string[];
  missing_parents: string[];
}

export interface LineageData {
  model: string;
  models: string[];
  metric: string | null;
  nodes: LineageNode[];
}

export interface LineageOptions {
  height?: number;
  direction?: "TB" | "LR";
  onSelect?(node: LineageNode | null): void;
}

const NODE_W = 196;
const NODE_H = 58;

const CSS = `
.nbmh-lineage { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  display: flex; flex-direction: column; gap: 6px; }
.nbmh-lineage-bar { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.nbmh-lineage-bar button { font: inherit; color: inherit; background: var(--jp-layout-color2, #f5f5f5); cursor: pointer;
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; padding: 2px 8px; }
.nbmh-lineage-bar button.nbmh-on { background: var(--jp-brand-color1, #1976d2); color: #fff; border-color: transparent; }
.nbmh-lineage-models { display: inline-flex; gap: 10px; flex-wrap: wrap; }
.nbmh-lineage-models i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.nbmh-lineage-count { color: var(--jp-ui-font-color2, #757575); margin-left: auto; }
.nbmh-lineage-main { display: flex; gap: 8px; }
.nbmh-lineage-canvas { flex: 1; min-width: 0; overflow: hidden; position: relative; cursor: grab;
  border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; background: var(--jp-layout-color1, #fff); }
.nbmh-lineage-canvas.nbmh-dragging { cursor: grabbing; }
.nbmh-lineage-canvas svg { display: block; width: 100%; height: 100%; }
.nbmh-lineage .nbmh-node { cursor: pointer; }
.nbmh-lineage .nbmh-node rect.nbmh-box { fill: var(--jp-layout-color0, #fff); stroke-width: 1.5; }
.nbmh-lineage .nbmh-node:hover rect.nbmh-box { stroke-width: 2.5; }
.nbmh-lineage .nbmh-node.nbmh-selected rect.nbmh-box { stroke-width: 3; filter: drop-shadow(0 1px 3px rgba(0,0,0,.35)); }
.nbmh-lineage .nbmh-node text { fill: var(--jp-ui-font-color1, #212121); font-size: 11px; }
.nbmh-lineage .nbmh-node text.nbmh-ref { font-weight: 700; font-size: 12px; }
.nbmh-lineage .nbmh-node text.nbmh-dim { fill: var(--jp-ui-font-color2, #757575); }
.nbmh-lineage .nbmh-edge { fill: none; stroke: var(--jp-ui-font-color2, #8a8a8a); stroke-width: 1.4; }
.nbmh-lineage .nbmh-edge.nbmh-cross { stroke-dasharray: 5 4; }
.nbmh-lineage-details { width: 270px; flex: none; overflow: auto; border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px; padding: 8px 10px; box-sizing: border-box; background: var(--jp-layout-color1, #fff); }
.nbmh-lineage-details h4 { margin: 0 0 4px; font-size: 13px; }
.nbmh-lineage-details h5 { margin: 10px 0 2px; font-size: 11px; text-transform: uppercase; letter-spacing: .04em;
  color: var(--jp-ui-font-color2, #757575); }
.nbmh-lineage-details table { border-collapse: collapse; width: 100%; }
.nbmh-lineage-details td { padding: 1px 4px 1px 0; vertical-align: top; word-break: break-word; }
.nbmh-lineage-details td:first-child { color: var(--jp-ui-font-color2, #757575); white-space: nowrap; }
.nbmh-lineage-hint { color: var(--jp-ui-font-color2, #757575); }
`;

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function modelColor(models: string[], model: string): string {
  const i = Math.max(0, models.indexOf(model));
  return SERIES_COLORS[i % SERIES_COLORS.length];
}

interface Layout {
  pos: Map<string, { x: number; y: number }>;
  edges: { from: string; to: string; points: { x: number; y: number }[] }[];
  width: number;
  height: number;
}

export function layoutLineage(nodes: LineageNode[], direction: "TB" | "LR"): Layout {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: direction, nodesep: 22, ranksep: 44, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) g.setNode(n.id, { width: NODE_W, height: NODE_H });
  for (const n of nodes) for (const p of n.parents) if (g.hasNode(p)) g.setEdge(p, n.id);
  dagre.layout(g);
  const pos = new Map<string, { x: number; y: number }>();
  for (const id of g.nodes()) {
    const v = g.node(id);
    pos.set(id, { x: v.x, y: v.y });
  }
  const edges = g.edges().map((e) => ({ from: e.v, to: e.w, points: (g.edge(e).points ?? []) as { x: number; y: number }[] }));
  const graph = g.graph();
  return { pos, edges, width: graph.width ?? NODE_W, height: graph.height ?? NODE_H };
}

/** A smooth path through dagre's edge points. */
function edgePath(points: { x: number; y: number }[]): string {
  if (points.length < 2) return "";
  let d = `M${points[0].x},${points[0].y}`;
  for (let i = 1; i < points.length - 1; i++) {
    const mx = (points[i].x + points[i + 1].x) / 2;
    const my = (points[i].y + points[i + 1].y) / 2;
    d += `Q${points[i].x},${points[i].y} ${mx},${my}`;
  }
  const last = points[points.length - 1];
  return `${d}L${last.x},${last.y}`;
}

function details(node: LineageNode, data: LineageData, byId: Map<string, LineageNode>): HTMLElement {
  const rows = (o: Record<string, unknown>) =>
    h("table", {}, ...Object.entries(o).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, typeof v === "number" ? fmt(v, 5) : String(v)))));
  const parents = node.parents.map((p) => byId.get(p)?.ref ?? p.slice(0, 12));
  const info: Record<string, unknown> = {
    id: node.id.slice(0, 16),
    author: node.author || "–",
    created: node.created.slice(0, 19).replace("T", " "),
    parameters: node.parameters.toLocaleString(),
    parents: parents.length ? parents.join(", ") : "none (a root)",
  };
  if (node.missing_parents.length) info["deleted parents"] = node.missing_parents.join(", ");
  if (node.tags.length) info.tags = node.tags.join(", ");
  const children = data.nodes.filter((n) => n.parents.includes(node.id)).map((n) => n.ref);
  if (children.length) info.children = children.join(", ");
  const out = h("div", {}, h("h4", {}, node.ref), h("div", {}, node.message || h("i", {}, "no message")), h("h5", {}, "version"), rows(info));
  if (Object.keys(node.params).length) out.append(h("h5", {}, "params"), rows(node.params));
  if (Object.keys(node.metrics).length) out.append(h("h5", {}, "metrics"), rows(node.metrics));
  return out;
}

/** Draws the lineage into `el`; returns `{select(ref), destroy()}`. */
export function renderLineage(el: HTMLElement, data: LineageData, opts: LineageOptions = {}) {
  injectStyle("nbmh-lineage-style", CSS);
  const nodes = data.nodes ?? [];
  const models = data.models ?? [];
  const byId = new Map(nodes.map((n) => [n.id, n]));
  let direction: "TB" | "LR" = opts.direction ?? "TB";
  let selected: string | null = null;
  let view = { x: 0, y: 0, k: 1 };

  const root = h("div", { class: "nbmh-lineage" });
  const legend = h("span", { class: "nbmh-lineage-models" }, ...models.map((m) => h("span", {}, h("i", { style: `background:${modelColor(models, m)}` }), m)));
  const tb = h("button", { title: "top to bottom" }, "↓ top-down");
  const lr = h("button", { title: "left to right" }, "→ left-right");
  const zoomIn = h("button", { title: "zoom in" }, "+");
  const zoomOut = h("button", { title: "zoom out" }, "−");
  const fit = h("button", { title: "fit the whole lineage" }, "fit");
  const count = h("span", { class: "nbmh-lineage-count" }, `${nodes.length} version${nodes.length === 1 ? "" : "s"}${models.length > 1 ? ` in ${models.length} models` : ""}`);
  root.append(h("div", { class: "nbmh-lineage-bar" }, legend, tb, lr, zoomOut, zoomIn, fit, count));
  const canvas = h("div", { class: "nbmh-lineage-canvas" });
  canvas.style.height = `${opts.height ?? 420}px`;
  const panel = h("div", { class: "nbmh-lineage-details" }, h("div", { class: "nbmh-lineage-hint" }, "Click a version for its details."));
  panel.style.height = canvas.style.height;
  root.append(h("div", { class: "nbmh-lineage-main" }, canvas, panel));
  el.append(root);

  const svgEl = svg("svg");
  const defs = svg("defs");
  const marker = svg("marker", { id: `nbmh-arrow-${Math.random().toString(36).slice(2)}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M0,0L10,5L0,10z", fill: "var(--jp-ui-font-color2, #8a8a8a)" }));
  defs.append(marker);
  const scene = svg("g");
  svgEl.append(defs, scene);
  canvas.append(svgEl);
  if (!nodes.length) {
    canvas.replaceChildren(h("div", { class: "nbmh-lineage-hint", style: "padding:16px" }, "No versions."));
  }

  let layout: Layout | null = null;
  const apply = () => scene.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.k})`);
  const fitView = () => {
    if (!layout) return;
    const w = canvas.clientWidth || 600;
    const hgt = canvas.clientHeight || opts.height || 420;
    const k = Math.min(1.2, (w - 16) / layout.width, (hgt - 16) / layout.height);
    view = { k, x: (w - layout.width * k) / 2, y: Math.max(8, (hgt - layout.height * k) / 2) };
    apply();
  };

  const draw = () => {
    if (!nodes.length) return;
    layout = layoutLineage(nodes, direction);
    tb.classList.toggle("nbmh-on", direction === "TB");
    lr.classList.toggle("nbmh-on", direction === "LR");
    const parts: SVGElement[] = [];
    for (const e of layout.edges) {
      const cross = byId.get(e.from)?.model !== byId.get(e.to)?.model;
      parts.push(svg("path", { class: `nbmh-edge${cross ? " nbmh-cross" : ""}`, d: edgePath(e.points), "marker-end": `url(#${marker.id})` }));
    }
    for (const n of nodes) {
      const p = layout.pos.get(n.id);
      if (!p) continue;
      const color = modelColor(models, n.model);
      const g = svg("g", { class: `nbmh-node${n.id === selected ? " nbmh-selected" : ""}`, "data-ref": n.ref, transform: `translate(${p.x - NODE_W / 2},${p.y - NODE_H / 2})` });
      g.append(svg("rect", { class: "nbmh-box", width: NODE_W, height: NODE_H, rx: 6, stroke: color }));
      g.append(svg("rect", { width: 6, height: NODE_H, rx: 3, fill: color }));
      const ref = svg("text", { class: "nbmh-ref", x: 14, y: 17 });
      ref.textContent = n.ref;
      g.append(ref);
      if (n.tags.length) {
        const tag = svg("text", { class: "nbmh-dim", x: NODE_W - 8, y: 17, "text-anchor": "end" });
        tag.textContent = clip(n.tags.map((t) => `:${t}`).join(" "), 14);
        g.append(tag);
      }
      const msg = svg("text", { x: 14, y: 34 });
      msg.textContent = clip(n.message || "(no message)", 30);
      if (!n.message) msg.setAttribute("class", "nbmh-dim");
      g.append(msg);
      const metric = svg("text", { class: "nbmh-dim", x: 14, y: 50 });
      metric.textContent = data.metric && n.metric !== null ? `${data.metric} ${fmt(n.metric, 4)}` : n.created.slice(0, 16).replace("T", " ");
      g.append(metric);
      const title = svg("title");
      title.textContent = `${n.ref}: ${n.message}`;
      g.append(title);
      g.addEventListener("click", (ev) => {
        ev.stopPropagation();
        select(n.ref);
      });
      parts.push(g);
    }
    scene.replaceChildren(...parts);
    fitView();
  };

  const select = (ref: string | null) => {
    const node = ref === null ? undefined : nodes.find((n) => n.ref === ref);
    selected = node?.id ?? null;
    for (const g of scene.querySelectorAll<SVGGElement>(".nbmh-node")) g.classList.toggle("nbmh-selected", g.dataset.ref === node?.ref);
    panel.replaceChildren(node ? details(node, data, byId) : h("div", { class: "nbmh-lineage-hint" }, "Click a version for its details."));
    opts.onSelect?.(node ?? null);
  };

  // Pan by dragging; zoom around the pointer with ctrl/⌘ + wheel (a plain wheel keeps scrolling the notebook).
  let drag: { x: number; y: number; vx: number; vy: number } | null = null;
  canvas.addEventListener("pointerdown", (ev) => {
    if ((ev.target as Element).closest(".nbmh-node")) return;
    drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y };
    canvas.classList.add("nbmh-dragging");
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    view.x = drag.vx + ev.clientX - drag.x;
    view.y = drag.vy + ev.clientY - drag.y;
    apply();
  });
  const endDrag = () => {
    drag = null;
    canvas.classList.remove("nbmh-dragging");
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  const zoom = (factor: number, cx: number, cy: number) => {
    const k = Math.max(0.05, Math.min(4, view.k * factor));
    view.x = cx - ((cx - view.x) * k) / view.k;
    view.y = cy - ((cy - view.y) * k) / view.k;
    view.k = k;
    apply();
  };
  canvas.addEventListener("wheel", (ev) => {
    if (!ev.ctrlKey && !ev.metaKey) return;
    ev.preventDefault();
    const box = canvas.getBoundingClientRect();
    zoom(Math.exp(-ev.deltaY * 0.0015), ev.clientX - box.left, ev.clientY - box.top);
  }, { passive: false });
  zoomIn.addEventListener("click", () => zoom(1.25, canvas.clientWidth / 2, canvas.clientHeight / 2));
  zoomOut.addEventListener("click", () => zoom(0.8, canvas.clientWidth / 2, canvas.clientHeight / 2));
  fit.addEventListener("click", fitView);
  tb.addEventListener("click", () => {
    direction = "TB";
    draw();
  });
  lr.addEventListener("click", () => {
    direction = "LR";
    draw();
  });

  draw();
  // A widget drawn before it is attached has no size yet: fit once it gets one.
  let fitted = canvas.clientWidth > 0;
  const observer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => {
    if (!fitted && canvas.clientWidth > 0) {
      fitted = true;
      fitView();
    }
  }) : null;
  observer?.observe(canvas);
  return {
    select,
    destroy() {
      observer?.disconnect();
      root.remove();
    },
  };
}
