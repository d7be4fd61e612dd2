// RunsCompare: runs as rows, hyperparameters as columns (only the differing ones by default, highlighted),
// metrics as final value + sparkline. Tick rows to overlay their curves for the chosen metric below.
import type { RenderProps } from "../lib/anywidget";
import { onData } from "../lib/anywidget";
import { decimatedPath, injectStyle, lineChart, type Chart, type LineOptions, type LineSeries } from "../lib/charts";
import { SERIES_COLORS, fmt, h, svg } from "../lib/style";

export interface CompareRun {
  id: string;
  label: string;
  model: string;
  status: string;
  author: string;
  version: string | null;
  started: string;
  params: Record<string, unknown>;
  metrics: Record<string, number | null>;
  curves: Record<string, [number[], (number | null)[]]>;
}

export interface CompareData {
  runs: CompareRun[];
  params: string[];
  differing: string[];
  metrics: string[];
}

const CSS = `
.nbmh-cmp { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  background: var(--jp-layout-color1, #fff); display: flex; flex-direction: column; gap: 8px; }
.nbmh-cmp-bar { display: flex; gap: 14px; align-items: center; flex-wrap: wrap; }
.nbmh-cmp-bar label { display: inline-flex; gap: 4px; align-items: center; cursor: pointer; }
.nbmh-cmp-bar select { font: inherit; color: inherit; background: var(--jp-layout-color0, #fff);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; padding: 1px 4px; }
.nbmh-cmp-note { color: var(--jp-ui-font-color2, #757575); }
.nbmh-cmp-scroll { overflow: auto; max-height: 320px; border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; }
.nbmh-cmp table { border-collapse: collapse; font-variant-numeric: tabular-nums; width: max-content; min-width: 100%; }
.nbmh-cmp th { position: sticky; top: 0; background: var(--jp-layout-color2, #eee); text-align: left; font-weight: 600;
  padding: 4px 8px; border-bottom: 1px solid var(--jp-border-color1, #bdbdbd); white-space: nowrap; }
.nbmh-cmp th.nbmh-cmp-metric { border-left: 2px solid var(--jp-border-color1, #bdbdbd); }
.nbmh-cmp td { padding: 3px 8px; border-bottom: 1px solid var(--jp-border-color2, #e6e6e6); white-space: nowrap; }
.nbmh-cmp td.nbmh-cmp-metric { border-left: 2px solid var(--jp-border-color2, #e0e0e0); }
.nbmh-cmp tr:hover td { background: var(--jp-layout-color2, #f5f5f5); }
.nbmh-cmp tr.nbmh-picked td { background: color-mix(in srgb, var(--jp-brand-color1, #1976d2) 10%, transparent); }
.nbmh-cmp tr td.nbmh-diff { background: rgba(230, 155, 0, 0.22); font-weight: 600; }
.nbmh-cmp-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.nbmh-cmp-status { font-size: 11px; color: var(--jp-ui-font-color2, #757575); }
.nbmh-cmp-spark { vertical-align: middle; margin-left: 6px; }
.nbmh-cmp-chart { border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; padding: 4px 6px 0; min-height: 60px; }
.nbmh-cmp-hint { color: var(--jp-ui-font-color2, #757575); padding: 18px; text-align: center; }
`;

function valueText(v: unknown): string {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return fmt(v, 4);
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** A small inline chart of a curve (no axes), for a table cell. */
export function sparkline(xs: number[], ys: (number | null)[], color: string, width = 90, height = 22): SVGSVGElement {
  const s = svg("svg", { width, height, class: "nbmh-cmp-spark" });
  const y = ys.map((v) => (v === null ? NaN : v));
  const finite = y.filter(Number.isFinite);
  if (xs.length < 2 || finite.length < 2) return s;
  const x0 = xs[0];
  const x1 = xs[xs.length - 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi === lo) [lo, hi] = [lo - 1, hi + 1];
  const sx = (v: number) => 1 + ((v - x0) / (x1 - x0 || 1)) * (width - 2);
  const sy = (v: number) => height - 1 - ((v - lo) / (hi - lo)) * (height - 2);
  s.append(svg("path", { d: decimatedPath(xs, y, sx, sy, width), fill: "none", stroke: color, "stroke-width": 1.3 }));
  return s;
}

/** Draws the comparison into `el`; returns a cleanup. Reusable by the sidebar. */
export function renderRunsCompare(el: HTMLElement, data: CompareData): () => void {
  injectStyle("nbmh-cmp-style", CSS);
  const runs = data.runs ?? [];
  const root = h("div", { class: "nbmh-cmp" });
  el.replaceChildren(root);
  if (!runs.length) {
    root.append(h("div", { class: "nbmh-cmp-hint" }, "No runs to compare yet."));
    return () => root.remove();
  }
  const color = (i: number) => SERIES_COLORS[i % SERIES_COLORS.length];
  const picked = new Set<number>();
  let allParams = false;
  let metric = data.metrics.find((m) => runs.some((r) => (r.curves[m]?.[0].length ?? 0) > 1)) ?? data.metrics[0] ?? "";
  let chart: Chart<LineSeries, LineOptions> | null = null;

  const allBox = h("input", { type: "checkbox" });
  const select = h("select", {}, ...data.metrics.map((m) => h("option", { value: m }, m)));
  select.value = metric;
  const same = data.params.filter((p) => !data.differing.includes(p));
  const note = h("span", { class: "nbmh-cmp-note" });
  const bar = h(
    "div",
    { class: "nbmh-cmp-bar" },
    h("b", {}, `${runs.length} run${runs.length === 1 ? "" : "s"}`),
    h("label", {}, allBox, "show all params"),
    note,
    data.metrics.length ? h("label", {}, "overlay metric", select) : null,
  );
  const scroll = h("div", { class: "nbmh-cmp-scroll" });
  const chartBox = h("div", { class: "nbmh-cmp-chart" });
  root.append(bar, scroll, chartBox);

  const drawTable = () => {
    const params = allParams ? data.params : data.differing;
    note.textContent = !allParams && same.length ? `hidden: ${same.join(", ")} (equal in every run)` : "";
    const head = h(
      "tr",
      {},
      h("th", {}, ""),
      h("th", {}, "run"),
      h("th", {}, "author"),
      ...params.map((p) => h("th", {}, p)),
      ...data.metrics.map((m) => h("th", { class: "nbmh-cmp-metric" }, m)),
    );
    const rows = runs.map((r, i) => {
      const box = h("input", { type: "checkbox", "data-run": r.id });
      box.checked = picked.has(i);
      box.addEventListener("change", () => {
        if (box.checked) picked.add(i);
        else picked.delete(i);
        tr.classList.toggle("nbmh-picked", box.checked);
        drawChart();
      });
      const tr = h(
        "tr",
        { class: picked.has(i) ? "nbmh-picked" : "" },
        h("td", {}, box),
        h("td", { title: `run ${r.id} · ${r.started}` }, h("span", { class: "nbmh-cmp-swatch", style: `background:${color(i)}` }), h("b", {}, r.label), " ", h("span", { class: "nbmh-cmp-status" }, r.status)),
        h("td", {}, r.author),
        ...params.map((p) => h("td", { class: data.differing.includes(p) ? "nbmh-diff" : "" }, valueText(r.params[p]))),
        ...data.metrics.map((m) => {
          const c = r.curves[m];
          return h("td", { class: "nbmh-cmp-metric" }, valueText(r.metrics[m]), c ? sparkline(c[0], c[1], color(i)) : null);
        }),
      );
      return tr;
    });
    scroll.replaceChildren(h("table", {}, h("thead", {}, head), h("tbody", {}, ...rows)));
  };

  const drawChart = () => {
    const series: LineSeries[] = [...picked]
      .sort((a, b) => a - b)
      .filter((i) => runs[i].curves[metric])
      .map((i) => ({ label: runs[i].label, x: runs[i].curves[metric][0], y: runs[i].curves[metric][1].map((v) => (v === null ? NaN : v)), color: color(i) }));
    if (!series.length) {
      chart?.destroy();
      chart = null;
      chartBox.replaceChildren(h("div", { class: "nbmh-cmp-hint" }, picked.size ? `None of the picked runs logged ${metric}.` : "Tick runs to overlay their curves."));
      return;
    }
    if (!chart) {
      chartBox.replaceChildren();
      chart = lineChart(chartBox, series, { title: metric, xLabel: "step", height: 220 });
    } else chart.update(series, { title: metric });
  };

  allBox.addEventListener("change", () => {
    allParams = allBox.checked;
    drawTable();
  });
  select.addEventListener("change", () => {
    metric = select.value;
    drawChart();
  });
  drawTable();
  drawChart();
  return () => {
    chart?.destroy();
    root.remove();
  };
}

export default {
  render({ model, el }: RenderProps) {
    let cleanup: () => void = () => {};
    const stop = onData(model, (data: CompareData) => {
      cleanup();
      cleanup = renderRunsCompare(el, data);
    });
    return () => {
      stop();
      cleanup();
    };
  },
};
