// The left-sidebar panel: a repository picker, a search box, runs in progress, and a virtualised tree of
// models → versions. Only the rows in view exist in the DOM and versions arrive from the server a page at a
// time as they scroll into view, so a model with 10,000 versions opens and scrolls as fast as one with 3.
// It polls the repository's state token and refreshes when anything commits, tags or deletes.
import { Widget } from "@lumino/widgets";
import { injectStyle } from "../lib/charts";
import { fmt, h } from "../lib/style";
import { ApiError, HubClient, type ModelSummary, type RepositoryEntry, type RunInfo, type VersionRow } from "./api";

export const ROW_HEIGHT = 26;
const PAGE = 100;
const OVERSCAN = 12;
const POLL_MS = 3000;

export interface SidebarActions {
  openVersion(repo: RepositoryEntry, ref: string): void;
  openDiff(repo: RepositoryEntry, a: string, b: string): void;
  openLineage(repo: RepositoryEntry, model: string): void;
  insert(repo: RepositoryEntry, args: string[]): void;
}

type Row =
  | { kind: "model"; model: ModelSummary }
  | { kind: "version"; list: string; index: number; model: string }
  | { kind: "note"; text: string };

/** Versions of one listing (a model's, or search results), fetched page by page. */
interface Listing {
  total: number;
  pages: Map<number, VersionRow[]>;
  loading: Set<number>;
}

const CSS = `
.nbmh-side { display: flex; flex-direction: column; height: 100%; min-height: 0; box-sizing: border-box;
  font: 12px var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #212121);
  background: var(--jp-layout-color1, #fff); }
.nbmh-side-title { font-weight: 600; font-size: 11px; letter-spacing: .06em; text-transform: uppercase;
  padding: 8px 10px 4px; color: var(--jp-ui-font-color1, #212121); }
.nbmh-side-bar { display: flex; gap: 4px; padding: 2px 8px 6px; align-items: center; }
.nbmh-side-bar select, .nbmh-side-bar input { flex: 1; min-width: 0; font: inherit; color: inherit; padding: 3px 5px;
  background: var(--jp-layout-color0, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; }
.nbmh-side button { font: inherit; color: inherit; background: var(--jp-layout-color2, #eee); cursor: pointer;
  border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 3px; padding: 2px 7px; white-space: nowrap; }
.nbmh-side button:hover { background: var(--jp-layout-color3, #ddd); }
.nbmh-side button:disabled { opacity: .5; cursor: default; }
.nbmh-side button.nbmh-primary { background: var(--jp-brand-color1, #1976d2); border-color: transparent; color: #fff; }
.nbmh-side-status { padding: 2px 10px 4px; color: var(--jp-ui-font-color2, #757575); min-height: 16px; }
.nbmh-side-status.nbmh-error { color: var(--jp-error-color1, #d32f2f); white-space: normal; }
.nbmh-side-runs:empty, .nbmh-side-pick:empty { display: none; }
.nbmh-side-runs { margin: 0 8px 6px; padding: 4px 6px; border-radius: 4px;
  background: var(--jp-layout-color2, #f3f3f3); border-left: 3px solid #2e9e44; }
.nbmh-side-run { display: flex; gap: 6px; align-items: baseline; line-height: 20px; overflow: hidden; white-space: nowrap; }
.nbmh-side-run b { font-weight: 600; }
.nbmh-side-run span { color: var(--jp-ui-font-color2, #757575); overflow: hidden; text-overflow: ellipsis; }
.nbmh-live { display: inline-block; width: 8px; height: 8px; border-radius: 50%; background: #2e9e44; flex: none;
  animation: nbmh-pulse 1.4s ease-in-out infinite; }
@keyframes nbmh-pulse { 50% { opacity: .35; } }
.nbmh-side-pick { display: flex; gap: 4px; align-items: center; flex-wrap: wrap; margin: 0 8px 6px; padding: 4px 6px;
  border-radius: 4px; background: var(--jp-layout-color2, #f3f3f3); }
.nbmh-side-pick code { font-size: 11px; padding: 0 3px; border-radius: 2px; background: var(--jp-layout-color0, #fff); }
.nbmh-side-tree { flex: 1; min-height: 0; overflow-y: auto; overflow-x: hidden; position: relative;
  border-top: 1px solid var(--jp-border-color2, #e0e0e0); }
.nbmh-side-spacer { position: relative; width: 100%; }
.nbmh-row { position: absolute; left: 0; right: 0; display: flex; align-items: center; gap: 5px; padding: 0 8px;
  box-sizing: border-box; white-space: nowrap; overflow: hidden; cursor: pointer; }
.nbmh-row:hover { background: var(--jp-layout-color2, #f0f0f0); }
.nbmh-row.nbmh-picked { background: var(--jp-brand-color3, #bbdefb); }
.nbmh-row-model { font-weight: 600; }
.nbmh-caret { width: 12px; flex: none; color: var(--jp-ui-font-color2, #757575); font-size: 10px; }
.nbmh-row-name { overflow: hidden; text-overflow: ellipsis; }
.nbmh-count { color: var(--jp-ui-font-color2, #757575); font-weight: 400; }
.nbmh-row-version { padding-left: 26px; }
.nbmh-row-version.nbmh-flat { padding-left: 8px; }
.nbmh-row-version input { margin: 0; flex: none; cursor: pointer; }
.nbmh-num { font-weight: 600; font-variant-numeric: tabular-nums; flex: none; }
.nbmh-msg { flex: 1; min-width: 0; overflow: hidden; text-overflow: ellipsis; color: var(--jp-ui-font-color1, #424242); }
.nbmh-when { color: var(--jp-ui-font-color2, #757575); flex: none; font-size: 11px; }
.nbmh-tag { flex: none; font-size: 10px; padding: 0 5px; border-radius: 8px; line-height: 16px;
  background: #e8e3fb; color: #4b3fb5; font-weight: 500; }
.nbmh-badge-live { flex: none; display: inline-flex; align-items: center; gap: 3px; font-size: 10px; font-weight: 500;
  color: #2e7d32; }
.nbmh-row-actions { display: none; gap: 2px; flex: none; margin-left: auto; }
.nbmh-row:hover .nbmh-row-actions { display: inline-flex; }
.nbmh-row-actions button { padding: 0 5px; font-size: 11px; line-height: 18px; }
.nbmh-row-note { color: var(--jp-ui-font-color2, #757575); cursor: default; }
.nbmh-row-loading .nbmh-msg { color: var(--jp-ui-font-color3, #aaa); }
`;

export class ModelHubSidebar extends Widget {
  readonly client: HubClient;
  private actions: SidebarActions;
  private repos: RepositoryEntry[] = [];
  private repo: RepositoryEntry | null = null;
  readOnly = true;
  private models: ModelSummary[] = [];
  private expanded = new Set<string>();
  private listings = new Map<string, Listing>();
  private rows: Row[] = [];
  private picked: string[] = [];
  private query = "";
  private state = "";
  private timer: number | undefined;
  private searchTimer: number | undefined;
  private generation = 0;

  private select = h("select", { title: "repository", "aria-label": "repository" });
  private search = h("input", { type: "search", placeholder: "Search models, versions, messages, tags…", "aria-label": "search" });
  private status = h("div", { class: "nbmh-side-status" });
  private runsEl = h("div", { class: "nbmh-side-runs" });
  private pickEl = h("div", { class: "nbmh-side-pick" });
  private tree = h("div", { class: "nbmh-side-tree" });
  private spacer = h("div", { class: "nbmh-side-spacer" });

  constructor(client: HubClient, actions: SidebarActions) {
    super();
    injectStyle("nbmh-side-style", CSS);
    this.client = client;
    this.actions = actions;
    this.id = "nbmodelhub-sidebar";
    this.addClass("nbmh-side");
    this.title.caption = "Model versions (nbmodelhub)";
    const open = h("button", { title: "open another repository (a folder path or URL)", onclick: () => void this.openOther() }, "Open…");
    const refresh = h("button", { title: "refresh", "aria-label": "refresh", onclick: () => void this.reload() }, "↻");
    this.select.addEventListener("change", () => {
      this.repo = this.repos.find((r) => r.location === this.select.value) ?? null;
      this.expanded.clear();
      this.picked = [];
      void this.reload();
    });
    this.search.addEventListener("input", () => {
      window.clearTimeout(this.searchTimer);
      this.searchTimer = window.setTimeout(() => {
        this.query = this.search.value.trim();
        this.listings.delete("?");
        this.rebuild();
      }, 150);
    });
    this.tree.append(this.spacer);
    this.tree.addEventListener("scroll", () => this.draw());
    this.node.append(
      h("div", { class: "nbmh-side-title" }, "Model versions"),
      h("div", { class: "nbmh-side-bar" }, this.select, open, refresh),
      h("div", { class: "nbmh-side-bar" }, this.search),
      this.runsEl,
      this.pickEl,
      this.status,
      this.tree,
    );
  }

  get repository(): RepositoryEntry | null {
    return this.repo;
  }

  /** Loads the repository list, then the current repository's models. */
  async start(): Promise<void> {
    try {
      const { repositories, read_only } = await this.client.repositories();
      this.repos = repositories;
      this.readOnly = read_only;
      if (!this.repo || !repositories.some((r) => r.location === this.repo!.location)) this.repo = repositories[0] ?? null;
      this.fillPicker();
      await this.reload();
    } catch (err) {
      this.showError(err);
    }
  }

  private fillPicker(): void {
    this.select.replaceChildren(
      ...this.repos.map((r) =>
        h("option", { value: r.location, title: r.location }, r.source === "default" ? `default (${r.location})` : `${r.name} — ${r.location}`),
      ),
    );
    if (this.repo) this.select.value = this.repo.location;
  }

  private async openOther(): Promise<void> {
    const location = window.prompt("Open a repository: its folder path or URL", "");
    if (!location) return;
    try {
      const entry = await this.client.addRepository(location);
      const { repositories } = await this.client.repositories();
      this.repos = repositories;
      this.repo = repositories.find((r) => r.location === entry.location) ?? entry;
      this.fillPicker();
      this.expanded.clear();
      await this.reload();
    } catch (err) {
      this.showError(err);
    }
  }

  /** Re-reads models (and drops cached version pages): after a change, or on demand. */
  async reload(): Promise<void> {
    if (!this.repo) {
      this.models = [];
      this.rebuild();
      return;
    }
    const generation = ++this.generation;
    const repo = this.repo.location;
    try {
      const [models, runs] = await Promise.all([this.client.models(repo), this.client.runs(repo).catch(() => ({ runs: [] as RunInfo[] }))]);
      if (generation !== this.generation) return;
      this.models = models.models;
      this.state = models.state;
      this.listings.clear();
      this.drawRuns(runs.runs);
      this.rebuild();
    } catch (err) {
      if (generation !== this.generation) return;
      this.models = [];
      this.listings.clear();
      this.rebuild();
      this.showError(err);
    }
  }

  private showError(err: unknown): void {
    this.status.classList.add("nbmh-error");
    this.status.textContent = err instanceof ApiError ? err.message : `error: ${(err as Error).message ?? err}`;
  }

  private drawRuns(runs: RunInfo[]): void {
    this.runsEl.replaceChildren(
      ...runs.map((r) => {
        const last = Object.entries(r.metrics ?? {})
          .slice(0, 2)
          .map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v) : v}`)
          .join(" · ");
        return h(
          "div",
          { class: "nbmh-side-run", title: `run ${r.id} by ${r.author} on ${r.host}, started ${r.started}` },
          h("i", { class: "nbmh-live" }),
          h("b", {}, r.model),
          h("span", {}, `step ${r.last_step ?? "–"}${last ? " · " + last : ""}`),
        );
      }),
    );
  }

  // -- rows ----------------------------------------------------------------------------------------
  private rebuild(): void {
    const rows: Row[] = [];
    if (this.query) {
      const list = this.listing("?");
      if (list.total < 0) rows.push({ kind: "note", text: "searching…" });
      else if (list.total === 0) rows.push({ kind: "note", text: `nothing matches “${this.query}”` });
      for (let i = 0; i < Math.max(0, list.total); i++) rows.push({ kind: "version", list: "?", index: i, model: "" });
    } else {
      for (const m of this.models) {
        rows.push({ kind: "model", model: m });
        if (this.expanded.has(m.name)) {
          const list = this.listing(m.name, m.versions);
          for (let i = 0; i < list.total; i++) rows.push({ kind: "version", list: m.name, index: i, model: m.name });
        }
      }
    }
    this.rows = rows;
    this.spacer.style.height = `${rows.length * ROW_HEIGHT}px`;
    if (!this.status.classList.contains("nbmh-error") || this.models.length) this.updateStatus();
    this.drawPick();
    this.draw();
  }

  private updateStatus(): void {
    this.status.classList.remove("nbmh-error");
    const versions = this.models.reduce((n, m) => n + m.versions, 0);
    if (!this.repo) this.status.textContent = "no repository";
    else if (!this.models.length) this.status.textContent = "No models yet: commit one with %dlv commit";
    else if (this.query) {
      const total = this.listing("?").total;
      this.status.textContent = total < 0 ? "searching…" : `${total.toLocaleString()} matching versions`;
    } else this.status.textContent = `${this.models.length} models · ${versions.toLocaleString()} versions`;
  }

  private listing(key: string, total = -1): Listing {
    let list = this.listings.get(key);
    if (!list) {
      list = { total, pages: new Map(), loading: new Set() };
      this.listings.set(key, list);
      if (total < 0) void this.fetchPage(key, 0);
    }
    return list;
  }

  private async fetchPage(key: string, page: number): Promise<void> {
    const list = this.listings.get(key);
    if (!list || list.loading.has(page) || list.pages.has(page) || !this.repo) return;
    list.loading.add(page);
    const generation = this.generation;
    try {
      const opts =
        key === "?"
          ? { q: this.query, sort: "created", order: "desc", offset: page * PAGE, limit: PAGE }
          : { model: key, offset: page * PAGE, limit: PAGE };
      const result = await this.client.versions(this.repo.location, opts);
      if (generation !== this.generation || this.listings.get(key) !== list) return;
      list.pages.set(page, result.rows);
      const grew = list.total !== result.total;
      list.total = result.total;
      if (grew) this.rebuild();
      else this.draw();
    } catch (err) {
      this.showError(err);
    } finally {
      list.loading.delete(page);
    }
  }

  private versionAt(row: Extract<Row, { kind: "version" }>): VersionRow | undefined {
    const list = this.listings.get(row.list);
    const page = list?.pages.get(Math.floor(row.index / PAGE));
    if (!page) {
      void this.fetchPage(row.list, Math.floor(row.index / PAGE));
      return undefined;
    }
    return page[row.index % PAGE];
  }

  /** Draws the rows in view (plus a few either side); called on scroll, resize and data arrival. */
  private draw(): void {
    const top = this.tree.scrollTop;
    const height = this.tree.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const els: HTMLElement[] = [];
    for (let i = first; i < last; i++) {
      const el = this.drawRow(this.rows[i]);
      el.style.top = `${i * ROW_HEIGHT}px`;
      el.style.height = `${ROW_HEIGHT}px`;
      el.dataset.index = String(i);
      els.push(el);
    }
    this.spacer.replaceChildren(...els);
  }

  private drawRow(row: Row): HTMLElement {
    if (row.kind === "note") return h("div", { class: "nbmh-row nbmh-row-note" }, row.text);
    if (row.kind === "model") return this.drawModel(row.model);
    const v = this.versionAt(row);
    const flat = row.list === "?";
    if (!v) {
      return h("div", { class: `nbmh-row nbmh-row-version nbmh-row-loading${flat ? " nbmh-flat" : ""}` },
        h("span", { class: "nbmh-msg" }, "loading…"));
    }
    const picked = this.picked.includes(v.ref);
    const box = h("input", { type: "checkbox", title: "pick two versions to compare them", "aria-label": `pick ${v.ref}` });
    box.checked = picked;
    box.addEventListener("click", (e) => {
      e.stopPropagation();
      this.togglePick(v.ref);
    });
    const el = h(
      "div",
      {
        class: `nbmh-row nbmh-row-version${flat ? " nbmh-flat" : ""}${picked ? " nbmh-picked" : ""}`,
        title: `${v.ref} · ${v.author} · ${v.created}\n${v.message}\nclick: open · ctrl/⌘-click or the box: pick for a diff`,
        "data-ref": v.ref,
      },
      box,
      h("span", { class: "nbmh-num" }, flat ? v.ref : `@${v.number}`),
      ...v.tags.map((t) => h("span", { class: "nbmh-tag" }, t)),
      h("span", { class: "nbmh-msg" }, v.message || "(no message)"),
      h("span", { class: "nbmh-when" }, ago(v.created)),
    );
    el.addEventListener("click", (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey) this.togglePick(v.ref);
      else if (this.repo) this.actions.openVersion(this.repo, v.ref);
    });
    return el;
  }

  private drawModel(m: ModelSummary): HTMLElement {
    const open = this.expanded.has(m.name);
    const tags = Object.keys(m.tags);
    const repo = this.repo!;
    const el = h(
      "div",
      { class: "nbmh-row nbmh-row-model", title: `${m.name}: ${m.versions} versions, latest @${m.latest} “${m.message}”`, "data-model": m.name },
      h("span", { class: "nbmh-caret" }, open ? "▾" : "▸"),
      h("span", { class: "nbmh-row-name" }, m.name),
      h("span", { class: "nbmh-count" }, m.versions.toLocaleString()),
      ...tags.slice(0, 3).map((t) => h("span", { class: "nbmh-tag", title: `${m.name}:${t} → @${m.tags[t]}` }, t)),
      m.running
        ? h("span", { class: "nbmh-badge-live", title: `${m.running} run(s) in progress` }, h("i", { class: "nbmh-live" }), "live")
        : null,
      h(
        "span",
        { class: "nbmh-row-actions" },
        h("button", { title: "lineage: the version graph, across models", onclick: (e: Event) => { e.stopPropagation(); this.actions.openLineage(repo, m.name); } }, "lineage"),
        h("button", { title: `insert %dlv list ${m.name} into the notebook`, onclick: (e: Event) => { e.stopPropagation(); this.actions.insert(repo, ["list", m.name]); } }, "%dlv"),
      ),
    );
    el.addEventListener("click", () => {
      if (open) this.expanded.delete(m.name);
      else this.expanded.add(m.name);
      this.rebuild();
    });
    return el;
  }

  // -- picking two versions for a diff ---------------------------------------------------------------
  private togglePick(ref: string): void {
    this.picked = this.picked.includes(ref) ? this.picked.filter((r) => r !== ref) : [...this.picked, ref].slice(-2);
    this.drawPick();
    this.draw();
  }

  private drawPick(): void {
    if (!this.picked.length) {
      this.pickEl.replaceChildren();
      return;
    }
    const [a, b] = this.picked;
    const diff = h("button", { class: "nbmh-primary", title: "open the diff of the two picked versions" }, "Diff");
    diff.disabled = this.picked.length < 2;
    diff.addEventListener("click", () => {
      if (this.repo && a && b) this.actions.openDiff(this.repo, a, b);
    });
    this.pickEl.replaceChildren(
      h("code", {}, a),
      h("span", {}, "→"),
      b ? h("code", {}, b) : h("span", { class: "nbmh-count" }, "pick one more"),
      diff,
      h("button", { title: "clear the picks", onclick: () => { this.picked = []; this.drawPick(); this.draw(); } }, "×"),
    );
  }

  // -- staying fresh --------------------------------------------------------------------------------
  protected onAfterShow(): void {
    this.draw();
    void this.poll();
  }

  protected onResize(): void {
    this.draw();
  }

  protected onAfterAttach(): void {
    this.timer = window.setInterval(() => void this.poll(), POLL_MS);
  }

  protected onBeforeDetach(): void {
    window.clearInterval(this.timer);
  }

  /** Cheap: one state token (directory listings on the server). Refreshes only when it changed. */
  async poll(): Promise<void> {
    if (!this.isVisible || !this.repo || document.hidden) return;
    try {
      const [{ state }, { runs }] = await Promise.all([this.client.state(this.repo.location), this.client.runs(this.repo.location)]);
      this.drawRuns(runs);
      const live = runs.reduce((acc, r) => acc.set(r.model, (acc.get(r.model) ?? 0) + 1), new Map<string, number>());
      const badgesChanged = this.models.some((m) => m.running !== (live.get(m.name) ?? 0));
      if (state !== this.state || badgesChanged) await this.reload();
    } catch {
      // A server restart or a network blip: the next poll tries again.
    }
  }
}

/** "5m ago", "3d ago", or the date. */
function ago(iso: string): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const s = (Date.now() - t) / 1000;
  if (s < 60) return "now";
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  if (s < 86400 * 30) return `${Math.floor(s / 86400)}d ago`;
  return iso.slice(0, 10);
}
