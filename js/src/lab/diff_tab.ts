// The diff of two versions and a model's lineage as main-area tabs: the notebook widgets' views, fed the
// same data from the server (VersionDiff's and Lineage's builders).
import { Widget } from "@lumino/widgets";
import { renderVersionDiff } from "../lib/diff_view";
import { renderLineage } from "../lib/lineage_view";
import { h } from "../lib/style";
import type { HubClient, RepositoryEntry } from "./api";
import { errorText } from "./version_tab";

abstract class RemoteViewTab extends Widget {
  private cleanup: (() => void) | null = null;

  constructor(note: string) {
    super();
    this.addClass("nbmh-tab");
    this.node.append(h("div", { class: "nbmh-tab-note" }, note));
  }

  protected abstract fetch(): Promise<any>;
  protected abstract draw(el: HTMLElement, data: any, height: number): () => void;

  /** The drawing's height for a tab this tall. */
  protected height(tab: number): number {
    return Math.max(420, tab - 40);
  }

  async load(): Promise<void> {
    let data: any;
    try {
      data = await this.fetch();
    } catch (err) {
      this.node.replaceChildren(h("div", { class: "nbmh-tab-error" }, errorText(err)));
      return;
    }
    if (this.isDisposed) return;
    const el = h("div", {});
    this.node.replaceChildren(el);
    this.cleanup = this.draw(el, data, this.height(this.node.clientHeight));
  }

  dispose(): void {
    this.cleanup?.();
    super.dispose();
  }
}

export class DiffTab extends RemoteViewTab {
  constructor(
    private client: HubClient,
    readonly repo: RepositoryEntry,
    readonly a: string,
    readonly b: string,
  ) {
    super(`comparing ${a} and ${b}…`);
    this.addClass("nbmh-diff-tab");
  }

  protected fetch(): Promise<any> {
    return this.client.diff(this.repo.location, this.a, this.b);
  }

  protected draw(el: HTMLElement, data: any, height: number): () => void {
    return renderVersionDiff(el, data, { height });
  }

  // The graph leaves room for the hyperparameter table and the curves below it to show without scrolling.
  protected height(tab: number): number {
    return Math.max(360, Math.min(560, Math.round(tab * 0.55)));
  }
}

export class LineageTab extends RemoteViewTab {
  constructor(
    private client: HubClient,
    readonly repo: RepositoryEntry,
    readonly model: string,
    private openRef: (ref: string) => void,
  ) {
    super(`tracing the lineage of ${model}…`);
    this.addClass("nbmh-lineage-tab");
  }

  protected fetch(): Promise<any> {
    return this.client.lineage(this.repo.location, this.model);
  }

  protected draw(el: HTMLElement, data: any, height: number): () => void {
    const view = renderLineage(el, data, { height });
    // A click shows a version's details in the view; a double click opens it as a tab.
    el.addEventListener("dblclick", (ev) => {
      const node = (ev.target as Element).closest<SVGGElement>(".nbmh-node");
      if (node?.dataset.ref) this.openRef(node.dataset.ref);
    });
    return () => view.destroy();
  }
}
