// SVG charts shared by every view: histograms on shared bins and line charts (training curves).
// Crisp axes with nice ticks, a legend, a hover readout. Line charts decimate to min/max per pixel
// column, so a live curve of 10,000+ points redraws in a few milliseconds on every update.
import { SERIES_COLORS, fmt, h, svg } from "./style";

export interface HistogramSeries {
  label: string;
  edges: number[];
  counts: number[];
  color?: string;
}

export interface HistogramOptions {
  log?: boolean;
  /** Show the legend (default: when there are two or more series). */
  legend?: boolean;
  width?: number;
  height?: number;
  title?: string;
}

export interface LineSeries {
  label: string;
  x: number[];
  y: number[];
  color?: string;
}

export interface LineOptions {
  xLabel?: string;
  yLabel?: string;
  log?: boolean;
  width?: number;
  height?: number;
  title?: string;
}

export interface Chart<S, O> {
  /** Redraw with new series (and optionally changed options). */
  update(series: S[], opts?: Partial<O>): void;
  /** Stop watching the container's size and remove the chart. */
  destroy(): void;
  readonly root: HTMLElement;
}

const CSS = `
.nbmh-chart { position: relative; font: 11px var(--jp-ui-font-family, system-ui, sans-serif);
  color: var(--jp-ui-font-color1, #212121); user-select: none; }
.nbmh-chart-title { font-weight: 600; font-size: 12px; margin: 0 0 2px 4px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.nbmh-chart svg { display: block; overflow: visible; }
.nbmh-chart text { fill: var(--jp-ui-font-color2, #616161); font-size: 10px; }
.nbmh-chart .nbmh-axis-label { fill: var(--jp-ui-font-color1, #424242); font-size: 11px; }
.nbmh-chart .nbmh-grid { stroke: var(--jp-border-color2, #e6e6e6); stroke-width: 1; }
.nbmh-chart .nbmh-axis { stroke: var(--jp-border-color1, #9e9e9e); stroke-width: 1; }
.nbmh-chart .nbmh-cursor { stroke: var(--jp-ui-font-color2, #757575); stroke-dasharray: 3 3; }
.nbmh-chart .nbmh-band { fill: var(--jp-ui-font-color2, #757575); fill-opacity: 0.12; }
.nbmh-chart-legend { display: flex; flex-wrap: wrap; gap: 2px 12px; margin: 2px 0 0 44px; }
.nbmh-chart-legend span { display: inline-flex; align-items: center; gap: 4px; white-space: nowrap; }
.nbmh-chart-legend i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; }
.nbmh-chart-tip { position: absolute; pointer-events: none; z-index: 10; padding: 4px 6px;
  background: var(--jp-layout-color0, #fff); color: var(--jp-ui-font-color1, #212121);
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; box-shadow: 0 1px 4px rgba(0,0,0,.2);
  white-space: nowrap; font-variant-numeric: tabular-nums; display: none; }
.nbmh-chart-tip b { font-weight: 600; }
`;

/** Adds a view module's stylesheet to the document once (keyed by id). */
export function injectStyle(id: string, css: string): void {
  if (document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = css;
  document.head.append(style);
}

// -- scales and ticks ---------------------------------------------------------------------------

interface Scale {
  (v: number): number;
  ticks: number[];
  label(v: number): string;
  invert(px: number): number;
}

/** 1, 2 or 5 times a power of ten, near `span / count`. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const r = raw / p;
  return (r < Math.SQRT2 ? 1 : r < Math.sqrt(10) ? 2 : r < Math.sqrt(50) ? 5 : 10) * p;
}

export function niceTicks(lo: number, hi: number, count: number): number[] {
  if (!(hi > lo)) return [lo];
  const step = niceStep(hi - lo, count);
  const out: number[] = [];
  const start = Math.ceil(lo / step - 1e-9);
  for (let i = start; i * step <= hi + step * 1e-9; i++) out.push(+(i * step).toPrecision(12));
  return out;
}

function tickLabel(step: number, largest: number): (v: number) => string {
  const a = Math.abs(step);
  if (a === 0 || a >= 1e6 || a < 1e-4) return (v) => (v === 0 ? "0" : v.toExponential(1).replace("e+", "e"));
  const decimals = Math.max(0, -Math.floor(Math.log10(a) + 1e-9));
  // One style per axis: all compact (10k, 12k) once the largest tick needs it, else plain digits.
  if (decimals === 0 && largest >= 1e4) return (v) => fmt(v);
  return (v) => v.toFixed(decimals);
}

function linear(d0: number, d1: number, r0: number, r1: number, count: number, nice: boolean, integer = false): Scale {
  if (!(d1 > d0)) {
    const pad = d0 === 0 ? 1 : Math.abs(d0) * 0.1;
    d0 -= pad;
    d1 += pad;
  }
  // Counts have no fractional ticks: fewer ticks rather than 0.5 of a value.
  const tick = (a: number, b: number) => (integer ? niceTicks(a, b, Math.min(count, Math.max(1, b - a))) : niceTicks(a, b, count));
  let ticks = tick(d0, d1);
  if (nice && ticks.length > 1) {
    const step = ticks[1] - ticks[0];
    d0 = Math.min(d0, ticks[0] > d0 ? ticks[0] - step : ticks[0]);
    d1 = Math.max(d1, ticks[ticks.length - 1] < d1 ? ticks[ticks.length - 1] + step : d1);
    ticks = tick(d0, d1);
  }
  const k = (r1 - r0) / (d1 - d0);
  const f = ((v: number) => r0 + (v - d0) * k) as Scale;
  f.ticks = ticks;
  f.label = tickLabel(ticks.length > 1 ? ticks[1] - ticks[0] : d1 - d0, Math.max(...ticks.map(Math.abs)));
  f.invert = (px) => d0 + (px - r0) / k;
  return f;
}

/** Log10 scale; values ≤ 0 map to the bottom of the range (a zero count sits on the axis). */
function logarithmic(d0: number, d1: number, r0: number, r1: number): Scale {
  d0 = d0 > 0 ? d0 : 1;
  if (!(d1 > d0)) d1 = d0 * 10;
  const l0 = Math.floor(Math.log10(d0) + 1e-9);
  const l1 = Math.ceil(Math.log10(d1) - 1e-9);
  const lo = Math.log10(d0);
  const hi = Math.max(l1, lo + 1);
  const k = (r1 - r0) / (hi - lo);
  const f = ((v: number) => (v > 0 ? r0 + (Math.log10(v) - lo) * k : r0)) as Scale;
  const decades = hi - l0;
  const every = Math.max(1, Math.ceil(decades / 6));
  const ticks: number[] = [];
  for (let e = l0; e <= hi; e += every) {
    const v = Math.pow(10, e);
    if (v >= d0 * (1 - 1e-9)) ticks.push(v);
    if (decades <= 2) for (const m of [2, 5]) if (m * v >= d0 && Math.log10(m * v) <= hi) ticks.push(m * v);
  }
  f.ticks = ticks.sort((a, b) => a - b);
  f.label = (v) => (v >= 1e-3 && v < 1e5 ? `${+v.toPrecision(3)}` : v.toExponential(0).replace("e+", "e"));
  f.invert = (px) => Math.pow(10, lo + (px - r0) / k);
  return f;
}

// -- the frame every chart draws in ---------------------------------------------------------------

interface Frame {
  left: number;
  right: number;
  top: number;
  bottom: number;
  width: number;
  height: number;
}

function frameOf(width: number, height: number, yLabel: boolean, xLabel: boolean): Frame {
  const left = yLabel ? 56 : 44;
  const bottom = xLabel ? 34 : 20;
  return { left, right: width - 10, top: 6, bottom: height - bottom, width, height };
}

/** Grid lines, axes, tick labels and axis titles; returns the layer the data is drawn into. */
function drawAxes(root: SVGSVGElement, f: Frame, x: Scale, y: Scale, xLabel?: string, yLabel?: string): SVGGElement {
  const grid = svg("g");
  const axes = svg("g");
  for (const t of y.ticks) {
    const py = Math.round(y(t)) + 0.5;
    if (py < f.top - 1 || py > f.bottom + 1) continue;
    grid.append(svg("line", { class: "nbmh-grid", x1: f.left, x2: f.right, y1: py, y2: py }));
    const label = svg("text", { x: f.left - 5, y: py, "text-anchor": "end", "dominant-baseline": "middle" });
    label.textContent = y.label(t);
    axes.append(label);
  }
  // Keep x tick labels from colliding: drop every other one until they fit.
  let xt = x.ticks.filter((t) => x(t) >= f.left - 1 && x(t) <= f.right + 1);
  const longest = Math.max(...xt.map((t) => x.label(t).length), 1);
  while (xt.length > 2 && (f.right - f.left) / xt.length < longest * 6.5 + 8) xt = xt.filter((_, i) => i % 2 === 0);
  for (const t of xt) {
    const px = Math.round(x(t)) + 0.5;
    axes.append(svg("line", { class: "nbmh-axis", x1: px, x2: px, y1: f.bottom, y2: f.bottom + 4 }));
    const label = svg("text", { x: px, y: f.bottom + 14, "text-anchor": "middle" });
    label.textContent = x.label(t);
    axes.append(label);
  }
  const bottom = Math.round(f.bottom) + 0.5;
  axes.append(svg("line", { class: "nbmh-axis", x1: f.left, x2: f.right, y1: bottom, y2: bottom }));
  axes.append(svg("line", { class: "nbmh-axis", x1: f.left + 0.5, x2: f.left + 0.5, y1: f.top, y2: f.bottom }));
  if (xLabel) {
    const t = svg("text", { class: "nbmh-axis-label", x: (f.left + f.right) / 2, y: f.height - 4, "text-anchor": "middle" });
    t.textContent = xLabel;
    axes.append(t);
  }
  if (yLabel) {
    const cy = (f.top + f.bottom) / 2;
    const t = svg("text", { class: "nbmh-axis-label", x: 11, y: cy, "text-anchor": "middle", transform: `rotate(-90 11 ${cy})` });
    t.textContent = yLabel;
    axes.append(t);
  }
  const clipId = `nbmh-clip-${Math.random().toString(36).slice(2)}`;
  const defs = svg("defs");
  const clip = svg("clipPath", { id: clipId });
  // A few pixels of slack so points on the domain's edge are not cut in half.
  clip.append(svg("rect", { x: f.left - 4, y: f.top - 4, width: f.right - f.left + 8, height: f.bottom - f.top + 8 }));
  defs.append(clip);
  const data = svg("g", { "clip-path": `url(#${clipId})` });
  root.append(defs, grid, data, axes);
  return data;
}

function legend(labels: { label: string; color: string }[]): HTMLElement | null {
  if (labels.length < 2) return null;
  return h("div", { class: "nbmh-chart-legend" }, ...labels.map((s) => h("span", {}, h("i", { style: `background:${s.color}` }), s.label)));
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] as string);
}

/** Shared scaffolding: container, title, svg, legend, tooltip, size tracking, hover wiring. */
function chart<S, O extends { width?: number; height?: number; title?: string }>(
  el: HTMLElement,
  series: S[],
  opts: O,
  draw: (svgEl: SVGSVGElement, series: S[], opts: O, width: number) => {
    legend: { label: string; color: string }[] | null;
    hover: (px: number, py: number) => string | null;
  },
): Chart<S, O> {
  injectStyle("nbmh-chart-style", CSS);
  const root = h("div", { class: "nbmh-chart" });
  el.append(root);
  let current = series;
  let options = opts;
  let width = 0;
  let hover: (px: number, py: number) => string | null = () => null;
  const tip = h("div", { class: "nbmh-chart-tip" });

  const render = () => {
    width = options.width ?? Math.max(160, Math.floor(el.clientWidth || 480));
    const height = options.height ?? 220;
    const s = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
    const drawn = draw(s, current, options, width);
    hover = drawn.hover;
    const title = options.title ? h("div", { class: "nbmh-chart-title", title: options.title }, options.title) : null;
    root.replaceChildren(...[title, s, drawn.legend ? legend(drawn.legend) : null, tip].filter((n): n is HTMLElement | SVGSVGElement => !!n));
    tip.style.display = "none";
  };

  root.addEventListener("mousemove", (ev) => {
    const s = root.querySelector("svg");
    if (!s) return;
    const box = s.getBoundingClientRect();
    const html = hover(ev.clientX - box.left, ev.clientY - box.top);
    if (!html) {
      tip.style.display = "none";
      return;
    }
    tip.innerHTML = html;
    tip.style.display = "block";
    const rootBox = root.getBoundingClientRect();
    const x = ev.clientX - rootBox.left;
    const flip = x + tip.offsetWidth + 16 > rootBox.width;
    tip.style.left = `${flip ? x - tip.offsetWidth - 12 : x + 12}px`;
    tip.style.top = `${Math.max(0, ev.clientY - rootBox.top - tip.offsetHeight - 8)}px`;
  });
  root.addEventListener("mouseleave", () => {
    tip.style.display = "none";
    hover(-1, -1);
  });

  render();
  // Without a fixed width the chart follows its container (a resized notebook, a grid cell).
  let observer: ResizeObserver | null = null;
  if (opts.width === undefined && typeof ResizeObserver !== "undefined") {
    observer = new ResizeObserver(() => {
      if (options.width === undefined && el.clientWidth > 0 && Math.abs(el.clientWidth - width) > 2) render();
    });
    observer.observe(el);
  }
  return {
    root,
    update(next: S[], more?: Partial<O>) {
      current = next;
      if (more) options = { ...options, ...more };
      render();
    },
    destroy() {
      observer?.disconnect();
      root.remove();
    },
  };
}

// -- histograms --------------------------------------------------------------------------------

/** Histograms overlaid on shared bins: filled steps, semi-transparent, hover shows each bin's counts. */
export function histogramChart(el: HTMLElement, series: HistogramSeries[], opts: HistogramOptions = {}): Chart<HistogramSeries, HistogramOptions> {
  return chart(el, series, opts, (root, list, o, width) => {
    const f = frameOf(width, o.height ?? 220, false, false);
    const shown = list.filter((s) => s.edges.length === s.counts.length + 1 && s.counts.length > 0);
    const colors = shown.map((s, i) => s.color ?? SERIES_COLORS[i % SERIES_COLORS.length]);
    let lo = Infinity;
    let hi = -Infinity;
    let top = 0;
    for (const s of shown) {
      lo = Math.min(lo, s.edges[0]);
      hi = Math.max(hi, s.edges[s.edges.length - 1]);
      for (const c of s.counts) top = Math.max(top, c);
    }
    if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
    const x = linear(lo, hi, f.left, f.right, Math.max(3, Math.floor((f.right - f.left) / 70)), false);
    const y = o.log
      ? logarithmic(0.5, Math.max(1, top) * 1.15, f.bottom, f.top)
      : linear(0, Math.max(1, top) * 1.05, f.bottom, f.top, f.bottom - f.top < 100 ? 3 : 4, true, true);
    if (o.log) y.ticks = y.ticks.filter((t) => t >= 1); // counts: no tick at half a value
    const data = drawAxes(root, f, x, y);
    const alpha = shown.length > 1 ? 0.32 : 0.55;
    shown.forEach((s, i) => {
      const parts: string[] = [`M${x(s.edges[0]).toFixed(1)},${f.bottom}`];
      for (let b = 0; b < s.counts.length; b++) {
        const py = y(s.counts[b]).toFixed(1);
        parts.push(`V${py}H${x(s.edges[b + 1]).toFixed(1)}`);
      }
      parts.push(`V${f.bottom}Z`);
      data.append(svg("path", { d: parts.join(""), fill: colors[i], "fill-opacity": alpha, stroke: colors[i], "stroke-width": 1.2, "stroke-linejoin": "miter" }));
    });
    const band = svg("rect", { class: "nbmh-band", x: 0, y: f.top, width: 0, height: f.bottom - f.top, visibility: "hidden" });
    data.append(band);
    const ref = shown[0];
    return {
      legend: o.legend === false ? null : shown.map((s, i) => ({ label: s.label, color: colors[i] })),
      hover(px) {
        if (!ref || px < f.left || px > f.right) {
          band.setAttribute("visibility", "hidden");
          return null;
        }
        const v = x.invert(px);
        const b = upperBound(ref.edges, v) - 1;
        if (b < 0 || b >= ref.counts.length) {
          band.setAttribute("visibility", "hidden");
          return null;
        }
        const x0 = x(ref.edges[b]);
        band.setAttribute("x", `${x0}`);
        band.setAttribute("width", `${Math.max(1, x(ref.edges[b + 1]) - x0)}`);
        band.setAttribute("visibility", "visible");
        const rows = shown.map((s, i) => {
          const k = s === ref ? b : upperBound(s.edges, v) - 1;
          const c = k >= 0 && k < s.counts.length ? s.counts[k] : 0;
          return `<br><i style="color:${colors[i]}">■</i> ${escapeHtml(s.label)}: <b>${c.toLocaleString()}</b>`;
        });
        return `[${fmt(ref.edges[b], 4)}, ${fmt(ref.edges[b + 1], 4)})${rows.join("")}`;
      },
    };
  });
}

/** Index of the first element greater than v (arrays sorted ascending). */
function upperBound(a: number[], v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// -- line charts -------------------------------------------------------------------------------

/** Points sorted by x, so hover can binary-search and decimation can sweep columns. */
function sortedPoints(s: LineSeries): { x: number[]; y: number[] } {
  const n = Math.min(s.x.length, s.y.length);
  let sorted = true;
  for (let i = 1; i < n; i++) if (s.x[i] < s.x[i - 1]) { sorted = false; break; }
  if (sorted) return { x: s.x.length === n ? s.x : s.x.slice(0, n), y: s.y.length === n ? s.y : s.y.slice(0, n) };
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => s.x[a] - s.x[b]);
  return { x: order.map((i) => s.x[i]), y: order.map((i) => s.y[i]) };
}

/**
 * An SVG path through the points; with more points than pixel columns, each column keeps its first,
 * lowest, highest and last point (in order), so spikes survive and the path stays ~4 points per pixel.
 * Non-finite values (a diverged run) break the line.
 */
export function decimatedPath(xs: number[], ys: number[], sx: (v: number) => number, sy: (v: number) => number, columns: number, log = false): string {
  const n = xs.length;
  const out: string[] = [];
  let pen = false;
  let run = 0; // points in the current unbroken segment; a lone point is drawn as a round dot
  const valid = (v: number) => Number.isFinite(v) && (!log || v > 0);
  const lift = () => {
    if (run === 1) out.push("h0.01");
    pen = false;
    run = 0;
  };
  const emit = (px: number, py: number) => {
    out.push(`${pen ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`);
    pen = true;
    run++;
  };
  if (n <= columns * 2) {
    for (let i = 0; i < n; i++) {
      if (!valid(ys[i])) {
        lift();
        continue;
      }
      emit(sx(xs[i]), sy(ys[i]));
    }
    lift();
    return out.join("");
  }
  let col = NaN;
  let first = -1, last = -1, lo = -1, hi = -1;
  const flush = () => {
    if (first < 0) return;
    const picks = [first, lo, hi, last].filter((v, i, a) => a.indexOf(v) === i).sort((a, b) => a - b);
    for (const i of picks) emit(sx(xs[i]), sy(ys[i]));
    first = -1;
  };
  for (let i = 0; i < n; i++) {
    if (!valid(ys[i])) {
      flush();
      lift();
      continue;
    }
    const c = Math.floor(sx(xs[i]));
    if (c !== col) {
      flush();
      col = c;
      first = last = lo = hi = i;
    } else {
      last = i;
      if (ys[i] < ys[lo]) lo = i;
      if (ys[i] > ys[hi]) hi = i;
    }
  }
  flush();
  lift();
  return out.join("");
}

/** Lines over a shared x axis (training steps); `update(series)` redraws cheaply for live curves. */
export function lineChart(el: HTMLElement, series: LineSeries[], opts: LineOptions = {}): Chart<LineSeries, LineOptions> {
  return chart(el, series, opts, (root, list, o, width) => {
    const f = frameOf(width, o.height ?? 220, !!o.yLabel, !!o.xLabel);
    const pts = list.map(sortedPoints);
    const colors = list.map((s, i) => s.color ?? SERIES_COLORS[i % SERIES_COLORS.length]);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const p of pts) {
      if (p.x.length) {
        x0 = Math.min(x0, p.x[0]);
        x1 = Math.max(x1, p.x[p.x.length - 1]);
      }
      for (const v of p.y) {
        if (!Number.isFinite(v) || (o.log && v <= 0)) continue;
        if (v < y0) y0 = v;
        if (v > y1) y1 = v;
      }
    }
    if (!Number.isFinite(x0)) [x0, x1] = [0, 1];
    if (!Number.isFinite(y0)) [y0, y1] = o.log ? [1, 10] : [0, 1];
    const x = linear(x0, x1, f.left, f.right, Math.max(3, Math.floor((f.right - f.left) / 70)), false);
    const y = o.log ? logarithmic(y0, y1, f.bottom, f.top) : linear(y0, y1, f.bottom, f.top, 4, true);
    const data = drawAxes(root, f, x, y, o.xLabel, o.yLabel);
    const columns = Math.max(1, Math.round(f.right - f.left));
    pts.forEach((p, i) => {
      const d = decimatedPath(p.x, p.y, x, y, columns, !!o.log);
      const single = p.x.length === 1;
      if (d) data.append(svg("path", { d, fill: "none", stroke: colors[i], "stroke-width": single ? 6 : 1.6, "stroke-linejoin": "round", "stroke-linecap": "round" }));
    });
    const cursor = svg("line", { class: "nbmh-cursor", x1: 0, x2: 0, y1: f.top, y2: f.bottom, visibility: "hidden" });
    const dots = pts.map((_, i) => svg("circle", { r: 3.5, fill: colors[i], stroke: "var(--jp-layout-color0, #fff)", "stroke-width": 1.5, visibility: "hidden" }));
    data.append(cursor, ...dots);
    return {
      legend: list.map((s, i) => ({ label: s.label, color: colors[i] })),
      hover(px) {
        const hide = () => {
          cursor.setAttribute("visibility", "hidden");
          for (const d of dots) d.setAttribute("visibility", "hidden");
          return null;
        };
        if (px < f.left || px > f.right) return hide();
        const v = x.invert(px);
        const rows: string[] = [];
        let at: number | null = null;
        pts.forEach((p, i) => {
          const k = nearest(p.x, v);
          if (k < 0) {
            dots[i].setAttribute("visibility", "hidden");
            return;
          }
          at ??= p.x[k];
          const value = p.y[k];
          const drawable = Number.isFinite(value) && (!o.log || value > 0);
          dots[i].setAttribute("visibility", drawable ? "visible" : "hidden");
          if (drawable) {
            dots[i].setAttribute("cx", `${x(p.x[k])}`);
            dots[i].setAttribute("cy", `${y(value)}`);
          }
          rows.push(`<br><i style="color:${colors[i]}">■</i> ${escapeHtml(list[i].label)}: <b>${fmt(value, 4)}</b>${p.x[k] !== at ? ` <span style="opacity:.7">@ ${p.x[k].toLocaleString()}</span>` : ""}`);
        });
        if (at === null) return hide();
        cursor.setAttribute("x1", `${x(at)}`);
        cursor.setAttribute("x2", `${x(at)}`);
        cursor.setAttribute("visibility", "visible");
        const where = Number.isInteger(at) ? (at as number).toLocaleString() : fmt(at, 6);
        return `${escapeHtml(o.xLabel ?? "x")} ${where}${rows.join("")}`;
      },
    };
  });
}

/** Index of the x nearest to v in a sorted array, or -1 if empty. */
function nearest(xs: number[], v: number): number {
  if (!xs.length) return -1;
  const i = upperBound(xs, v);
  if (i === 0) return 0;
  if (i >= xs.length) return xs.length - 1;
  return v - xs[i - 1] <= xs[i] - v ? i - 1 : i;
}
