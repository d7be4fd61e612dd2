"""Lineage (``%dlv log``): the version DAG of a model, across models for copies and fine-tunes.

Nodes are the model's versions, their ancestors in other models (what it was fine-tuned from) and
the versions of other models that descend from it (its fine-tunes and copies). Each shows its ref,
message and a key metric; the view lays the DAG out with dagre and shows a version's details on click.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import networkx as nx

from nbmodelhub.api import Repository, Version
from nbmodelhub.errors import UsageError
from nbmodelhub.widgets.base import ModelHubWidget, esm, figure_png

# Preferred key metrics, best first; otherwise the metric most versions have.
_KEY_METRICS = ("accuracy", "acc", "val_accuracy", "val_acc", "f1", "val_loss", "loss", "perplexity")
# Model colours mirror js/src/lib/style.ts SERIES_COLORS, so the live view and the picture agree.
MODEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
# The static picture draws at most this many versions (the newest); the live view draws all.
_FALLBACK_NODES = 60


def _key_metric(versions: Sequence[Version], metric: str | None) -> str | None:
    if metric is not None:
        if not any(metric in v.metrics for v in versions):
            known = sorted({k for v in versions for k in v.metrics})
            hint = f"; their metrics are {', '.join(known)}" if known else "; they record no metrics"
            raise UsageError(f"no version in this lineage has a metric {metric!r}{hint}")
        return metric
    counts = Counter(k for v in versions for k in v.metrics)
    for name in _KEY_METRICS:
        if name in counts:
            return name
    return counts.most_common(1)[0][0] if counts else None


def lineage_versions(repo: Repository, model: str) -> list[Version]:
    """The model's versions, their ancestors in other models, and other models' descendants of them."""
    family = repo.log(model)
    ids = {v.id for v in family}
    # Descendants grow from the model's own versions only (not from its ancestors, whose other
    # branches are not this model's lineage), repeating for fine-tunes of fine-tunes.
    reach = {v.id for v in family if v.model == model}
    others = [v for v in repo.versions() if v.id not in ids]
    grew = True
    while grew:
        grew = False
        for v in others:
            if v.id not in ids and any(p in reach for p in v.parents):
                family.append(v)
                ids.add(v.id)
                reach.add(v.id)
                grew = True
    return family


def lineage_data(repo: Repository, model: str, metric: str | None = None) -> dict[str, Any]:
    versions = lineage_versions(repo, model)
    key = _key_metric(versions, metric)
    ids = {v.id for v in versions}
    models: list[str] = [model, *sorted({v.model for v in versions} - {model})]
    versions.sort(key=lambda v: (v.created, v.model, v.number))
    nodes = []
    for v in versions:
        value = v.metrics.get(key) if key else None
        nodes.append(
            {
                "id": v.id,
                "ref": v.ref,
                "model": v.model,
                "number": v.number,
                "message": v.message,
                "author": v.author,
                "created": v.created,
                "tags": list(v.tags),
                "params": v.params,
                "metrics": {k: x if isinstance(x, (int, float, str)) or x is None else str(x)
                            for k, x in v.metrics.items()},
                "metric": value if isinstance(value, (int, float)) else None,
                "parameters": v.parameter_count,
                "parents": [p for p in v.parents if p in ids],
                # Parents gone from the repository (deleted versions) are named, not drawn.
                "missing_parents": [p[:12] for p in v.parents if p not in ids],
            }
        )
    return {"model": model, "models": models, "metric": key, "nodes": nodes}


def layered_positions(nodes: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Static-picture layout: rank = longest path from a root (top to bottom), order within a rank
    by model then time, centred."""
    g = nx.DiGraph()
    g.add_nodes_from(n["id"] for n in nodes)
    g.add_edges_from((p, n["id"]) for n in nodes for p in n["parents"])
    order = {n["id"]: i for i, n in enumerate(nodes)}
    model_of = {n["id"]: n["model"] for n in nodes}
    rank: dict[str, int] = {}
    for node in nx.topological_sort(g):
        rank[node] = max((rank[p] + 1 for p in g.predecessors(node)), default=0)
    rows: dict[int, list[str]] = {}
    for node, r in rank.items():
        rows.setdefault(r, []).append(node)
    pos: dict[str, tuple[float, float]] = {}
    for r, members in rows.items():
        members.sort(key=lambda n: (model_of[n], order[n]))
        for i, node in enumerate(members):
            pos[node] = (i - (len(members) - 1) / 2, -float(r))
    return pos


class Lineage(ModelHubWidget):
    """The version DAG of a model (and its relatives in other models); click a version for details."""

    _esm = esm("lineage")

    @classmethod
    def of(cls, repo: Repository, model: str, *, metric: str | None = None) -> Lineage:
        """The lineage of ``model``; ``metric`` picks the metric shown on each version (default: an
        accuracy or loss if recorded, else the most common one)."""
        return cls(data=lineage_data(repo, model, metric))

    def __repr__(self) -> str:
        return f"<Lineage {self.data.get('model')}: {len(self.data.get('nodes', []))} versions>"

    def fallback(self) -> dict[str, str]:
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

        nodes = self.data.get("nodes", [])
        if not nodes:
            return {"text/html": "<p>No versions.</p>"}
        shown = nodes[-_FALLBACK_NODES:]
        keep = {n["id"] for n in shown}
        shown = [{**n, "parents": [p for p in n["parents"] if p in keep]} for n in shown]
        pos = layered_positions(shown)
        models = self.data.get("models", [])
        color = {m: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(models)}
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        width = max(xs) - min(xs) + 1
        height = max(ys) - min(ys) + 1
        fig = Figure(figsize=(min(16, 2.3 * width + 1), min(24, 0.95 * height + 0.8)))
        ax = fig.add_subplot()
        box_w, box_h = 0.86, 0.62
        metric = self.data.get("metric")
        for n in shown:
            x, y = pos[n["id"]]
            for p in n["parents"]:
                px, py = pos[p]
                cross = next(m for m in shown if m["id"] == p)["model"] != n["model"]
                ax.add_patch(FancyArrowPatch((px, py - box_h / 2), (x, y + box_h / 2), arrowstyle="-|>",
                                             mutation_scale=10, color="#777", linewidth=1,
                                             linestyle="--" if cross else "-"))
            ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.02",
                                        facecolor="white", edgecolor=color[n["model"]], linewidth=1.8))
            label = n["ref"] + (f"  [{', '.join(n['tags'])}]" if n["tags"] else "")
            message = n["message"] if len(n["message"]) <= 26 else n["message"][:25] + "…"
            lines = [label, message]
            if metric and n["metric"] is not None:
                lines.append(f"{metric} {n['metric']:.4g}")
            ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=7.5)
        ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
        ax.set_ylim(min(ys) - 0.6, max(ys) + 0.6)
        ax.set_axis_off()
        more = f" (newest {len(shown)} of {len(nodes)})" if len(nodes) > len(shown) else ""
        ax.set_title(f"lineage of {self.data.get('model')}{more}", fontsize=10)
        return {"image/png": figure_png(fig)}
