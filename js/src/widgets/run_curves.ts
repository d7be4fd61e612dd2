// RunCurves: a run's training curves, one chart per metric, growing while the run logs.
// Python sends only the new points (a custom "append" message a few times a second); the view
// appends them and redraws the charts that changed once per animation frame. Charts decimate to
// min/max per pixel column, so 10,000+ points stay smooth.
import type { RenderProps } from "../lib/anywidget";
import { injectStyle, lineChart, type Chart, type LineOptions, type LineSeries } from "../lib/charts";
import { fmt, h } from "../lib/style";

export interface RunCurvesData {
  id: string;
  model: string;
  author?: string;
  status: string;
  params?: Record<string, unknown>;
  last_step: number | null;
  points: number;
  curves: Record<string, [number[], (number | null)[]]>;
}

export interface RunAppend extends Omit<RunCurvesData, "curves"> {
  kind: "append";
  curves: Record<string, [number[], (number | null)[]]>;
}

const STATUS: Record<string, string> = {
  running: "#2e9e44",
  interrupted: "#e69b00",
  committed: "#1f77b4",
  discarded: "#9aa5b1",
};

const CSS = `
.nbmh-run { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  background: var(--jp-layout-color1, #fff); display: flex; flex-direction: column; gap: 6px; }
.nbmh-run-head { display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
.nbmh-run-head b { font-size: 13px; }
.nbmh-run-id { color: var(--jp-ui-font-color2, #757575); font-family: var(--jp-code-font-family, monospace); }
.nbmh-run-status { display: inline-block; color: #fff; border-radius: 9px; padding: 0 8px; font-size: 11px;
  line-height: 17px; white-space: nowrap; }
.nbmh-run-dot { display: inline-block; width: 7px; height: 7px; border-radius: 50%; background: #fff; margin-right: 5px;
  vertical-align: 0; animation: nbmh-pulse 1.2s ease-in-out infinite; }
@keyframes nbmh-pulse { 50% { opacity: .25; } }
.nbmh-run-meta { color: var(--jp-ui-font-color2, #757575); font-variant-numeric: tabular-nums; }
.nbmh-run-params { color: var(--jp-ui-font-color2, #757575); font-size: 11px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.nbmh-run-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 8px; }
.nbmh-run-cell { border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; padding: 4px 4px 0; min-width: 0; }
.nbmh-run-empty { color: var(--jp-ui-font-color2, #757575); padding: 16px; }
`;

interface Panel {
  x: number[];
  y: number[];
  chart: Chart<LineSeries, LineOptions>;
  dirty: boolean;
}

export interface RunCurvesView {
  /** Replace everything (the first draw, or a full resync). */
  reset(data: RunCurvesData): void;
  /** Add the points of an append message. */
  append(delta: RunAppend): void;
  destroy(): void;
}

/** Draws a run's curves into `el`; reusable by the sidebar (which feeds it from REST polling). */
export function renderRunCurves(el: HTMLElement, data: RunCurvesData): RunCurvesView {
  injectStyle("nbmh-run-style", CSS);
  const root = h("div", { class: "nbmh-run" });
  const head = h("div", { class: "nbmh-run-head" });
  const params = h("div", { class: "nbmh-run-params" });
  const grid = h("div", { class: "nbmh-run-grid" });
  const empty = h("div", { class: "nbmh-run-empty" }, "Waiting for the first run.log(step, …) …");
  root.append(head, params, grid, empty);
  el.replaceChildren(root);
  const panels = new Map<string, Panel>();
  let frame = 0;
  let info: Omit<RunCurvesData, "curves"> = data;

  const drawHead = () => {
    const color = STATUS[info.status] ?? "#9aa5b1";
    const dot = info.status === "running" ? h("span", { class: "nbmh-run-dot" }) : null;
    const badge = h("span", { class: "nbmh-run-status", style: `background:${color}` }, dot, info.status);
    const step = info.last_step === null || info.last_step === undefined ? "no steps yet" : `step ${info.last_step.toLocaleString("en-US")}`;
    const meta = `${step} · ${(info.points ?? 0).toLocaleString("en-US")} point${info.points === 1 ? "" : "s"}`;
    head.replaceChildren(h("b", {}, info.model), h("span", { class: "nbmh-run-id" }, `run ${info.id}`), badge, h("span", { class: "nbmh-run-meta", "data-points": info.points }, meta), ...(info.author ? [h("span", { class: "nbmh-run-meta" }, `by ${info.author}`)] : []));
    const entries = Object.entries(info.params ?? {});
    params.textContent = entries.map(([k, v]) => `${k}=${typeof v === "number" ? fmt(v, 4) : JSON.stringify(v)}`).join("  ");
    params.title = params.textContent;
  };

  const panel = (name: string): Panel => {
    let p = panels.get(name);
    if (!p) {
      const cell = h("div", { class: "nbmh-run-cell", "data-metric": name });
      grid.append(cell);
      empty.remove();
      const x: number[] = [];
      const y: number[] = [];
      p = { x, y, chart: lineChart(cell, [{ label: name, x, y }], { title: name, xLabel: "step", height: 170 }), dirty: false };
      panels.set(name, p);
    }
    return p;
  };

  const redraw = () => {
    frame = 0;
    for (const [name, p] of panels) {
      if (!p.dirty) continue;
      p.dirty = false;
      p.chart.update([{ label: name, x: p.x, y: p.y }]);
    }
  };
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(redraw);
  };

  const add = (curves: RunCurvesData["curves"]) => {
    for (const [name, [xs, ys]] of Object.entries(curves ?? {})) {
      const p = panel(name);
      for (let i = 0; i < xs.length; i++) {
        p.x.push(xs[i]);
        p.y.push(ys[i] === null ? NaN : (ys[i] as number));
      }
      p.dirty = true;
    }
    schedule();
  };

  const view: RunCurvesView = {
    reset(next) {
      info = next;
      for (const p of panels.values()) {
        p.x.length = 0;
        p.y.length = 0;
        p.dirty = true;
      }
      drawHead();
      add(next.curves);
    },
    append(delta) {
      info = { ...info, ...delta };
      drawHead();
      add(delta.curves);
    },
    destroy() {
      if (frame) cancelAnimationFrame(frame);
      for (const p of panels.values()) p.chart.destroy();
      root.remove();
    },
  };
  view.reset(data);
  return view;
}

export default {
  render({ model, el }: RenderProps) {
    const view = renderRunCurves(el, model.get("data"));
    const onData = () => view.reset(model.get("data"));
    const onMessage = (msg: RunAppend) => {
      if (msg && msg.kind === "append") view.append(msg);
    };
    model.on("change:data", onData);
    model.on("msg:custom", onMessage);
    // Points logged between the widget's creation and this view's first draw: ask for them.
    if (model.get("data")?.status === "running") model.send({ kind: "sync" });
    return () => {
      model.off("change:data", onData);
      model.off("msg:custom", onMessage);
      view.destroy();
    };
  },
};
