// Lineage (`%dlv log`): the version DAG of a model, across models for copies and fine-tunes.
import type { RenderProps } from "../lib/anywidget";
import { onData } from "../lib/anywidget";
import { renderLineage, type LineageData } from "../lib/lineage_view";

export { renderLineage };

export default {
  render({ model, el }: RenderProps) {
    let view: ReturnType<typeof renderLineage> | null = null;
    const stop = onData(model, (data) => {
      view?.destroy();
      view = renderLineage(el, data as LineageData, { height: model.get("height") ?? 420 });
    });
    return () => {
      stop();
      view?.destroy();
    };
  },
};
