// ArchitectureGraph: a version's layer graph, laid out top to bottom, blocks collapsible, click a
// layer for its attributes, parameter shapes, statistics and weight histogram.
import type { RenderProps } from "../lib/anywidget";
import { onData } from "../lib/anywidget";
import { renderGraph, type GraphData, type GraphHandle } from "../lib/graph_view";

export { renderGraph };

export default {
  render({ model, el }: RenderProps) {
    let view: GraphHandle | null = null;
    const stop = onData(model, (data) => {
      view?.destroy();
      view = renderGraph(el, data as GraphData, { height: model.get("height") ?? 520 });
    });
    return () => {
      stop();
      view?.destroy();
    };
  },
};
