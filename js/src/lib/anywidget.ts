// The slice of anywidget's model API our views use (kept here so views need no runtime dependency).
export interface Model {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, callback: (...args: any[]) => void): void;
  off(event?: string | null, callback?: ((...args: any[]) => void) | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: ArrayBuffer[]): void;
}

export interface RenderProps {
  model: Model;
  el: HTMLElement;
}

/** Calls `draw(data)` now and whenever the `data` traitlet changes; returns the cleanup anywidget expects. */
export function onData(model: Model, draw: (data: any) => void): () => void {
  const handler = () => draw(model.get("data"));
  model.on("change:data", handler);
  handler();
  return () => model.off("change:data", handler);
}
