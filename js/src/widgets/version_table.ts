// VersionTable (`%dlv list`): versions with params and metrics as columns. Pick two rows (A, then B):
// the view sets the `picked` traitlet, Python computes the diff into `diff`, and it is drawn below.
import type { RenderProps } from "../lib/anywidget";
import { onData } from "../lib/anywidget";
import { injectStyle } from "../lib/charts";
import { renderVersionDiff, type DiffData } from "../lib/diff_view";
import { h } from "../lib/style";
import { tableView, type Column } from "../lib/table_view";

export interface VersionRow {
  ref: string;
  id: string;
  model: string;
  number: number;
  message: string;
  author: string;
  created: string;
  tags: string[];
  parents: string[];
  params: Record<string, string | number | boolean | null>;
  metrics: Record<string, string | number | boolean | null>;
  parameters: number;
  step: number | null;
}

export interface VersionTableData {
  rows: VersionRow[];
  params: string[];
  metrics: string[];
}

const CSS = `
.nbmh-vt { display: flex; flex-direction: column; gap: 10px; }
.nbmh-vt-diff:empty { display: none; }
.nbmh-vt-diff-head { font: 600 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  margin-bottom: 4px; }
.nbmh-vt-note { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color2, #757575); padding: 8px 2px; }
.nbmh-vt-error { font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: #d03c3c; padding: 8px 2px; }
`;

/** The table's columns for these rows: version, message, tags, every param, every metric, size, time. */
export function versionColumns(data: VersionTableData): Column<VersionRow>[] {
  const models = new Set(data.rows.map((r) => r.model));
  return [
    { key: "ref", label: "version", value: (r) => (models.size > 1 ? r.ref : `@${r.number}`), title: "model@number" },
    { key: "message", label: "message", value: (r) => r.message },
    { key: "tags", label: "tags", value: (r) => r.tags },
    ...data.params.map((p): Column<VersionRow> => ({
      key: `param:${p}`, label: p, group: "param", numeric: data.rows.some((r) => typeof r.params[p] === "number"),
      value: (r) => r.params[p] as string | number | null,
    })),
    ...data.metrics.map((m): Column<VersionRow> => ({
      key: `metric:${m}`, label: m, group: "metric", numeric: true, value: (r) => r.metrics[m] as string | number | null,
      title: `metric: ${m} (final value)`,
    })),
    { key: "parameters", label: "parameters", group: "info", numeric: true, value: (r) => r.parameters },
    { key: "created", label: "created", value: (r) => r.created.slice(0, 19).replace("T", " ") },
    { key: "author", label: "author", value: (r) => r.author },
  ];
}

function searchText(r: VersionRow): string {
  const kv = (o: Record<string, unknown>) => Object.entries(o).map(([k, v]) => `${k}=${v}`).join(" ");
  return [r.ref, r.message, r.tags.join(" "), kv(r.params), kv(r.metrics), r.author, r.id.slice(0, 12)].join(" ");
}

/** Draws the table into `el`; `onPick` hears the picked refs (A first). Returns a cleanup. */
export function renderVersionTable(el: HTMLElement, data: VersionTableData, opts: { height?: number; onPick?(refs: string[]): void } = {}) {
  const rows = data.rows ?? [];
  const title = (data.metrics ?? []).length ? "filter by version, message, tag or param=value…" : "filter by version, message or tag…";
  return tableView<VersionRow>(el, {
    columns: versionColumns({ rows, params: data.params ?? [], metrics: data.metrics ?? [] }),
    rows,
    rowKey: (r) => r.ref,
    searchText,
    height: opts.height,
    onPick: opts.onPick,
    noun: "versions",
    placeholder: title,
  });
}

export default {
  render({ model, el }: RenderProps) {
    injectStyle("nbmh-vt-style", CSS);
    const root = h("div", { class: "nbmh-vt" });
    const tableHost = h("div");
    const diffHost = h("div", { class: "nbmh-vt-diff" });
    root.append(tableHost, diffHost);
    el.replaceChildren(root);
    let table: ReturnType<typeof renderVersionTable> | null = null;
    let diffCleanup: (() => void) | null = null;

    const showDiff = () => {
      const picked: string[] = model.get("picked") ?? [];
      const diff = model.get("diff") ?? {};
      diffCleanup?.();
      diffCleanup = null;
      if (picked.length !== 2) {
        diffHost.replaceChildren();
        return;
      }
      const head = h("div", { class: "nbmh-vt-diff-head" }, `diff ${picked[0]} → ${picked[1]}`);
      const answered = Array.isArray(diff.picked) && diff.picked[0] === picked[0] && diff.picked[1] === picked[1];
      if (!answered) diffHost.replaceChildren(head, h("div", { class: "nbmh-vt-note" }, "computing the diff…"));
      else if (diff.error) diffHost.replaceChildren(head, h("div", { class: "nbmh-vt-error" }, String(diff.error)));
      else {
        // The diff view names both versions itself.
        const body = h("div");
        diffHost.replaceChildren(body);
        diffCleanup = renderVersionDiff(body, diff as DiffData, { height: 420 });
      }
    };

    const stop = onData(model, (data) => {
      table?.destroy();
      table = renderVersionTable(tableHost, data as VersionTableData, {
        height: Math.max(160, Math.min(model.get("height") ?? 520, 420)),
        onPick(refs) {
          model.set("picked", refs);
          model.save_changes();
          showDiff();
        },
      });
      table.setPicked(model.get("picked") ?? []);
    });
    const onPicked = () => {
      table?.setPicked(model.get("picked") ?? []);
      showDiff();
    };
    model.on("change:diff", showDiff);
    model.on("change:picked", onPicked);
    showDiff();
    return () => {
      stop();
      model.off("change:diff", showDiff);
      model.off("change:picked", onPicked);
      table?.destroy();
      diffCleanup?.();
      root.remove();
    };
  },
};
