"""ArchitectureGraph: a version's layer graph as an interactive, layered drawing.

The view (``js/src/widgets/architecture_graph.ts``) lays the graph out top to bottom with dagre,
starts big models with their repeated blocks collapsed, and shows a layer's attributes, parameter
shapes, weight statistics and histogram on click. This module turns a :class:`LayerGraph` (and,
from a repository, ``describe``'s per-layer statistics) into the plain JSON the view draws, and
draws the static fallback picture with matplotlib.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from nbmodelhub.graph import LayerGraph
from nbmodelhub.graph.layer_graph import parent_path
from nbmodelhub.widgets.base import ModelHubWidget, esm, figure_png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nbmodelhub.api import Repository, Version

# Families and their colours mirror js/src/lib/style.ts (LAYER_COLORS), so the live view and the
# static picture agree; tests/widgets/test_architecture.py checks the two stay equal.
LAYER_COLORS: dict[str, str] = {
    "conv": "#3b6fb6",
    "linear": "#5a4fcf",
    "attention": "#8e44ad",
    "norm": "#3c8d5a",
    "activation": "#c0392b",
    "pool": "#16a085",
    "dropout": "#7f8c8d",
    "embedding": "#d35400",
    "reshape": "#95a5a6",
    "arithmetic": "#b7950b",
    "input": "#2c3e50",
    "output": "#2c3e50",
    "group": "#566573",
    "other": "#6c7a89",
}

# First match wins, so the specific words come before the general ones ("batchnorm" is a norm, not a
# "batch" reshape; "multiheadattention" is attention, not linear).
_FAMILY_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention", ("attention", "attn", "scaled_dot_product")),
    ("norm", ("norm", "lrn")),
    ("dropout", ("dropout",)),
    ("pool", ("pool",)),
    ("embedding", ("embedding", "embed")),
    ("conv", ("conv",)),
    ("linear", ("linear", "gemm", "matmul", "dense", "addmm", "bmm", "einsum")),
    (
        "activation",
        (
            "relu",
            "gelu",
            "silu",
            "swish",
            "sigmoid",
            "tanh",
            "softmax",
            "elu",
            "mish",
            "hardswish",
            "softplus",
            "activation",
            "erf",
            "glu",
        ),
    ),
    (
        "reshape",
        (
            "view",
            "reshape",
            "flatten",
            "permute",
            "transpose",
            "squeeze",
            "cat",
            "concat",
            "split",
            "chunk",
            "getitem",
            "getattr",
            "contiguous",
            "expand",
            "slice",
            "stack",
            "identity",
            "pad",
            "gather",
            "cast",
        ),
    ),
    ("arithmetic", ("add", "sub", "mul", "div", "pow", "sqrt", "neg", "mean", "sum", "exp", "log", "where")),
    ("input", ("input", "placeholder")),
    ("output", ("output",)),
)

#: More layers than this and a graph starts with its blocks collapsed.
MAX_VISIBLE = 80
#: ... but a model of many repeated blocks shows each block, up to this many nodes (a 2,000-layer model
#: of 100 blocks reads better as 100 blocks than as one box; the view lays out 150 nodes quickly).
MAX_BLOCKS_VISIBLE = 150
#: The static picture is read at a glance: coarser still.
FALLBACK_VISIBLE = 40


def layer_family(type_name: str, kind: str = "module", module_type: str | None = None) -> str:
    """The colour family of a layer type (``Conv2d`` → conv, ``LayerNorm`` → norm, …)."""
    if kind == "group":
        return "group"
    # transformers' Conv1D is a linear layer with transposed weights, whatever its name says.
    if module_type and module_type.endswith("pytorch_utils.Conv1D"):
        return "linear"
    t = type_name.lower()
    if t in ("to", "size", "shape"):
        return "reshape"
    for family, words in _FAMILY_WORDS:
        # short words only as a prefix or suffix: "add" is arithmetic, "quadratic" is not
        if any(w in t if len(w) > 3 else t.startswith(w) or t.endswith(w) for w in words):
            return family
    return "other"


def _owners(graph: LayerGraph, collapsed: Iterable[str]) -> dict[str, str]:
    """Each layer's visible node once ``collapsed`` groups are folded: its outermost collapsed group."""
    targets = set(collapsed)
    out: dict[str, str] = {}
    for node_id, d in graph.graph.nodes(data=True):
        owner, g = node_id, d["group"]
        while g:
            if g in targets:
                owner = g
            g = parent_path(g)
        out[node_id] = owner
    return out


def _members(graph: LayerGraph) -> Counter[str]:
    """Layers under each group, recursively."""
    count: Counter[str] = Counter()
    for _, d in graph.graph.nodes(data=True):
        g = d["group"]
        while g:
            count[g] += 1
            g = parent_path(g)
    return count


def _outermost(groups: Iterable[str]) -> list[str]:
    chosen = sorted(set(groups), key=lambda p: (p.count("."), p))
    kept: list[str] = []
    for g in chosen:
        if not any(g.startswith(k + ".") for k in kept):
            kept.append(g)
    return kept


def initial_collapsed(graph: LayerGraph, max_visible: int = MAX_VISIBLE, max_blocks: int | None = None) -> list[str]:
    """Groups to start collapsed so that at most about ``max_visible`` nodes show.

    Repeated blocks go first (children of a list or sequence, named by index: GPT-2's
    ``transformer.h.0`` … ``h.11``), and are enough if they leave at most ``max_blocks`` nodes
    (default ``max_visible``); otherwise whole levels of the module tree fold, deepest first,
    until the view fits.
    """
    if len(graph) <= max_visible:
        return []
    members = _members(graph)
    folding = [g for g in graph.groups if g and members[g] >= 2]
    blocks = [g for g in folding if g.rsplit(".", 1)[-1].isdigit()]

    def visible(collapsed: list[str]) -> int:
        return len(set(_owners(graph, collapsed).values()))

    choice = _outermost(blocks)
    if choice and visible(choice) <= max(max_visible, max_blocks or 0):
        return choice
    depths = sorted({g.count(".") + 1 for g in folding}, reverse=True)
    for depth in depths:
        choice = _outermost(blocks + [g for g in folding if g.count(".") + 1 >= depth])
        if visible(choice) <= max_visible:
            return choice
    return choice


def _out_shapes(graph: LayerGraph) -> dict[str, list[Any]]:
    """Output shapes where the graph knows them (ONNX edges carry their tensor's shape)."""
    out: dict[str, list[Any]] = {}
    for u, _, data in graph.graph.edges(data=True):
        shape = data.get("shape")
        if isinstance(shape, list) and u not in out:
            out[u] = shape
    return out


def _round(x: Any) -> Any:
    """Statistics to 5 significant digits: what a panel shows, at a third of the bytes."""
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        return float(f"{x:.5g}")
    return x


def graph_data(
    graph: LayerGraph,
    *,
    layers: Iterable[Mapping[str, Any]] | None = None,
    title: str | None = None,
    max_visible: int = MAX_VISIBLE,
) -> dict[str, Any]:
    """The view's JSON for a layer graph.

    ``layers`` are ``Repository.describe``'s per-layer entries: their statistics and histograms
    are attached to the layers they describe. Edges are index pairs into ``nodes`` (a 2,000-layer
    graph stays a few hundred kilobytes); ``collapsed`` lists the groups the view starts folded.
    """
    out_shapes = _out_shapes(graph)
    index: dict[str, int] = {}
    nodes: list[dict[str, Any]] = []
    for i, (node_id, d) in enumerate(graph.graph.nodes(data=True)):
        index[node_id] = i
        node: dict[str, Any] = {
            "id": node_id,
            "type": d["type"],
            "kind": d["kind"],
            "group": d["group"],
            "family": layer_family(d["type"], d["kind"], d.get("module_type")),
            "attrs": d["attrs"],
            "params": [
                [name, rec.get("shape", []), rec.get("dtype", ""), int(rec.get("count", 0))]
                + ([rec["tied_to"]] if rec.get("tied_to") else [])
                for name, rec in d["params"].items()
            ],
        }
        if d.get("module_type"):
            node["module_type"] = d["module_type"]
        if node_id in out_shapes:
            node["out"] = out_shapes[node_id]
        nodes.append(node)
    edges = [[index[u], index[v]] for u, v in graph.graph.edges() if u in index and v in index]

    members = _members(graph)
    params_in: Counter[str] = Counter()
    for _, d in graph.graph.nodes(data=True):
        n = sum(int(r.get("count", 0)) for r in d["params"].values() if not r.get("tied_to") and not r.get("buffer"))
        g = d["group"]
        while g:
            params_in[g] += n
            g = parent_path(g)
    groups = {
        path: {"type": info["type"], "parent": info["parent"], "layers": members[path], "parameters": params_in[path]}
        for path, info in graph.groups.items()
        if path and members[path]
    }

    stats: dict[str, Any] = {}
    histograms: dict[str, Any] = {}
    for entry in layers or ():
        lid = str(entry["layer"])
        if lid not in index:
            continue
        if "stats" in entry:
            s = {k: _round(v) for k, v in entry["stats"].items()}
            s["tensors"] = {
                local: {k: _round(v) for k, v in t.items() if k in ("shape", "mean", "std", "min", "max", "l2")}
                for local, t in entry.get("tensors", {}).items()
            }
            stats[lid] = s
        if "histogram" in entry:
            h = entry["histogram"]
            histograms[lid] = {"edges": [_round(e) for e in h["edges"]], "counts": list(h["counts"])}

    summary = graph.summary()
    return {
        "title": title or "",
        "summary": {k: summary[k] for k in ("source", "traced", "layers", "edges", "parameters")},
        "nodes": nodes,
        "edges": edges,
        "groups": groups,
        "collapsed": initial_collapsed(graph, max_visible, MAX_BLOCKS_VISIBLE),
        "stats": stats,
        "histograms": histograms,
    }


class ArchitectureGraph(ModelHubWidget):
    """A version's architecture: layered layout, collapsible blocks, search, click a layer for details."""

    _esm = esm("architecture_graph")

    def __init__(self, data: dict[str, Any], *, height: int = 560, graph: LayerGraph | None = None) -> None:
        super().__init__(data=data, height=height)
        self._graph = graph

    @classmethod
    def from_graph(cls, layer_graph: LayerGraph, *, title: str | None = None, height: int = 560) -> ArchitectureGraph:
        """The graph alone (no repository): structure, attributes and parameter shapes."""
        return cls(graph_data(layer_graph, title=title), height=height, graph=layer_graph)

    @classmethod
    def of(
        cls,
        repo: Repository,
        ref: str | Version,
        *,
        histograms: bool = True,
        bins: int = 48,
        height: int = 560,
        snapshot: int | None = None,
    ) -> ArchitectureGraph:
        """A stored version's graph; with ``histograms`` its weights (of the snapshot at training step
        ``snapshot``, default the last) are read once for per-layer statistics and histograms
        (``histograms=False`` reads no weights)."""
        version = repo.get(ref)
        graph = repo.graph(version)
        layers = repo.describe(version, bins=bins, snapshot=snapshot)["layers"] if histograms else None
        return cls(graph_data(graph, layers=layers, title=version.ref), height=height, graph=graph)

    def __repr__(self) -> str:
        s = self.data.get("summary", {})
        return f"<ArchitectureGraph {self.data.get('title') or ''} {s.get('layers')} layers, {s.get('edges')} edges>"

    def fallback(self) -> dict[str, str]:
        graph = self._graph if self._graph is not None else _graph_from_data(self.data)
        return {"image/png": figure_png(draw_graph(graph, title=self.data.get("title") or None))}


def _graph_from_data(data: Mapping[str, Any]) -> LayerGraph:
    """A LayerGraph back from the view's JSON (a widget restored from its data alone)."""
    g = LayerGraph(str(data.get("summary", {}).get("source", "names")))
    nodes = data.get("nodes", [])
    for n in nodes:
        params = {p[0]: {"shape": p[1], "dtype": p[2], "count": p[3]} for p in n.get("params", [])}
        g.add_layer(n["id"], n["type"], kind=n["kind"], group=n["group"], attrs=n.get("attrs"), params=params)
    for u, v in data.get("edges", []):
        g.add_edge(nodes[u]["id"], nodes[v]["id"])
    for path, info in data.get("groups", {}).items():
        g.add_group(path, info["type"])
    g.ensure_groups()
    return g


# -- the static picture ---------------------------------------------------------------------------


def _layered(g: nx.DiGraph) -> dict[str, tuple[float, int]]:
    """A small Sugiyama-style layout for the picture: longest-path ranks, barycentre order."""
    dag = g if nx.is_directed_acyclic_graph(g) else nx.DiGraph(e for e in nx.dfs_edges(g))
    dag.add_nodes_from(g.nodes)
    rank: dict[str, int] = {}
    for n in nx.topological_sort(dag):
        rank[n] = max((rank[p] + 1 for p in dag.predecessors(n)), default=0)
    rows: dict[int, list[str]] = {}
    for n in g.nodes:  # execution order within a rank is a good first guess
        rows.setdefault(rank[n], []).append(n)
    pos: dict[str, float] = {}
    for _ in range(2):
        for r in sorted(rows):
            row = rows[r]
            if r > 0:
                row.sort(key=lambda n: _mean([pos[p] for p in dag.predecessors(n) if p in pos], pos.get(n, 0.0)))
            for i, n in enumerate(row):
                pos[n] = i - (len(row) - 1) / 2
    return {n: (pos[n], rank[n]) for n in g.nodes}


def _mean(xs: list[float], default: float) -> float:
    return sum(xs) / len(xs) if xs else default


def short_name(node_id: str) -> str:
    """What a label shows of a layer id: the last part (``h.3.attn.c_proj`` → ``c_proj``)."""
    if ":" in node_id:
        return node_id.rsplit(":", 1)[1]
    parts = node_id.split(".")
    # an index alone says little: keep its container (``h.3`` rather than ``3``)
    return ".".join(parts[-2:]) if parts[-1].isdigit() and len(parts) > 1 else parts[-1]


def draw_graph(graph: LayerGraph, *, title: str | None = None, max_visible: int = FALLBACK_VISIBLE) -> Figure:
    """A readable drawing of the graph, big models as their collapsed block view."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    collapsed = initial_collapsed(graph, max_visible)
    view = graph.collapsed(groups=collapsed) if collapsed else graph
    members = _members(graph)
    where = _layered(view.graph)
    ranks = max((r for _, r in where.values()), default=0) + 1
    width_nodes = max(Counter(r for _, r in where.values()).values(), default=1)
    xs = [x for x, _ in where.values()] or [0.0]
    fig = Figure(figsize=(max(4.0, 2.3 * width_nodes + 0.6), max(2.0, 0.62 * ranks + 0.8)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(ranks - 0.4, -0.6 - (0.5 if title else 0))
    ax.axis("off")
    if title:
        ax.text((min(xs) + max(xs)) / 2, -0.75, title, ha="center", va="center", fontsize=11, weight="bold")
    box_w, box_h = 0.86, 0.5
    for u, v in view.graph.edges():
        (x0, y0), (x1, y1) = where[u], where[v]
        ax.annotate(
            "",
            xy=(x1, y1 - box_h / 2),
            xytext=(x0, y0 + box_h / 2),
            arrowprops={"arrowstyle": "-|>", "color": "#8a939c", "lw": 0.8, "shrinkA": 0, "shrinkB": 0,
                        "connectionstyle": "arc3,rad=0.0" if x0 == x1 else "arc3,rad=0.12"},
            zorder=1,
        )  # fmt: skip
    for node_id, d in view.graph.nodes(data=True):
        x, y = where[node_id]
        family = layer_family(d["type"], d["kind"], d.get("module_type"))
        color = LAYER_COLORS[family]
        ax.add_patch(
            FancyBboxPatch(
                (x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0,rounding_size=0.08",
                facecolor=color, edgecolor="#1c2833" if d["kind"] == "group" else color,
                linewidth=1.6 if d["kind"] == "group" else 0.5, zorder=2,
            )
        )  # fmt: skip
        second = short_name(d["group"] or node_id) if d["kind"] == "op" else short_name(node_id)
        if d["kind"] == "group":
            second += f" · {members[node_id]} layers"
        ax.text(x, y - 0.09, _clip(d["type"], 22), ha="center", va="center", color="white", fontsize=8,
                weight="bold", zorder=3)  # fmt: skip
        ax.text(x, y + 0.12, _clip(second, 26), ha="center", va="center", color="white", fontsize=7, zorder=3)
    return fig


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
