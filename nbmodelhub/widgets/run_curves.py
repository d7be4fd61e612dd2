"""RunCurves: the live training curves of a run, one small chart per metric.

Displaying a run (``run``, ``run.show()``, or ``repo.runs(active=True)[0]`` for a run another
process writes) shows its curves; while it runs they grow. A background thread looks for new
points every ``interval`` seconds (250 ms: smooth to the eye, and a loop logging thousands of
points a second sends a few messages a second, not thousands) and sends only the new points to
the view as a small custom message. When the run ends the full curves become the widget's
state, so a saved notebook shows the whole run.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from nbmodelhub.tracking import journal
from nbmodelhub.tracking.recovery import RunInfo
from nbmodelhub.tracking.run import Run
from nbmodelhub.tracking.state import RunState
from nbmodelhub.widgets.base import ModelHubWidget, esm, figure_png

_FALLBACK_PANELS = 12


def _finite(values: list[Any]) -> list[Any]:
    # JSON has no NaN: a diverged point travels as null and breaks the line there.
    return [v if isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)) else None for v in values]


class _Source:
    """Where the points come from: this process's run, or another process's journal."""

    def __init__(self, run: Run | RunInfo) -> None:
        self.run = run
        self._tail: journal.Tail | None = None
        if isinstance(run, Run):
            self.state = run.state
        elif run.folder is not None:
            self.state = RunState()
            self._tail = journal.Tail(run.folder)
        else:  # a run committed elsewhere: its curves are all there is
            self.state = RunState(curves=run.curves)

    def refresh(self) -> str:
        if isinstance(self.run, Run):
            return self.run.status
        if self._tail is not None:
            self.state.apply(self._tail.read())
            return self.state.status(self.run.folder)
        return self.run.status


class RunCurves(ModelHubWidget):
    """Live curves of one run."""

    _esm = esm("run_curves")

    def __init__(self, run: Run | RunInfo, interval: float = 0.25, live: bool = True, **kwargs: Any) -> None:
        self._source = _source = _Source(run)
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval = interval
        self.status = _source.refresh()
        super().__init__(**kwargs)
        self.height = 200 if len(_source.state.curves) <= 2 else 400
        with self._lock:
            self.data = self._document()
        self.on_msg(self._on_message)
        if isinstance(run, Run):
            run._views.append(self)
        if live and self.status == "running":
            self._thread = threading.Thread(target=self._watch, name=f"nbmodelhub-run-{run.id}", daemon=True)
            self._thread.start()

    def _header(self) -> dict[str, Any]:
        run = self._source.run
        return {
            "id": run.id,
            "model": run.model if isinstance(run, RunInfo) else run.name,
            "author": run.author,
            "params": run.params,
            "status": self.status,
            "last_step": self._source.state.last_step,
            "points": self._source.state.points,
        }

    def _document(self) -> dict[str, Any]:
        """Everything so far; marks it all sent (the caller holds the lock)."""
        curves = {name: [list(xs), _finite(ys)] for name, (xs, ys) in self._source.state.curves.items()}
        self._sent = {name: len(c[0]) for name, c in curves.items()}
        return {**self._header(), "curves": curves}

    def pump(self) -> bool:
        """Send the points logged since the last call; True while the run is still running."""
        with self._lock:
            status = self._source.refresh()
            delta: dict[str, list[list[Any]]] = {}
            for name, (xs, ys) in list(self._source.state.curves.items()):
                n = self._sent.get(name, 0)
                end = len(xs)
                if end > n:
                    delta[name] = [xs[n:end], _finite(ys[n:end])]
                    self._sent[name] = end
            changed = status != self.status
            self.status = status
            if delta or changed:
                self.send({"kind": "append", "curves": delta, **self._header()})
            if status != "running":
                self.data = self._document()  # the final state: what a saved notebook keeps
        return status == "running"

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.pump():
                    return
            except Exception:  # a closed comm or a vanished journal ends the live view, quietly
                return

    def _on_message(self, _: Any, content: Any, buffers: Any) -> None:
        # A view opened after the first points (a second output of the same widget, a re-render)
        # asks for everything so far.
        if isinstance(content, dict) and content.get("kind") == "sync":
            with self._lock:
                self.data = self._document()

    def close(self) -> None:
        self._stop.set()
        super().close()

    def fallback(self) -> dict[str, str]:
        from matplotlib.figure import Figure

        curves = list(self._source.state.curves.items())[:_FALLBACK_PANELS]
        head = self._header()
        title = f"{head['model']} · run {head['id']} · {head['status']}"
        if not curves:
            return {"text/html": f"<p><b>{title}</b>: no points logged yet</p>"}
        cols = min(3, len(curves))
        rows = math.ceil(len(curves) / cols)
        fig = Figure(figsize=(3.6 * cols, 2.4 * rows + 0.4))
        fig.suptitle(title, fontsize=10)
        for i, (name, (xs, ys)) in enumerate(curves):
            ax = fig.add_subplot(rows, cols, i + 1)
            ax.plot(xs, [math.nan if v is None else v for v in ys], color="#1f77b4", linewidth=1.2)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        return {"image/png": figure_png(fig)}
