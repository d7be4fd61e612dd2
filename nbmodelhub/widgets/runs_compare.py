"""RunsCompare: runs as rows, hyperparameters as columns, metrics with sparklines; pick runs to overlay.

    mh.compare_runs(repo.runs(model="resnet"))          # or versions: ["resnet@3", "resnet@4"]

Only the params whose values differ between the runs are shown by default (a toggle shows them
all), and each differing cell is highlighted. Each metric column shows the final value and a
sparkline; ticking rows overlays their full curves in one chart. Curves reach the view decimated
to at most ``MAX_POINTS`` points each (min/max per bucket, so spikes survive).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nbmodelhub.api import Repository, Version
from nbmodelhub.errors import UsageError
from nbmodelhub.render import format_value
from nbmodelhub.tracking.recovery import RunInfo, info_from_journal
from nbmodelhub.tracking.run import Run
from nbmodelhub.widgets.base import ModelHubWidget, esm

MAX_POINTS = 600
_SPARK = (90, 22)


def decimate(xs: Sequence[int], ys: Sequence[Any], limit: int = MAX_POINTS) -> tuple[list[int], list[Any]]:
    """At most ``limit`` points: per bucket the first, lowest, highest and last, in step order."""
    n = len(xs)
    if n <= limit:
        return list(xs), list(ys)
    y = np.asarray([math.nan if v is None else v for v in ys], dtype=np.float64)
    keep: set[int] = set()
    for bucket in np.array_split(np.arange(n), max(1, limit // 4)):
        vals = y[bucket]
        keep |= {int(bucket[0]), int(bucket[-1])}
        if np.isfinite(vals).any():
            keep |= {int(bucket[np.nanargmin(vals)]), int(bucket[np.nanargmax(vals)])}
    order = sorted(keep)
    return [xs[i] for i in order], [ys[i] for i in order]


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _row(item: RunInfo | Run | Version) -> dict[str, Any]:
    if isinstance(item, Run):
        item = info_from_journal(item.folder, item.state)
    if isinstance(item, RunInfo):
        label = item.version or f"{item.model} · {item.id[:8]}"
        return {
            "id": item.id,
            "label": label,
            "model": item.model,
            "status": item.status,
            "author": item.author,
            "version": item.version,
            "started": item.started,
            "params": item.params,
            "metrics": {k: _clean(v) for k, v in item.metrics.items()},
            "curves": {
                k: [list(a), [_clean(v) for v in b]]
                for k, (a, b) in ((k, decimate(xs, ys)) for k, (xs, ys) in item.curves.items())
            },
        }
    curves = {k: decimate([s for s, _ in c], [v for _, v in c]) for k, c in item.curves.items()}
    return {
        "id": item.id[:12],
        "label": item.ref,
        "model": item.model,
        "status": "committed",
        "author": item.author,
        "version": item.ref,
        "started": item.created,
        "params": item.params,
        "metrics": {k: _clean(v) for k, v in item.metrics.items()},
        "curves": {k: [list(xs), [_clean(v) for v in ys]] for k, (xs, ys) in curves.items()},
    }


def compare_data(items: Sequence[RunInfo | Run | Version]) -> dict[str, Any]:
    rows = [_row(i) for i in items]
    params: list[str] = []
    metrics: list[str] = []
    for r in rows:
        params += [p for p in r["params"] if p not in params]
        metrics += [m for m in dict.fromkeys([*r["curves"], *r["metrics"]]) if m not in metrics]
    # A param is "differing" when any two runs disagree, a run lacking it included.
    differing = [p for p in params if len({json.dumps(r["params"].get(p), sort_keys=True) for r in rows}) > 1]
    return {"runs": rows, "params": params, "differing": differing, "metrics": metrics}


def _sparkline(xs: list[Any], ys: list[Any]) -> str:
    pts = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None]
    if len(pts) < 2:
        return ""
    w, h = _SPARK
    x0, x1 = pts[0][0], pts[-1][0]
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    sx = (w - 2) / ((x1 - x0) or 1)
    sy = (h - 2) / ((hi - lo) or 1)
    path = " ".join(f"{1 + (x - x0) * sx:.1f},{h - 1 - (y - lo) * sy:.1f}" for x, y in pts)
    return (
        f'<svg width="{w}" height="{h}" style="vertical-align:middle">'
        f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.2"/></svg>'
    )


class RunsCompare(ModelHubWidget):
    """Runs (or versions) side by side."""

    _esm = esm("runs_compare")

    def __init__(self, items: Sequence[RunInfo | Run | Version], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data = compare_data(items)
        self.height = min(640, 260 + 28 * len(self.data["runs"]))

    def fallback(self) -> dict[str, str]:
        d = self.data
        shown = d["differing"] or []
        esc = html.escape
        head = "".join(f"<th>{esc(c)}</th>" for c in ["run", "status", "author", *shown, *d["metrics"]])
        body = []
        for r in d["runs"]:
            cells = [f"<td><b>{esc(r['label'])}</b></td>"]
            cells += [f"<td>{esc(r[k])}</td>" for k in ("status", "author")]
            cells += [f'<td style="background:#fff3cd">{esc(format_value(r["params"].get(p)))}</td>' for p in shown]
            for m in d["metrics"]:
                xs, ys = r["curves"].get(m, [[], []])
                value = r["metrics"].get(m)
                cells.append(f"<td>{esc(format_value(value)) if value is not None else '–'} {_sparkline(xs, ys)}</td>")
            body.append(f"<tr>{''.join(cells)}</tr>")
        same = [p for p in d["params"] if p not in shown]
        note = f"<p style='color:#757575'>same in every run: {esc(', '.join(same))}</p>" if same else ""
        return {"text/html": f"<table class='nbmh-runs-static'><tr>{head}</tr>{''.join(body)}</table>{note}"}


def compare_runs(
    items: Sequence[RunInfo | Run | Version | str] | None = None,
    repo: Repository | None = None,
    model: str | None = None,
    author: str | None = None,
) -> RunsCompare:
    """The comparison widget over runs, versions or version refs (default: every run in ``repo``)."""
    import nbmodelhub as mh

    own = repo is None and (items is None or any(isinstance(i, str) for i in items))
    repository = mh.open() if own else repo
    try:
        if items is None:
            assert repository is not None
            items = repository.runs(model=model, author=author)
        resolved: list[RunInfo | Run | Version] = []
        for i in items:
            if isinstance(i, str):
                if repository is None:
                    raise UsageError("comparing version refs needs repo=")
                resolved.append(repository.get(i))
            elif isinstance(i, (RunInfo, Run, Version)):
                resolved.append(i)
            else:
                raise UsageError(f"compare runs, versions or version refs, got a {type(i).__name__}")
        if not resolved:
            raise UsageError("no runs to compare: record some with mh.run(...), or pass version refs")
        return RunsCompare(resolved)
    finally:
        if own and repository is not None:
            repository.close()
