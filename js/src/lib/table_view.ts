// A sortable, filterable table with virtualised rows (only the rows in view exist in the DOM, so
// 10,000 versions scroll smoothly) and row picking. Used by the VersionTable widget and the sidebar.
import { injectStyle } from "./charts";
import { fmt, h } from "./style";

export type CellValue = string | number | boolean | null | undefined | string[];

export interface Column<R> {
  key: string;
  label: string;
  /** "param" and "metric" columns get a coloured header band; "select" is the pick box. */
  group?: "param" | "metric" | "info";
  numeric?: boolean;
  value(row: R): CellValue;
  /** Header tooltip. */
  title?: string;
}

export interface TableOptions<R> {
  columns: Column<R>[];
  rows: R[];
  rowKey(row: R): string;
  /** Text the filter box searches (default: every cell's text). */
  searchText?(row: R): string;
  height?: number;
  rowHeight?: number;
  /** At most this many picked rows; picking one more drops the oldest pick (default 2). */
  maxPicks?: number;
  onPick?(keys: string[]): void;
  /** Rows shown in the status line as "versions". */
  noun?: string;
  placeholder?: string;
}

export interface TableHandle<R> {
  setRows(rows: R[]): void;
  setPicked(keys: string[]): void;
  /** Keys of the rows that pass the filter, in display order. */
  visibleKeys(): string[];
  destroy(): void;
}

const CSS = `
.nbmh-table { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  display: flex; flex-direction: column; gap: 6px; }
.nbmh-table-bar { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.nbmh-table-bar input { flex: 0 1 320px; padding: 3px 6px; font: inherit; color: inherit;
  background: var(--jp-layout-color0, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; }
.nbmh-table-status { color: var(--jp-ui-font-color2, #757575); }
.nbmh-table-scroll { overflow: auto; position: relative; border: 1px solid var(--jp-border-color2, #e0e0e0);
  border-radius: 4px; background: var(--jp-layout-color1, #fff); }
.nbmh-table-head, .nbmh-table-row { display: grid; align-items: center; min-width: max-content; }
.nbmh-table-head { position: sticky; top: 0; z-index: 2; background: var(--jp-layout-color2, #f5f5f5);
  border-bottom: 1px solid var(--jp-border-color1, #bdbdbd); font-weight: 600; }
.nbmh-table-head > div { padding: 5px 8px; cursor: pointer; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; border-top: 3px solid transparent; }
.nbmh-table-head > div:hover { background: var(--jp-layout-color3, #e0e0e0); }
.nbmh-table-head > .nbmh-g-param { border-top-color: #5a4fcf; }
.nbmh-table-head > .nbmh-g-metric { border-top-color: #2e9e44; }
.nbmh-table-head .nbmh-sort { opacity: .8; margin-left: 3px; font-size: 10px; }
.nbmh-table-body { position: relative; }
.nbmh-table-row { position: absolute; left: 0; right: 0; cursor: pointer; border-bottom: 1px solid var(--jp-border-color3, #eee); box-sizing: border-box; }
.nbmh-table-row:hover { background: var(--jp-layout-color2, #f5f5f5); }
.nbmh-table-row.nbmh-picked { background: color-mix(in srgb, var(--jp-brand-color1, #1976d2) 16%, transparent); }
.nbmh-table-row > div { padding: 0 8px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.nbmh-table-row > .nbmh-num { text-align: right; font-variant-numeric: tabular-nums; }
.nbmh-table-head > .nbmh-num { text-align: right; }
.nbmh-table-row > .nbmh-missing { color: var(--jp-ui-font-color3, #bdbdbd); }
.nbmh-table-pick { width: 14px; height: 14px; border: 1.5px solid var(--jp-border-color1, #9e9e9e); border-radius: 3px;
  display: inline-flex; align-items: center; justify-content: center; font-size: 10px; font-weight: 700; box-sizing: border-box; }
.nbmh-picked .nbmh-table-pick { background: var(--jp-brand-color1, #1976d2); border-color: var(--jp-brand-color1, #1976d2); color: #fff; }
.nbmh-tag { display: inline-block; padding: 0 5px; margin-right: 3px; border-radius: 8px; font-size: 10px; line-height: 15px;
  background: color-mix(in srgb, #e69b00 22%, transparent); border: 1px solid color-mix(in srgb, #e69b00 60%, transparent); }
.nbmh-table-empty { padding: 16px; color: var(--jp-ui-font-color2, #757575); }
`;

function text(v: CellValue): string {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return v.join(" ");
  // 5.000e-4 → 5e-4: exponent form without trailing zeros.
  if (typeof v === "number") return fmt(v, 4).replace(/\.?0+e/, "e");
  return String(v);
}

/** Ascending comparison with missing values always last (whatever the direction). */
function compare(a: CellValue, b: CellValue, dir: number): number {
  const missA = a === null || a === undefined || a === "" || (typeof a === "number" && Number.isNaN(a));
  const missB = b === null || b === undefined || b === "" || (typeof b === "number" && Number.isNaN(b));
  if (missA || missB) return missA === missB ? 0 : missA ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return (a - b) * dir;
  return text(a).localeCompare(text(b), undefined, { numeric: true, sensitivity: "base" }) * dir;
}

/** Column widths from the header and a sample of the cells (monospace-free estimate: 7 px per char). */
function widths<R>(columns: Column<R>[], rows: R[]): string {
  const sample = rows.length > 400 ? rows.filter((_, i) => i % Math.ceil(rows.length / 400) === 0) : rows;
  return columns
    .map((c) => {
      if (c.key === "__pick") return "34px";
      let longest = c.label.length + 2;
      for (const r of sample) longest = Math.max(longest, text(c.value(r)).length);
      return `${Math.round(Math.min(c.key === "message" ? 360 : 240, Math.max(48, longest * 7.5 + 26)))}px`;
    })
    .join(" ");
}

export function tableView<R>(el: HTMLElement, opts: TableOptions<R>): TableHandle<R> {
  injectStyle("nbmh-table-style", CSS);
  const rowHeight = opts.rowHeight ?? 26;
  const maxPicks = opts.maxPicks ?? 2;
  const noun = opts.noun ?? "rows";
  const columns: Column<R>[] = [
    { key: "__pick", label: "", value: () => null, title: "pick two rows to compare them" },
    ...opts.columns,
  ];
  let rows = opts.rows;
  let view: R[] = rows;
  let picked: string[] = [];
  let sort: { key: string; dir: number } | null = null;
  let query = "";
  const searchable = new Map<R, string>();
  const haystack = (r: R) => {
    let s = searchable.get(r);
    if (s === undefined) {
      s = (opts.searchText ? opts.searchText(r) : opts.columns.map((c) => text(c.value(r))).join(" ")).toLowerCase();
      searchable.set(r, s);
    }
    return s;
  };

  const root = h("div", { class: "nbmh-table" });
  const search = h("input", { type: "search", placeholder: opts.placeholder ?? "filter…", "aria-label": "filter rows" });
  const status = h("span", { class: "nbmh-table-status" });
  root.append(h("div", { class: "nbmh-table-bar" }, search, status));
  const scroll = h("div", { class: "nbmh-table-scroll" });
  scroll.style.maxHeight = `${opts.height ?? 360}px`;
  const head = h("div", { class: "nbmh-table-head", role: "row" });
  const body = h("div", { class: "nbmh-table-body" });
  scroll.append(head, body);
  root.append(scroll);
  el.append(root);
  let template = "";

  const drawHead = () => {
    head.replaceChildren(
      ...columns.map((c) => {
        const cls = [c.group ? `nbmh-g-${c.group}` : "", c.numeric ? "nbmh-num" : ""].join(" ");
        const arrow = sort?.key === c.key ? h("span", { class: "nbmh-sort" }, sort.dir > 0 ? "▲" : "▼") : null;
        const cell = h("div", { class: cls, role: "columnheader", "data-key": c.key, title: c.title ?? (c.group ? `${c.group}: ${c.label}` : c.label) }, c.label, arrow);
        if (c.key !== "__pick") cell.addEventListener("click", () => toggleSort(c.key));
        return cell;
      }),
    );
    head.style.gridTemplateColumns = template;
  };

  const toggleSort = (key: string) => {
    // ascending → descending → the original order
    sort = sort?.key !== key ? { key, dir: 1 } : sort.dir > 0 ? { key, dir: -1 } : null;
    refresh();
  };

  const drawRows = () => {
    const top = scroll.scrollTop;
    const visible = Math.ceil((scroll.clientHeight || 360) / rowHeight);
    const first = Math.max(0, Math.floor(top / rowHeight) - 8);
    const last = Math.min(view.length, first + visible + 16);
    const nodes: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const r = view[i];
      const key = opts.rowKey(r);
      const row = h("div", { class: `nbmh-table-row${picked.includes(key) ? " nbmh-picked" : ""}`, role: "row", "data-key": key });
      row.style.top = `${i * rowHeight}px`;
      row.style.height = `${rowHeight}px`;
      row.style.gridTemplateColumns = template;
      for (const c of columns) {
        if (c.key === "__pick") {
          const n = picked.indexOf(key);
          row.append(h("div", {}, h("span", { class: "nbmh-table-pick" }, n >= 0 ? (n === 0 ? "A" : "B") : "")));
          continue;
        }
        const v = c.value(r);
        const missing = v === null || v === undefined || v === "";
        const cell = h("div", { class: `${c.numeric ? "nbmh-num" : ""}${missing ? " nbmh-missing" : ""}`, "data-key": c.key });
        if (Array.isArray(v)) cell.append(...v.map((t) => h("span", { class: "nbmh-tag" }, t)));
        else cell.textContent = missing ? "–" : text(v);
        if (!missing && typeof v === "number") cell.title = String(v);
        else if (!missing && !Array.isArray(v) && text(v).length > 24) cell.title = text(v);
        row.append(cell);
      }
      nodes.push(row);
    }
    body.replaceChildren(...nodes);
  };

  let frame = 0;
  scroll.addEventListener("scroll", () => {
    if (frame) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      drawRows();
    });
  });

  body.addEventListener("click", (ev) => {
    const row = (ev.target as HTMLElement).closest(".nbmh-table-row") as HTMLElement | null;
    if (!row?.dataset.key) return;
    const key = row.dataset.key;
    picked = picked.includes(key) ? picked.filter((k) => k !== key) : [...picked, key].slice(-maxPicks);
    drawRows();
    drawStatus();
    opts.onPick?.(picked);
  });

  const drawStatus = () => {
    const shown = view.length === rows.length ? `${rows.length} ${noun}` : `${view.length} of ${rows.length} ${noun}`;
    const hint = picked.length < maxPicks ? ` · pick ${maxPicks - picked.length === 2 ? "two rows" : "one more row"} to compare` : "";
    status.textContent = shown + hint;
  };

  const refresh = () => {
    const terms = query.toLowerCase().split(/\s+/).filter(Boolean);
    view = terms.length ? rows.filter((r) => terms.every((t) => haystack(r).includes(t))) : rows.slice();
    if (sort) {
      const col = columns.find((c) => c.key === sort!.key);
      if (col) {
        const dir = sort.dir;
        const keyed = view.map((r, i) => ({ r, i, v: col.value(r) }));
        keyed.sort((a, b) => compare(a.v, b.v, dir) || a.i - b.i);
        view = keyed.map((k) => k.r);
      }
    }
    body.style.height = `${view.length * rowHeight}px`;
    if (!view.length) body.replaceChildren(h("div", { class: "nbmh-table-empty" }, rows.length ? "No rows match the filter." : `No ${noun}.`));
    else drawRows();
    drawHead();
    drawStatus();
  };

  search.addEventListener("input", () => {
    query = search.value;
    scroll.scrollTop = 0;
    refresh();
  });

  const setRows = (next: R[]) => {
    rows = next;
    searchable.clear();
    template = widths(columns, rows);
    const keys = new Set(rows.map(opts.rowKey));
    picked = picked.filter((k) => keys.has(k));
    refresh();
  };
  setRows(rows);

  return {
    setRows,
    setPicked(keys: string[]) {
      picked = keys.slice(-maxPicks);
      drawRows();
      drawStatus();
    },
    visibleKeys: () => view.map(opts.rowKey),
    destroy() {
      if (frame) cancelAnimationFrame(frame);
      root.remove();
    },
  };
}
