// VersionDiff: two versions compared — merged graph with added/removed/changed layers and weight-change
// heat, differing hyperparameters, metric curves overlaid, per-layer histogram overlays on click.
import type { RenderProps } from "../lib/anywidget";
import { onData } from "../lib/anywidget";
import { renderVersionDiff, type DiffData } from "../lib/diff_view";

export { renderVersionDiff };

export default {
  render({ model, el }: RenderProps) {
    let cleanup: (() => void) | null = null;
    const stop = onData(model, (data) => {
      cleanup?.();
      cleanup = renderVersionDiff(el, data as DiffData, { height: model.get("height") ?? 460 });
    });
    return () => {
      stop();
      cleanup?.();
    };
  },
};
