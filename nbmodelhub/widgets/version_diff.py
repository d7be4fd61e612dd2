"""VersionDiff: two versions side by side in one merged graph, with what changed between them.

``repo.diff(a, b)`` does the analysis (layer match, per-tensor change metrics); this module turns
its result into the view's plain JSON: b's layer graph with a's removed layers merged in, a status
per layer (added / removed / changed / same), a heat value per layer (its relative weight change
against the most changed layer), the hyperparameters of both versions with differing ones marked,
final metrics and curves of both, and for every changed tensor both versions' histograms on shared
bins. The static fallback is an HTML summary: a bar chart of the most changed layers and the tables.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbmodelhub.analysis import VersionDiff as DiffResult
from nbmodelhub.analysis import shared_edges
from nbmodelhub.analysis.version_diff import param_owners
from nbmodelhub.graph import LayerGraph
from nbmodelhub.graph.layer_graph import parent_path
from nbmodelhub.widgets.architecture import graph_data, short_name
from nbmodelhub.widgets.base import ModelHubWidget, esm, figure_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nbmodelhub.api import Repository, Version

# Mirrors js/src/lib/style.ts (STATUS_COLORS, SERIES_COLORS[0:2]) for the static picture.
STATUS_COLORS = {"added": "#2e9e44", "removed": "#d03c3c", "changed": "#e69b00", "same": "#9aa5b1"}
SERIES_COLORS = ("#1f77b4", "#ff7f0e")

#: Layers a diff of a big model starts with expanded at most (the blocks holding structural changes).
MAX_EXPANDED_CHANGES = 6


def merged_graph(ga: LayerGraph, gb: LayerGraph, result: DiffResult, ref_a: str) -> tuple[LayerGraph, dict[str, str]]:
    """b's graph with a's removed layers added back where they were.

    Returns the graph and a's id → merged id for the removed layers (an id b also uses, after an
    inserted block took its name, gets `` (a@N)`` appended).
    """
    merged = LayerGraph.from_json(gb.to_json())
    match = result.match
    if match is None:
        return merged, {}
    renamed: dict[str, str] = {}
    for a_id in match.removed:
        new_id = a_id if a_id not in merged.graph else f"{a_id} ({ref_a})"
        renamed[a_id] = new_id
        d = ga.node(a_id)
        group = match.group_pairs.get(d["group"], d["group"])
        while group and group not in merged.groups:
            group = parent_path(group)
        merged.add_layer(
            new_id, d["type"], kind=d["kind"], group=group, attrs=d["attrs"], params=d["params"],
            module_type=d.get("module_type"),
        )  # fmt: skip
    if renamed:
        for u, v in ga.graph.edges():
            if u not in renamed and v not in renamed:
                continue
            mu = renamed.get(u) or match.pairs.get(u)
            mv = renamed.get(v) or match.pairs.get(v)
            if mu is not None and mv is not None:
                merged.add_edge(mu, mv)
        merged.ensure_groups()
    return merged, renamed


def _layer_of(name: str, owners: Mapping[str, str]) -> str:
    return owners.get(name) or name.rpartition(".")[0] or "(top)"


def _plain(value: Any) -> Any:
    """A param or metric value as JSON (curves and odd objects as their JSON text)."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return str(value)


def diff_data(
    repo: Repository,
    a: str | Version,
    b: str | Version,
    *,
    result: DiffResult | None = None,
    histograms: bool = True,
    bins: int = 32,
) -> dict[str, Any]:
    """The view's JSON for the diff from version ``a`` to version ``b``.

    ``result`` reuses a ``repo.diff(a, b)`` already computed. With ``histograms`` every changed
    tensor (same shape, new values) is binned in both versions on shared edges, which reads both
    versions' changed weights twice; ``histograms=False`` reads nothing beyond the diff itself.
    """
    va, vb = repo.get(a), repo.get(b)
    if result is None:
        result = repo.diff(va, vb)
    ga, gb = repo.graph(va), repo.graph(vb)
    merged, renamed = merged_graph(ga, gb, result, va.ref)
    owners_b = param_owners(gb)
    match = result.match

    status: dict[str, str] = {n: "same" for n in merged.graph.nodes}
    what: dict[str, list[str]] = {}
    if match is not None:
        for b_id in match.added:
            status[b_id] = "added"
        for _, b_id, changes in match.changed:
            status[b_id] = "changed"
            what[b_id] = list(changes)
        for a_id in match.removed:
            status[renamed[a_id]] = "removed"
    for r in result.reshaped:
        layer = _layer_of(r["name"], owners_b)
        if status.get(layer) == "same":
            status[layer] = "changed"

    layers: dict[str, dict[str, Any]] = {}
    for lid, info in result.layers.items():
        key = renamed.get(lid, lid) if info["status"] == "removed" else lid
        entry = dict(info)
        if key in what:
            entry["what"] = what[key]
        layers[key] = entry
    for a_id, new_id in renamed.items():
        # result.layers keys removed layers by a's id: one that b reuses is listed under b's layer
        if new_id not in layers:
            layers[new_id] = {"a": a_id, "status": "removed", "tensors": len(ga.node(a_id)["params"]), "changed": 0}
    relatives = {k: float(v["relative"]) for k, v in layers.items() if v.get("changed") and v.get("relative")}
    top = max(relatives.values(), default=0.0)
    heat = {k: r / top for k, r in relatives.items()} if top > 0 else {}

    tensors: dict[str, list[dict[str, Any]]] = {}
    shown = ("name", "a_name", "relative", "l2", "cosine", "max_abs", "fraction_changed")
    for c in result.changed:
        keep: dict[str, Any] = {k: c[k] for k in shown if k in c}
        tensors.setdefault(c["layer"], []).append(keep)
    for r in result.reshaped:
        reshaped = {"name": r["name"], "from": r["from"], "to": r["to"]}
        tensors.setdefault(_layer_of(r["name"], owners_b), []).append(reshaped)

    hist: dict[str, list[dict[str, Any]]] = {}
    if histograms and result.changed:
        hist = _overlays(repo, va, vb, result, bins)

    data = graph_data(merged, title=f"{va.ref} → {vb.ref}")
    data["collapsed"] = _collapsed_for_diff(merged, data["collapsed"], status)
    params = [
        {"name": k, "a": _plain(va.params.get(k)), "b": _plain(vb.params.get(k)),
         "differs": va.params.get(k) != vb.params.get(k) or (k in va.params) != (k in vb.params)}
        for k in sorted(set(va.params) | set(vb.params))
    ]  # fmt: skip
    params.sort(key=lambda p: (not p["differs"], p["name"]))
    metrics = [{"name": k, "a": _plain(v["a"]), "b": _plain(v["b"])} for k, v in result.metrics.items()]
    for k, v in result.evaluations.get("metrics", {}).items():
        metrics.append({"name": f"eval: {k}", "a": _plain(v["a"]), "b": _plain(v["b"])})
    architecture = result.architecture.get("summary", {})
    return {
        "a": va.ref,
        "b": vb.ref,
        "summary": {
            "identical": result.identical,
            "added": int(architecture.get("added", 0)),
            "removed": int(architecture.get("removed", 0)),
            "changed": sum(1 for s in status.values() if s == "changed"),
            "weights_changed": len(relatives),
            "unchanged": result.unchanged,
        },
        "graph": data,
        "status": status,
        "heat": heat,
        "layers": layers,
        "tensors": tensors,
        "params": params,
        "metrics": metrics,
        "curves": {k: {"steps": v["steps"], "a": v["a"], "b": v["b"]} for k, v in result.curves.items()},
        "histograms": hist,
    }


def _overlays(
    repo: Repository, va: Version, vb: Version, result: DiffResult, bins: int
) -> dict[str, list[dict[str, Any]]]:
    """Both versions' histograms of every changed tensor, on edges spanning both."""
    pairs = [(c.get("a_name", c["name"]), c["name"], c["layer"]) for c in result.changed]

    def record(t: Any) -> dict[str, Any]:
        return {"hash": t.hash, "dtype": t.dtype, "shape": list(t.shape)}

    records_a = {n: record(t) for n, t in va.tensors.items()}
    # b's tensors under a's names, so one name finds both sides of a pair matched across a rename
    records_b = {a_name: record(vb.tensors[b_name]) for a_name, b_name, _ in pairs}
    edges = shared_edges(repo.store, [(va.ref, records_a, {}), (vb.ref, records_b, {})], [p[0] for p in pairs], bins)
    counts_a = repo.histograms(va, names=[p[0] for p in pairs], edges=edges)
    counts_b = repo.histograms(vb, names=[p[1] for p in pairs], edges={b: edges[a] for a, b, _ in pairs})
    out: dict[str, list[dict[str, Any]]] = {}
    for a_name, b_name, layer in pairs:
        out.setdefault(layer, []).append(
            {"tensor": b_name, "edges": edges[a_name], "a": counts_a[a_name]["counts"], "b": counts_b[b_name]["counts"]}
        )
    return out


def _collapsed_for_diff(graph: LayerGraph, collapsed: list[str], status: Mapping[str, str]) -> list[str]:
    """The overview's collapsed blocks, but with the few blocks holding added, removed or changed
    layers open, so a diff shows its structural changes at first sight."""
    if not collapsed:
        return collapsed
    opened: set[str] = set()
    for node_id, s in status.items():
        if s == "same" or node_id not in graph.graph:
            continue
        g = graph.node(node_id)["group"]
        while g:
            if g in collapsed:
                opened.add(g)
            g = parent_path(g)
    if not opened or len(opened) > MAX_EXPANDED_CHANGES:
        return collapsed
    return [g for g in collapsed if g not in opened]


class VersionDiff(ModelHubWidget):
    """What changed from one version to another, drawn: merged graph, params, metrics, curves."""

    _esm = esm("version_diff")

    def __init__(self, data: dict[str, Any], *, result: DiffResult | None = None, height: int = 460) -> None:
        super().__init__(data=data, height=height)
        self.result = result

    @classmethod
    def of(
        cls,
        repo: Repository,
        a: str | Version,
        b: str | Version,
        *,
        histograms: bool = True,
        height: int = 460,
        snapshot_a: int | None = None,
        snapshot_b: int | None = None,
    ) -> VersionDiff:
        """The diff from ``a`` to ``b`` (or their snapshots at those training steps); ``.result`` is
        ``repo.diff``'s analysis. Per-layer histogram overlays are of the versions' last snapshots, so a
        diff of earlier snapshots shows none."""
        result = repo.diff(a, b, snapshot_a=snapshot_a, snapshot_b=snapshot_b)
        last = snapshot_a is None and snapshot_b is None
        data = diff_data(repo, a, b, result=result, histograms=histograms and last)
        return cls(data, result=result, height=height)

    def __repr__(self) -> str:
        s = self.data.get("summary", {})
        return (
            f"<VersionDiff {self.data.get('a')} → {self.data.get('b')}: +{s.get('added')} −{s.get('removed')} layers, "
            f"{s.get('changed')} changed, {s.get('weights_changed')} with new weights>"
        )

    def fallback(self) -> dict[str, str]:
        return {"text/html": summary_html(self.data)}


def change_figure(data: Mapping[str, Any], top: int = 20) -> Figure:
    """A bar chart of the most changed layers (relative weight change), coloured by status."""
    from matplotlib.figure import Figure

    layers = data.get("layers", {})
    status = data.get("status", {})
    rows = sorted(
        ((k, float(v.get("relative") or 0.0)) for k, v in layers.items() if v.get("changed") and v.get("relative")),
        key=lambda kv: -kv[1],
    )[:top]
    structural = [(k, s) for k, s in status.items() if s in ("added", "removed", "changed")]
    fig = Figure(figsize=(7.5, 0.28 * max(len(rows), 1) + 1.4))
    ax = fig.add_subplot(1, 1, 1)
    if rows:
        names = [short_name(k) if len(k) > 34 else k for k, _ in rows][::-1]
        values = [r for _, r in rows][::-1]
        colors = [STATUS_COLORS.get(status.get(k, "same"), STATUS_COLORS["same"]) if status.get(k) != "same"
                  else SERIES_COLORS[0] for k, _ in rows][::-1]  # fmt: skip
        ax.barh(range(len(rows)), values, color=colors)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.set_xlabel("relative weight change  ‖b − a‖ / ‖a‖")
    else:
        ax.text(0.5, 0.5, "no layer's weights changed", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    counts = {s: sum(1 for _, x in structural if x == s) for s in ("added", "removed", "changed")}
    ax.set_title(
        f"{data.get('a')} → {data.get('b')}: " + ", ".join(f"{n} layers {s}" for s, n in counts.items() if n)
        if any(counts.values()) else f"{data.get('a')} → {data.get('b')}: same architecture",
        fontsize=10,
    )  # fmt: skip
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape("–" if v is None else v if isinstance(v, str) else json.dumps(v))


def summary_html(data: Mapping[str, Any]) -> str:
    """The diff where no widget runs: the change chart, then hyperparameters and metrics tables."""
    png = figure_png(change_figure(data))
    a, b = html.escape(str(data.get("a"))), html.escape(str(data.get("b")))
    td = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"'
    hi = 'style="padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;background:#fbe6bf;font-weight:600"'
    params = "".join(
        "<tr>" + "".join(f"<td {hi if p['differs'] else td}>{c}</td>" for c in (html.escape(p["name"]), _cell(p["a"]),
                                                                              _cell(p["b"]))) + "</tr>"
        for p in data.get("params", [])
    )  # fmt: skip
    metrics = "".join(
        f"<tr><td {td}>{html.escape(m['name'])}</td><td {td}>{_cell(m['a'])}</td><td {td}>{_cell(m['b'])}</td></tr>"
        for m in data.get("metrics", [])
    )
    head = f"<tr><th {td}>{{}}</th><th {td}>{a}</th><th {td}>{b}</th></tr>"
    parts = [
        f'<div class="nbmh-diff-static"><div style="font-weight:600;font-size:14px">{a} → {b}</div>',
        f'<img alt="most changed layers" src="data:image/png;base64,{png}" style="max-width:100%">',
    ]
    table = '<table style="border-collapse:collapse;margin:6px 0">{}{}</table>'
    if params:
        parts.append(table.format(head.format("hyperparameter"), params))
    if metrics:
        parts.append(table.format(head.format("metric"), metrics))
    parts.append("</div>")
    return "".join(parts)
