"""What a run's journal adds up to: curves, snapshots and how it ended.

The owner builds it as it logs; readers (other processes, live views, ``runs()``) build it by
replaying the journal, so both see the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmodelhub.tracking import journal

Curve = tuple[list[int], list[float]]


@dataclass
class RunState:
    curves: dict[str, Curve] = field(default_factory=dict)
    points: int = 0  # log calls
    last_step: int | None = None
    snapshots: dict[int | None, dict[str, Any]] = field(default_factory=dict)  # step → snapshot event
    end: dict[str, Any] | None = None  # the commit or discard event
    stops: list[dict[str, Any]] = field(default_factory=list)
    updated: float | None = None

    def add(self, step: int, metrics: dict[str, Any], when: float | None = None) -> None:
        curves = self.curves
        for name, value in metrics.items():
            curve = curves.get(name)
            if curve is None:
                curve = curves[name] = ([], [])
            curve[0].append(step)
            curve[1].append(value)
        self.points += 1
        self.last_step = step
        if when is not None:
            self.updated = when

    def apply(self, events: Iterable[dict[str, Any]]) -> None:
        for e in events:
            kind = e.get("k")
            if kind == "log":
                metrics = e.get("m")
                if isinstance(metrics, dict) and isinstance(e.get("s"), int):
                    self.add(e["s"], metrics)
            elif kind == "snapshot":
                self.snapshots[e.get("s")] = e
            elif kind in ("commit", "discard"):
                self.end = e
            elif kind == "stop":
                self.stops.append(e)
            if isinstance(e.get("t"), (int, float)):
                self.updated = float(e["t"])

    def latest(self) -> dict[str, float]:
        return {name: ys[-1] for name, (_, ys) in self.curves.items() if ys}

    def snapshot_steps(self) -> list[int | None]:
        return sorted(self.snapshots, key=lambda s: -math.inf if s is None else s)

    def last_snapshot(self) -> dict[str, Any] | None:
        steps = self.snapshot_steps()
        return self.snapshots[steps[-1]] if steps else None

    def status(self, folder: Path | None, owned: bool = False) -> str:
        """running, interrupted, committed or discarded."""
        if self.end is not None:
            return "committed" if self.end.get("k") == "commit" else "discarded"
        if owned or (folder is not None and journal.is_running(folder)):
            return "running"
        return "interrupted"


def replay(folder: Path) -> RunState:
    state = RunState()
    state.apply(journal.read_events(folder))
    return state
