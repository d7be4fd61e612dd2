// The version diff view: one merged graph of both versions (added green, removed red, changed
// amber, weight change as heat), the hyperparameters with differing values highlighted, final
// metrics side by side, both versions' metric curves overlaid, and on clicking a layer its weight
// histograms of both versions overlaid on shared bins. Used by the VersionDiff widget and by
// VersionTable when two rows are picked.
import { histogramChart, injectStyle, lineChart, type HistogramSeries, type LineSeries } from "./charts";
import { renderGraph, shortName, type GraphData, type GraphHandle, type Status } from "./graph_view";
import { SERIES_COLORS, STATUS_COLORS, fmt, h } from "./style";

export interface LayerChange {
  status: string;
  a?: string | null;
  tensors?: number;
  changed?: number;
  l2?: number;
  relative?: number | null;
  what?: string[];
}

export interface TensorChange {
  name: string;
  a_name?: string;
  relative?: number | null;
  l2?: number;
  cosine?: number | null;
  max_abs?: number;
  fraction_changed?: number;
  from?: [string, number[]];
  to?: [string, number[]];
}

export interface DiffData {
  a: string;
  b: string;
  summary: Record<string, number | boolean>;
  graph: GraphData;
  status: Record<string, Status>;
  heat: Record<string, number>;
  layers: Record<string, LayerChange>;
  tensors: Record<string, TensorChange[]>;
  params: { name: string; a: unknown; b: unknown; differs: boolean }[];
  metrics: { name: string; a: unknown; b: unknown }[];
  curves: Record<string, { steps: number[]; a: (number | null)[]; b: (number | null)[] }>;
  histograms: Record<string, { tensor: string; edges: number[]; a: number[]; b: number[] }[]>;
}

const CSS = `
.nbmh-diff { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  display: flex; flex-direction: column; gap: 10px; }
.nbmh-diff-head { display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
.nbmh-diff-head .nbmh-refs { font-size: 14px; font-weight: 600; }
.nbmh-diff-head .nbmh-refs .nbmh-a { color: ${SERIES_COLORS[0]}; }
.nbmh-diff-head .nbmh-refs .nbmh-b { color: ${SERIES_COLORS[1]}; }
.nbmh-pill { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 11px; font-weight: 600;
  background: var(--jp-layout-color2, #eee); }
.nbmh-diff-row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.nbmh-diff-row > div { flex: 1 1 300px; min-width: 260px; }
.nbmh-diff > h4, .nbmh-diff-row h4 { margin: 4px 0; font-size: 12px; color: var(--jp-ui-font-color2, #616161);
  text-transform: uppercase; letter-spacing: .04em; }
.nbmh-diff table.nbmh-t { border-collapse: collapse; width: 100%; font-size: 12px; }
.nbmh-diff table.nbmh-t th, .nbmh-diff table.nbmh-t td { padding: 3px 6px; text-align: left;
  border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); }
.nbmh-diff table.nbmh-t th { font-weight: 600; color: var(--jp-ui-font-color2, #616161); }
.nbmh-diff table.nbmh-t td.nbmh-num { text-align: right; font-variant-numeric: tabular-nums; }
.nbmh-diff tr.nbmh-differs td { background: rgba(230, 155, 0, 0.18); font-weight: 600; }
.nbmh-diff .nbmh-better { color: #2e7d32; }
.nbmh-diff .nbmh-worse { color: #c62828; }
.nbmh-diff .nbmh-muted { color: var(--jp-ui-font-color2, #757575); }
.nbmh-curves { display: flex; flex-wrap: wrap; gap: 12px; }
.nbmh-curves > div { flex: 1 1 300px; min-width: 260px; }
`;

function valueText(v: unknown): string {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return fmt(v, 4);
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function td(text: string, numeric = false): HTMLTableCellElement {
  return h("td", numeric ? { class: "nbmh-num" } : {}, text);
}

/** Metrics where smaller is better, by the usual names. */
function lowerIsBetter(name: string): boolean {
  return /loss|err|perplex|ppl|mse|mae|rmse|time|latency/i.test(name);
}

function paramsTable(data: DiffData): HTMLElement {
  const t = h("table", { class: "nbmh-t nbmh-params" }, h("tr", {}, h("th", {}, "hyperparameter"), h("th", {}, data.a), h("th", {}, data.b)));
  for (const p of data.params) {
    const row = h("tr", p.differs ? { class: "nbmh-differs", "data-differs": "1" } : {}, td(p.name), td(valueText(p.a), true), td(valueText(p.b), true));
    t.append(row);
  }
  if (!data.params.length) t.append(h("tr", {}, h("td", { colspan: 3, class: "nbmh-muted" }, "no hyperparameters recorded")));
  return t;
}

function metricsTable(data: DiffData): HTMLElement {
  const t = h("table", { class: "nbmh-t nbmh-metrics" }, h("tr", {}, h("th", {}, "metric"), h("th", {}, data.a), h("th", {}, data.b), h("th", {}, "Δ")));
  for (const m of data.metrics) {
    let delta = "";
    let cls = "";
    if (typeof m.a === "number" && typeof m.b === "number") {
      const d = m.b - m.a;
      delta = `${d > 0 ? "+" : ""}${fmt(d, 3)}`;
      if (d !== 0) cls = (d < 0) === lowerIsBetter(m.name) ? "nbmh-better" : "nbmh-worse";
    }
    t.append(h("tr", {}, td(m.name), td(valueText(m.a), true), td(valueText(m.b), true), h("td", { class: `nbmh-num ${cls}` }, delta)));
  }
  if (!data.metrics.length) t.append(h("tr", {}, h("td", { colspan: 4, class: "nbmh-muted" }, "no metrics recorded")));
  return t;
}

function curveSeries(label: string, steps: number[], ys: (number | null)[], color: string): LineSeries {
  const x: number[] = [];
  const y: number[] = [];
  steps.forEach((s, i) => {
    const v = ys[i];
    if (typeof v === "number") {
      x.push(s);
      y.push(v);
    }
  });
  return { label, x, y, color };
}

function layerDetails(data: DiffData, id: string, el: HTMLElement, isGroup: boolean): void {
  if (isGroup) {
    const prefix = `${id}.`;
    const inside = Object.entries(data.layers).filter(([k]) => k.startsWith(prefix) || k.startsWith(`${id}:`));
    const counts: Record<string, number> = {};
    for (const [, l] of inside) counts[l.status] = (counts[l.status] ?? 0) + 1;
    const rel = inside.map(([k, l]) => [k, l.relative ?? 0] as [string, number]).filter(([, r]) => r > 0).sort((x, y) => y[1] - x[1]);
    el.append(h("h4", {}, `Change ${data.a} → ${data.b}`));
    el.append(h("div", {}, Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(" · ") || "no layer with weights"));
    if (rel.length) {
      const t = h("table", {}, h("tr", {}, h("th", {}, "most changed"), h("th", {}, "relative")));
      for (const [k, r] of rel.slice(0, 8)) t.append(h("tr", {}, h("td", {}, shortName(k)), h("td", { class: "nbmh-num" }, fmt(r, 3))));
      el.append(t);
    }
    return;
  }
  const layer = data.layers[id];
  el.append(h("h4", {}, `Change ${data.a} → ${data.b}`));
  if (!layer) {
    el.append(h("div", {}, "no weights: nothing to compare"));
    return;
  }
  const facts: [string, string][] = [["status", layer.status === "unchanged" && layer.changed ? "weights changed" : layer.status]];
  if (layer.a && layer.a !== id) facts.push([`in ${data.a}`, layer.a]);
  if (layer.what?.length) facts.push(["what changed", layer.what.join(", ")]);
  if (layer.tensors) facts.push(["tensors changed", `${layer.changed ?? 0} of ${layer.tensors}`]);
  if (layer.relative !== undefined && layer.relative !== null && layer.changed) facts.push(["relative change", fmt(layer.relative, 3)]);
  const t = h("table", {});
  for (const [k, v] of facts) t.append(h("tr", {}, h("td", {}, k), h("td", {}, v)));
  el.append(t);
  const tensors = data.tensors[id] ?? [];
  if (tensors.length) {
    const tt = h("table", {}, h("tr", {}, h("th", {}, "tensor"), h("th", {}, "relative"), h("th", {}, "cosine"), h("th", {}, "max |Δ|")));
    for (const c of tensors) {
      const local = c.name.startsWith(`${id}.`) ? c.name.slice(id.length + 1) : c.name;
      if (c.from && c.to) tt.append(h("tr", {}, h("td", {}, local), h("td", { colspan: 3 }, `${c.from[1].join("×")} → ${c.to[1].join("×")}`)));
      else tt.append(h("tr", {}, h("td", {}, local), h("td", { class: "nbmh-num" }, fmt(c.relative ?? null, 3)), h("td", { class: "nbmh-num" }, fmt(c.cosine ?? null, 4)), h("td", { class: "nbmh-num" }, fmt(c.max_abs ?? null, 3))));
    }
    el.append(tt);
  }
  for (const hist of data.histograms[id] ?? []) {
    const box = h("div", { class: "nbmh-diff-hist" });
    el.append(box);
    const series: HistogramSeries[] = [
      { label: data.a, edges: hist.edges, counts: hist.a, color: SERIES_COLORS[0] },
      { label: data.b, edges: hist.edges, counts: hist.b, color: SERIES_COLORS[1] },
    ];
    const local = hist.tensor.startsWith(`${id}.`) ? hist.tensor.slice(id.length + 1) : hist.tensor;
    histogramChart(box, series, { height: 140, width: 300, title: local });
  }
}

export function renderVersionDiff(el: HTMLElement, data: DiffData, opts: { height?: number } = {}): () => void {
  injectStyle("nbmh-diff-style", CSS);
  const root = h("div", { class: "nbmh-diff" });
  el.append(root);
  const s = data.summary ?? {};
  const pill = (text: string, color?: string) => h("span", { class: "nbmh-pill", style: color ? `background:${color};color:#fff` : "" }, text);
  const head = h(
    "div",
    { class: "nbmh-diff-head" },
    h("span", { class: "nbmh-refs" }, h("span", { class: "nbmh-a" }, data.a), " → ", h("span", { class: "nbmh-b" }, data.b)),
  );
  if (s.identical) head.append(pill("identical"));
  if (s.added) head.append(pill(`+${s.added} layers`, STATUS_COLORS.added));
  if (s.removed) head.append(pill(`−${s.removed} layers`, STATUS_COLORS.removed));
  if (s.changed) head.append(pill(`${s.changed} layers changed`, STATUS_COLORS.changed));
  if (s.weights_changed !== undefined) head.append(pill(`${s.weights_changed} layers with new weights`));
  if (s.unchanged !== undefined) head.append(pill(`${s.unchanged} tensors identical`));
  root.append(head);

  // open on the first structural change, else on the most changed layer
  const order = data.graph.nodes.map((n) => n.id);
  let focus = order.find((id) => data.status[id] && data.status[id] !== "same");
  if (focus === undefined) {
    const hottest = Object.entries(data.heat ?? {}).sort((x, y) => y[1] - x[1])[0];
    focus = hottest?.[0];
  }
  const graphHost = h("div", {});
  root.append(graphHost);
  const graph: GraphHandle = renderGraph(graphHost, data.graph, {
    status: data.status,
    heat: data.heat,
    heatLabel: "relative weight change",
    focus,
    height: opts.height ?? 460,
    details: (id, panel, isGroup) => layerDetails(data, id, panel, isGroup),
  });

  root.append(
    h("div", { class: "nbmh-diff-row" },
      h("div", {}, h("h4", {}, "Hyperparameters"), paramsTable(data)),
      h("div", {}, h("h4", {}, "Metrics"), metricsTable(data))),
  );
  const charts: { destroy(): void }[] = [];
  const curveNames = Object.keys(data.curves ?? {});
  if (curveNames.length) {
    const box = h("div", { class: "nbmh-curves" });
    root.append(h("h4", {}, "Curves"), box);
    for (const name of curveNames) {
      const c = data.curves[name];
      const host = h("div", { "data-curve": name });
      box.append(host);
      charts.push(lineChart(host, [curveSeries(data.a, c.steps, c.a, SERIES_COLORS[0]), curveSeries(data.b, c.steps, c.b, SERIES_COLORS[1])], { title: name, height: 180, xLabel: "step" }));
    }
  }
  return () => {
    for (const c of charts) c.destroy();
    graph.destroy();
    root.remove();
  };
}
