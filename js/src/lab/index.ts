// nbmodelhub's JupyterLab extension: the "Model versions" sidebar, version / diff / lineage tabs in the
// main area, and an action that inserts the `%dlv` command for what a tab shows into the active notebook.
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from "@jupyterlab/application";
import { ICommandPalette, MainAreaWidget, Notification, ToolbarButton, WidgetTracker, showDialog, Dialog, InputDialog } from "@jupyterlab/apputils";
import { INotebookTracker, NotebookActions } from "@jupyterlab/notebook";
import { LabIcon } from "@jupyterlab/ui-components";
import type { Widget } from "@lumino/widgets";
import { HubClient, dlvCommand, type RepositoryEntry } from "./api";
import { DiffTab, LineageTab } from "./diff_tab";
import { ModelHubSidebar } from "./sidebar";
import { VersionTab, errorText } from "./version_tab";

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">
<circle cx="6" cy="5" r="2.4"/><circle cx="6" cy="19" r="2.4"/><circle cx="18" cy="12" r="2.4"/>
<rect x="5" y="6" width="2" height="12"/><path d="M6 8.5c0 3 3 3.5 6 3.5h4v-2h-4c-2.5 0-4-.4-4-1.5z"/></g></svg>`;

export const modelhubIcon = new LabIcon({ name: "nbmodelhub:versions", svgstr: ICON_SVG });

namespace CommandIDs {
  export const openVersion = "nbmodelhub:open-version";
  export const openDiff = "nbmodelhub:open-diff";
  export const openLineage = "nbmodelhub:open-lineage";
  export const insert = "nbmodelhub:insert-command";
  export const show = "nbmodelhub:show-sidebar";
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: "nbmodelhub:sidebar",
  description: "Browse model versions: the sidebar, version and diff tabs.",
  autoStart: true,
  optional: [ILayoutRestorer, INotebookTracker, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null,
    palette: ICommandPalette | null,
  ) => {
    const client = new HubClient(app.serviceManager.serverSettings);
    const tabs = new WidgetTracker<MainAreaWidget<Widget>>({ namespace: "nbmodelhub-tabs" });

    /** Activates the tab with this id, or makes it. */
    const openTab = (id: string, label: string, make: () => Widget & { load(): Promise<void> }, toolbar: (w: MainAreaWidget<Widget>) => void) => {
      const existing = tabs.find((w) => w.id === id);
      if (existing) {
        app.shell.activateById(existing.id);
        return;
      }
      const content = make();
      const widget = new MainAreaWidget({ content });
      widget.id = id;
      widget.title.label = label;
      widget.title.icon = modelhubIcon;
      widget.title.closable = true;
      toolbar(widget);
      app.shell.add(widget, "main");
      void tabs.add(widget);
      app.shell.activateById(widget.id);
      void content.load();
    };

    const insert = (code: string) => {
      const panel = notebooks?.currentWidget;
      if (!panel) {
        Notification.warning(`Open a notebook first; then this inserts: ${code}`, { autoClose: 5000 });
        return;
      }
      const notebook = panel.content;
      NotebookActions.insertBelow(notebook);
      const cell = notebook.activeCell;
      if (cell) cell.model.sharedModel.setSource(code);
      app.shell.activateById(panel.id);
      notebook.activate();
    };

    const insertButton = (args: () => string[], repo: RepositoryEntry) =>
      new ToolbarButton({
        label: "Insert %dlv",
        tooltip: "insert the %dlv command that shows this into the active notebook",
        onClick: () => insert(dlvCommand(args(), repo)),
      });

    const actions = {
      openVersion: (repo: RepositoryEntry, ref: string) => void app.commands.execute(CommandIDs.openVersion, { repo: repo.location, ref }),
      openDiff: (repo: RepositoryEntry, a: string, b: string) => void app.commands.execute(CommandIDs.openDiff, { repo: repo.location, a, b }),
      openLineage: (repo: RepositoryEntry, model: string) => void app.commands.execute(CommandIDs.openLineage, { repo: repo.location, model }),
      insert: (repo: RepositoryEntry, args: string[]) => insert(dlvCommand(args, repo)),
    };
    const sidebar = new ModelHubSidebar(client, actions);
    sidebar.title.icon = modelhubIcon;
    app.shell.add(sidebar, "left", { rank: 450 });
    restorer?.add(sidebar, sidebar.id);
    void sidebar.start();

    const entryOf = (location: unknown): RepositoryEntry => {
      const current = sidebar.repository;
      if (current && (location === undefined || location === current.location)) return current;
      return { name: String(location), location: String(location), source: "added" };
    };

    app.commands.addCommand(CommandIDs.openVersion, {
      label: "Open a model version",
      execute: (args) => {
        const repo = entryOf(args.repo);
        const ref = String(args.ref);
        openTab(`nbmodelhub-version-${repo.location}-${ref}`, ref, () => new VersionTab(client, repo, ref, (r) => actions.openVersion(repo, r)), (w) => {
          const tab = w.content as unknown as VersionTab;
          // The resolved ref (mlp:best → mlp@2) once loaded, so the command names exactly this version.
          w.toolbar.addItem("insert", insertButton(() => ["desc", tab.version?.ref ?? ref], repo));
          w.toolbar.addItem("lineage", new ToolbarButton({ label: "Lineage", tooltip: "this model's lineage", onClick: () => actions.openLineage(repo, tab.version?.model ?? ref.split(/[@:]/)[0]) }));
          if (!sidebar.readOnly) {
            w.toolbar.addItem("tag", new ToolbarButton({ label: "Tag…", tooltip: "tag this version", onClick: () => void tagVersion(tab) }));
            w.toolbar.addItem("delete", new ToolbarButton({ label: "Delete", tooltip: "hide this version (gc reclaims its data)", onClick: () => void deleteVersion(w, tab) }));
          }
        });
      },
    });

    app.commands.addCommand(CommandIDs.openDiff, {
      label: "Compare two model versions",
      execute: (args) => {
        const repo = entryOf(args.repo);
        const a = String(args.a);
        const b = String(args.b);
        openTab(`nbmodelhub-diff-${repo.location}-${a}-${b}`, `${a} → ${b}`, () => new DiffTab(client, repo, a, b), (w) => {
          w.toolbar.addItem("insert", insertButton(() => ["diff", a, b], repo));
        });
      },
    });

    app.commands.addCommand(CommandIDs.openLineage, {
      label: "Show a model's lineage",
      execute: (args) => {
        const repo = entryOf(args.repo);
        const model = String(args.model);
        openTab(`nbmodelhub-lineage-${repo.location}-${model}`, `lineage ${model}`, () => new LineageTab(client, repo, model, (r) => actions.openVersion(repo, r)), (w) => {
          w.toolbar.addItem("insert", insertButton(() => ["log", model], repo));
        });
      },
    });

    app.commands.addCommand(CommandIDs.insert, {
      label: "Insert a %dlv command into the notebook",
      execute: (args) => insert(String(args.code)),
    });

    app.commands.addCommand(CommandIDs.show, {
      label: "Show model versions",
      execute: () => app.shell.activateById(sidebar.id),
    });
    palette?.addItem({ command: CommandIDs.show, category: "nbmodelhub" });

    async function tagVersion(tab: VersionTab): Promise<void> {
      const v = tab.version;
      if (!v) return;
      const answer = await InputDialog.getText({ title: `Tag ${v.ref}`, placeholder: "e.g. best" });
      if (!answer.button.accept || !answer.value) return;
      try {
        await client.tag(tab.repo.location, v.ref, answer.value.trim());
        await tab.load();
        await sidebar.reload();
      } catch (err) {
        Notification.error(errorText(err), { autoClose: 8000 });
      }
    }

    async function deleteVersion(w: MainAreaWidget<Widget>, tab: VersionTab): Promise<void> {
      const v = tab.version;
      if (!v) return;
      const answer = await showDialog({
        title: `Delete ${v.ref}?`,
        body: "It disappears from listings; its data stays until the next `dlv gc`.",
        buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: "Delete" })],
      });
      if (!answer.button.accept) return;
      try {
        await client.remove(tab.repo.location, v.ref);
        w.dispose();
        await sidebar.reload();
      } catch (err) {
        Notification.error(errorText(err), { autoClose: 8000 });
      }
    }
  },
};

export default plugin;
