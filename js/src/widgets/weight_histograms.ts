// WeightHistograms: one large histogram of the selected tensor over small multiples of every tensor.
// Two versions overlay on shared bins. Small multiples are drawn only when scrolled into view, so a
// model with thousands of tensors opens at once.
import type { RenderProps } from "../lib/anywidget";
import { onData } from "../lib/anywidget";
import { histogramChart, injectStyle, type Chart, type HistogramOptions, type HistogramSeries } from "../lib/charts";
import { SERIES_COLORS, fmt, h } from "../lib/style";

export interface TensorHistogram {
  name: string;
  layer: string;
  shape: number[];
  dtype: string;
  lo: number;
  hi: number;
  counts: (number[] | null)[];
  outside?: { below?: number; above?: number; nan?: number }[];
}

export interface HistogramData {
  refs: string[];
  bins: number;
  tensors: TensorHistogram[];
}

const CSS = `
.nbmh-hist { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  background: var(--jp-layout-color1, #fff); display: flex; flex-direction: column; gap: 6px; }
.nbmh-hist-bar { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.nbmh-hist-bar input[type=search] { flex: 0 1 240px; padding: 3px 6px; font: inherit; color: inherit;
  background: var(--jp-layout-color0, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; }
.nbmh-hist-bar label { display: inline-flex; align-items: center; gap: 4px; cursor: pointer; }
.nbmh-hist-refs { display: inline-flex; gap: 10px; font-weight: 600; }
.nbmh-hist-refs i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.nbmh-hist-count { color: var(--jp-ui-font-color2, #757575); margin-left: auto; }
.nbmh-hist-main { border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; padding: 6px 8px 4px; }
.nbmh-hist-meta { color: var(--jp-ui-font-color2, #757575); margin: 0 0 2px 4px; font-size: 11px; }
.nbmh-hist-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 6px;
  overflow-y: auto; align-content: start; padding: 1px; }
.nbmh-hist-cell { border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; padding: 4px 4px 0;
  cursor: pointer; min-height: 128px; box-sizing: border-box; content-visibility: auto; contain-intrinsic-size: auto 134px; }
.nbmh-hist-cell:hover { border-color: var(--jp-brand-color1, #1976d2); }
.nbmh-hist-cell.nbmh-selected { border-color: var(--jp-brand-color1, #1976d2); box-shadow: 0 0 0 1px var(--jp-brand-color1, #1976d2); }
.nbmh-hist-cell .nbmh-chart-title { font-size: 11px; }
.nbmh-hist-empty { color: var(--jp-ui-font-color2, #757575); padding: 16px; }
`;

/** A tensor's histograms as chart series on its (shared, uniform) bins. */
export function tensorSeries(t: TensorHistogram, refs: string[], bins: number): HistogramSeries[] {
  const edges = Array.from({ length: bins + 1 }, (_, i) => t.lo + ((t.hi - t.lo) * i) / bins);
  const out: HistogramSeries[] = [];
  t.counts.forEach((counts, i) => {
    if (counts) out.push({ label: refs[i] ?? `#${i + 1}`, edges, counts, color: SERIES_COLORS[i % SERIES_COLORS.length] });
  });
  return out;
}

function describe(t: TensorHistogram, refs: string[]): string {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const parts = [`${t.dtype} [${t.shape.join(" × ")}]`, `${fmt(n)} values`, `layer ${t.layer}`];
  t.counts.forEach((c, i) => {
    if (!c) parts.push(`absent in ${refs[i]}`);
  });
  t.outside?.forEach((o, i) => {
    const bits = Object.entries(o).filter(([, v]) => v).map(([k, v]) => `${fmt(v as number)} ${k === "nan" ? "NaN" : k}`);
    if (bits.length) parts.push(`${refs[i]}: ${bits.join(", ")} not binned`);
  });
  return parts.join(" · ");
}

/** Draws the whole view into `el`; returns a cleanup. Reusable by other views and the sidebar. */
export function renderWeightHistograms(el: HTMLElement, data: HistogramData, height = 520): () => void {
  injectStyle("nbmh-hist-style", CSS);
  const refs = data.refs ?? [];
  const tensors = data.tensors ?? [];
  const root = h("div", { class: "nbmh-hist" });
  el.replaceChildren(root);
  if (!tensors.length) {
    root.append(h("div", { class: "nbmh-hist-empty" }, `No weight tensors to show for ${refs.join(" vs ")}.`));
    return () => root.remove();
  }
  const state = { log: false, selected: 0, filter: "" };

  const search = h("input", { type: "search", placeholder: "filter tensors…", "aria-label": "filter tensors" });
  const log = h("input", { type: "checkbox", "aria-label": "log scale" });
  const count = h("span", { class: "nbmh-hist-count" });
  const legend = h("span", { class: "nbmh-hist-refs" }, ...refs.map((r, i) => h("span", {}, h("i", { style: `background:${SERIES_COLORS[i]}` }), r)));
  root.append(h("div", { class: "nbmh-hist-bar" }, legend, search, h("label", {}, log, "log scale"), count));

  const main = h("div", { class: "nbmh-hist-main" });
  const meta = h("div", { class: "nbmh-hist-meta" });
  const mainHost = h("div");
  main.append(mainHost, meta);
  const grid = h("div", { class: "nbmh-hist-grid" });
  grid.style.maxHeight = `${Math.max(180, height - 300)}px`;
  root.append(main, grid);

  let big: Chart<HistogramSeries, HistogramOptions> | null = null;
  const drawMain = () => {
    const t = tensors[state.selected];
    const series = tensorSeries(t, refs, data.bins);
    const title = `${t.name}`;
    if (big) big.update(series, { log: state.log, title });
    else big = histogramChart(mainHost, series, { log: state.log, title, height: 210 });
    meta.textContent = describe(t, refs);
  };

  // Cells exist for every tensor (cheap divs); their charts are drawn when first scrolled into view.
  const cells = tensors.map((t, i) =>
    h("div", { class: "nbmh-hist-cell", "data-name": t.name, title: `${t.name} — click to enlarge`, onclick: () => select(i) }),
  );
  const indexOf = new Map<Element, number>(cells.map((c, i) => [c, i]));
  const drawn = new Map<number, Chart<HistogramSeries, HistogramOptions>>();
  // Every cell chart gets a fixed width measured once per layout: a chart that measured itself would
  // force a reflow of the whole grid per cell, which at thousands of tensors is seconds.
  let cellWidth = 0;
  const drawCell = (i: number) => {
    if (drawn.has(i)) return;
    if (!cellWidth) cellWidth = Math.max(140, (cells[i].clientWidth || 220) - 10);
    const t = tensors[i];
    const c = histogramChart(cells[i], tensorSeries(t, refs, data.bins), { log: state.log, title: t.name, height: 112, width: cellWidth, legend: false });
    drawn.set(i, c);
  };
  const observer =
    typeof IntersectionObserver !== "undefined"
      ? new IntersectionObserver(
          (entries) => {
            for (const e of entries) {
              if (!e.isIntersecting) continue;
              drawCell(indexOf.get(e.target) ?? 0);
              observer?.unobserve(e.target);
            }
          },
          { root: grid, rootMargin: "200px" },
        )
      : null;
  /** Forget every drawn cell; those in view are drawn again at once, the rest when scrolled to. */
  const redrawCells = () => {
    for (const c of drawn.values()) c.destroy();
    drawn.clear();
    cells.forEach((c, i) => {
      if (observer) observer.observe(c);
      else drawCell(i);
    });
  };
  cells.forEach((c) => grid.append(c));
  redrawCells();
  let gridWidth = grid.clientWidth;
  const resized =
    typeof ResizeObserver !== "undefined"
      ? new ResizeObserver(() => {
          if (Math.abs(grid.clientWidth - gridWidth) < 4) return;
          gridWidth = grid.clientWidth;
          cellWidth = 0;
          redrawCells();
        })
      : null;
  resized?.observe(grid);

  const select = (i: number) => {
    cells[state.selected]?.classList.remove("nbmh-selected");
    state.selected = i;
    cells[i].classList.add("nbmh-selected");
    drawMain();
  };
  const applyFilter = () => {
    const q = state.filter.trim().toLowerCase();
    let shown = 0;
    tensors.forEach((t, i) => {
      const hit = !q || t.name.toLowerCase().includes(q) || t.layer.toLowerCase().includes(q);
      cells[i].style.display = hit ? "" : "none";
      if (hit) shown++;
    });
    count.textContent = q ? `${shown} of ${tensors.length} tensors` : `${tensors.length} tensors`;
    if (shown === 0) return;
    const first = tensors.findIndex((_, i) => cells[i].style.display !== "none");
    if (cells[state.selected].style.display === "none") select(first);
  };
  search.addEventListener("input", () => {
    state.filter = search.value;
    applyFilter();
  });
  log.addEventListener("change", () => {
    state.log = log.checked;
    drawMain();
    redrawCells();
  });

  // Start with the biggest tensor: its histogram is the smoothest and says the most.
  const size = (t: TensorHistogram) => t.shape.reduce((a, b) => a * b, 1);
  select(tensors.reduce((best, t, i) => (size(t) > size(tensors[best]) ? i : best), 0));
  applyFilter();
  return () => {
    observer?.disconnect();
    resized?.disconnect();
    big?.destroy();
    for (const c of drawn.values()) c.destroy();
    root.remove();
  };
}

export default {
  render({ model, el }: RenderProps) {
    let cleanup: (() => void) | null = null;
    const stop = onData(model, (data) => {
      cleanup?.();
      cleanup = renderWeightHistograms(el, data as HistogramData, model.get("height") ?? 520);
    });
    return () => {
      stop();
      cleanup?.();
    };
  },
};
