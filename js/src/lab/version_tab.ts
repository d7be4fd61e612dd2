// A version as a main-area tab: its header (message, author, tags, parents, size), then Graph, Histograms,
// Metadata and Files. The graph and histograms are the notebook widgets' own views, fed the same data.
import { Widget } from "@lumino/widgets";
import { injectStyle, lineChart } from "../lib/charts";
import { renderGraph, type GraphHandle } from "../lib/graph_view";
import { SERIES_COLORS, fmt, fmtBytes, h } from "../lib/style";
import { renderWeightHistograms } from "../widgets/weight_histograms";
import { ApiError, type HubClient, type RepositoryEntry, type VersionMeta } from "./api";

const CSS = `
.nbmh-tab { overflow: auto; padding: 12px 16px; box-sizing: border-box; background: var(--jp-layout-color1, #fff);
  font: 13px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121); }
.nbmh-tab h2 { font-size: 18px; margin: 0 0 4px; display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.nbmh-tab-msg { font-size: 14px; margin: 0 0 6px; }
.nbmh-tab-chips { display: flex; flex-wrap: wrap; gap: 4px 14px; color: var(--jp-ui-font-color2, #757575); margin-bottom: 10px; }
.nbmh-tab-chips a { color: var(--jp-content-link-color, #1976d2); cursor: pointer; }
.nbmh-tab-sections { display: flex; gap: 2px; border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); margin-bottom: 10px; }
.nbmh-tab-sections button { font: inherit; color: var(--jp-ui-font-color2, #616161); background: none; border: none;
  border-bottom: 2px solid transparent; padding: 6px 12px; cursor: pointer; }
.nbmh-tab-sections button.nbmh-on { color: var(--jp-ui-font-color1, #212121); border-bottom-color: var(--jp-brand-color1, #1976d2); font-weight: 600; }
.nbmh-tab-note { color: var(--jp-ui-font-color2, #757575); padding: 12px 0; }
.nbmh-tab-error { color: var(--jp-error-color1, #d32f2f); padding: 12px 0; white-space: pre-wrap; }
.nbmh-kv { border-collapse: collapse; margin: 4px 0 14px; min-width: 320px; }
.nbmh-kv th, .nbmh-kv td { text-align: left; padding: 3px 14px 3px 0; border-bottom: 1px solid var(--jp-border-color2, #eee);
  font-variant-numeric: tabular-nums; vertical-align: top; }
.nbmh-kv th { font-weight: 600; color: var(--jp-ui-font-color2, #616161); }
.nbmh-tab h3 { font-size: 13px; margin: 12px 0 4px; }
.nbmh-tab .nbmh-tag { font-size: 11px; padding: 1px 7px; border-radius: 9px; background: #e8e3fb; color: #4b3fb5; font-weight: 500; }
`;

type Section = "graph" | "histograms" | "metadata" | "files";

export class VersionTab extends Widget {
  private meta: VersionMeta | null = null;
  private section: Section = "graph";
  private body = h("div", {});
  private head = h("div", {});
  private sections = h("div", { class: "nbmh-tab-sections" });
  private cleanup: (() => void) | null = null;
  private cache = new Map<Section, Promise<unknown>>();

  constructor(
    private client: HubClient,
    readonly repo: RepositoryEntry,
    readonly ref: string,
    private openRef: (ref: string) => void,
  ) {
    super();
    injectStyle("nbmh-tab-style", CSS);
    this.addClass("nbmh-tab");
    this.addClass("nbmh-version-tab");
    this.node.append(this.head, this.sections, this.body);
    this.head.append(h("div", { class: "nbmh-tab-note" }, `loading ${ref}…`));
  }

  get version(): VersionMeta | null {
    return this.meta;
  }

  async load(): Promise<void> {
    try {
      this.meta = await this.client.version(this.repo.location, this.ref);
    } catch (err) {
      this.head.replaceChildren(h("div", { class: "nbmh-tab-error" }, errorText(err)));
      return;
    }
    this.drawHead(this.meta);
    this.showSection(this.section);
  }

  private drawHead(v: VersionMeta): void {
    const parents = v.parents.length
      ? h("span", {}, "from ", ...v.parents.flatMap((p, i) => [i ? ", " : "", h("a", { title: `open ${p}`, onclick: () => this.openRef(p) }, p)]))
      : h("span", {}, "no parent");
    this.head.replaceChildren(
      h("h2", {}, v.ref, ...v.tags.map((t) => h("span", { class: "nbmh-tag" }, t))),
      h("div", { class: "nbmh-tab-msg" }, v.message || "(no message)"),
      h(
        "div",
        { class: "nbmh-tab-chips" },
        h("span", {}, `by ${v.author}`),
        h("span", { title: v.created }, v.created.replace("T", " ").slice(0, 19)),
        parents,
        h("span", {}, `${fmt(v.parameters)} parameters in ${v.tensors} tensors (${fmtBytes(v.bytes)})`),
        h("span", {}, v.framework),
        h("span", { title: v.id }, `id ${v.id.slice(0, 12)}`),
      ),
    );
    const labels: [Section, string][] = [
      ["graph", "Graph"],
      ["histograms", "Histograms"],
      ["metadata", `Metadata`],
      ["files", `Files (${v.files.length})`],
    ];
    this.sections.replaceChildren(
      ...labels.map(([key, label]) => {
        const b = h("button", { "data-section": key, onclick: () => this.showSection(key) }, label);
        if (key === this.section) b.classList.add("nbmh-on");
        return b;
      }),
    );
  }

  /** Switches the body to one section; graph and histograms are fetched the first time they are shown. */
  showSection(section: Section): void {
    this.section = section;
    for (const b of Array.from(this.sections.querySelectorAll("button"))) b.classList.toggle("nbmh-on", b.dataset.section === section);
    this.cleanup?.();
    this.cleanup = null;
    const v = this.meta;
    if (!v) return;
    if (section === "metadata") this.body.replaceChildren(metadata(v));
    else if (section === "files") this.body.replaceChildren(files(v));
    else void this.drawRemote(section);
  }

  private async drawRemote(section: "graph" | "histograms"): Promise<void> {
    this.body.replaceChildren(h("div", { class: "nbmh-tab-note" }, section === "graph" ? "laying out the graph…" : "binning the weights…"));
    if (!this.cache.has(section)) {
      const fetch = section === "graph" ? this.client.graph(this.repo.location, this.ref) : this.client.histograms(this.repo.location, this.ref);
      this.cache.set(section, fetch);
      fetch.catch(() => this.cache.delete(section)); // retry on the next visit
    }
    let data: any;
    try {
      data = await this.cache.get(section);
    } catch (err) {
      if (this.section === section) this.body.replaceChildren(h("div", { class: "nbmh-tab-error" }, errorText(err)));
      return;
    }
    if (this.section !== section || this.isDisposed) return;
    const height = Math.max(380, this.node.clientHeight - this.body.offsetTop - 24);
    const el = h("div", {});
    this.body.replaceChildren(el);
    if (section === "graph") {
      const view: GraphHandle = renderGraph(el, data, { height });
      this.cleanup = () => view.destroy();
    } else {
      this.cleanup = renderWeightHistograms(el, data, height);
    }
  }

  dispose(): void {
    this.cleanup?.();
    super.dispose();
  }
}

function metadata(v: VersionMeta): HTMLElement {
  const out = h("div", {});
  out.append(h("h3", {}, "Hyperparameters"), table(v.params, "no hyperparameters recorded"));
  out.append(h("h3", {}, "Metrics"), table(v.metrics, "no metrics recorded"));
  const curves = Object.entries(v.curves ?? {});
  if (curves.length) {
    out.append(h("h3", {}, "Metric curves"));
    for (const [name, points] of curves) {
      const el = h("div", { style: "max-width: 640px" });
      out.append(el);
      lineChart(el, [{ label: name, x: points.map((p) => p[0]), y: points.map((p) => p[1]), color: SERIES_COLORS[0] }], {
        title: name,
        height: 180,
        xLabel: "step",
      });
    }
  }
  if (v.evaluations.length) {
    out.append(h("h3", {}, "Evaluations"));
    for (const e of v.evaluations) out.append(h("div", {}, `${e.function ?? "evaluation"} · ${e.created ?? ""}`), table(e.metrics, "–"));
  }
  out.append(
    h("h3", {}, "Record"),
    table(
      {
        ref: v.ref,
        id: v.id,
        parents: v.parents.join(", ") || "–",
        snapshots: v.snapshots.map((s) => (s === null ? "final" : `step ${s}`)).join(", "),
        source: v.source ?? "–",
      },
      "",
    ),
  );
  return out;
}

function files(v: VersionMeta): HTMLElement {
  if (!v.files.length) return h("div", { class: "nbmh-tab-note" }, "No files attached: stage some with %dlv add before committing.");
  return h(
    "table",
    { class: "nbmh-kv nbmh-files" },
    h("tr", {}, h("th", {}, "file"), h("th", {}, "size"), h("th", {}, "modified"), h("th", {}, "hash")),
    ...v.files.map((f) =>
      h(
        "tr",
        {},
        h("td", {}, f.name),
        h("td", {}, fmtBytes(f.size)),
        h("td", {}, new Date(f.mtime * 1000).toISOString().replace("T", " ").slice(0, 19)),
        h("td", { title: f.hash }, f.hash.slice(0, 12)),
      ),
    ),
  );
}

function table(values: Record<string, unknown>, empty: string): HTMLElement {
  const entries = Object.entries(values ?? {});
  if (!entries.length) return h("div", { class: "nbmh-tab-note" }, empty);
  return h(
    "table",
    { class: "nbmh-kv" },
    ...entries.map(([k, val]) => h("tr", {}, h("th", {}, k), h("td", {}, typeof val === "number" ? fmt(val, 6) : typeof val === "string" ? val : JSON.stringify(val)))),
  );
}

export function errorText(err: unknown): string {
  return err instanceof ApiError ? err.message : `error: ${(err as Error)?.message ?? err}`;
}
