// One palette and a few formatting helpers for every view, so graphs, histograms and tables agree.
// Colours follow JupyterLab's theme variables where they exist, with fixed fallbacks.

/** Layer families → fill colour (Netron-like: conv blue, norm green, activation red, pooling teal, ...). */
export const LAYER_COLORS: Record<string, string> = {
  conv: "#3b6fb6",
  linear: "#5a4fcf",
  attention: "#8e44ad",
  norm: "#3c8d5a",
  activation: "#c0392b",
  pool: "#16a085",
  dropout: "#7f8c8d",
  embedding: "#d35400",
  reshape: "#95a5a6",
  arithmetic: "#b7950b",
  input: "#2c3e50",
  output: "#2c3e50",
  group: "#566573",
  other: "#6c7a89",
};

/** Diff status colours: added green, removed red, changed amber. */
export const STATUS_COLORS = {
  added: "#2e9e44",
  removed: "#d03c3c",
  changed: "#e69b00",
  same: "#9aa5b1",
} as const;

/** Two versions overlaid: A blue, B orange (colour-blind safe pair). */
export const SERIES_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

/** Heat scale for a value in [0, 1]: pale yellow → amber → deep red. */
export function heat(t: number): string {
  const x = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0));
  const stops = [
    [255, 247, 188],
    [254, 196, 79],
    [217, 95, 14],
    [153, 52, 4],
  ];
  const pos = x * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(pos));
  const f = pos - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** Compact numbers: 1234567 → "1.23M", 0.000123 → "1.23e-4". */
export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (!Number.isFinite(x)) return x > 0 ? "∞" : "-∞";
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e15)) return x.toExponential(digits - 1);
  for (const [v, s] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]] as const) {
    if (a >= v && Number.isInteger(x)) return `${+(x / v).toPrecision(digits)}${s}`;
  }
  return `${+x.toPrecision(digits)}`;
}

/** Byte counts: 1536 → "1.5 KB". */
export function fmtBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** Small DOM builder: h("div", {class: "x"}, child, "text"). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | EventListener> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === "function") node.addEventListener(k.replace(/^on/, ""), v);
    else if (v === false) continue;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

export const SVG_NS = "http://www.w3.org/2000/svg";

export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number> = {},
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}
