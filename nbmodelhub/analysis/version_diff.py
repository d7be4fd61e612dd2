"""What changed between two versions (or two snapshots): architecture, weights, params, metrics.

Layers are matched first (``match_graphs``, with the store's tensor hashes as fingerprints), and
tensors are paired *through* that match: after a block is inserted, the old ``h.2`` is compared
with the new ``h.3``, its true counterpart, rather than with the inserted block that took its
name. A pair with equal content hashes is identical without reading a byte; only pairs whose
hashes differ are streamed, chunk by chunk, through float64 accumulators.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from nbmodelhub.analysis.weights import change
from nbmodelhub.graph import GraphMatch, LayerGraph, match_graphs
from nbmodelhub.graph.layer_graph import natural_key
from nbmodelhub.graph.match import relative_param

if TYPE_CHECKING:
    from nbmodelhub.store.repository import Store


@dataclass(frozen=True)
class Side:
    """One side of a diff: a version's snapshot with everything the diff compares."""

    ref: str
    step: int | None
    tensors: Mapping[str, Mapping[str, Any]]  # name → {"hash", "dtype", "shape"} (a snapshot record)
    ties: Mapping[str, str]
    graph: LayerGraph
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    curves: Mapping[str, list[tuple[int, Any]]] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    def fingerprints(self) -> dict[str, str]:
        """State-dict name → content hash, tied aliases included (graph params name both)."""
        out = {n: str(t["hash"]) for n, t in self.tensors.items()}
        out.update({alias: out[src] for alias, src in self.ties.items() if src in out})
        return out


@dataclass
class VersionDiff(Mapping[str, Any]):
    """The difference from version ``a`` to version ``b``.

    Tensor names in ``added``/``changed``/``reshaped`` are b's names (``a_name`` says what a
    called a tensor when the layer match paired it under another name); ``removed`` are a's.
    ``layers`` (b's layer id → change of the whole layer) feeds heat maps. ``match`` is the full
    :class:`GraphMatch`. The mapping interface (``d["changed"]``) serves callers of the older
    dict result; :meth:`to_dict` is the JSON form.
    """

    a: str
    b: str
    step_a: int | None = None
    step_b: int | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    reshaped: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    renamed: list[list[str]] = field(default_factory=list)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluations: dict[str, Any] = field(default_factory=dict)
    match: GraphMatch | None = field(default=None, repr=False, compare=False)

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed or self.reshaped) and bool(
            self.architecture.get("identical", True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "match"}

    # -- the mapping face -----------------------------------------------------------------------
    def _keys(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "match"]

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self._keys():
            raise KeyError(key)
        setattr(self, key, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __repr__(self) -> str:
        return (
            f"<VersionDiff {self.a} → {self.b}: {len(self.changed)} changed, {len(self.added)} added, "
            f"{len(self.removed)} removed, {len(self.reshaped)} reshaped, {self.unchanged} unchanged>"
        )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- pairing tensors through the layer match ---------------------------------------------------------


def param_owners(graph: LayerGraph) -> dict[str, str]:
    """State-dict name → the layer that owns it (first owner; tied aliases are not owners)."""
    owners: dict[str, str] = {}
    for node_id, d in graph.graph.nodes(data=True):
        for name, rec in d["params"].items():
            if rec.get("tied_to") is None:
                owners.setdefault(name, node_id)
    return owners


def pair_tensors(a: Side, b: Side, match: GraphMatch) -> dict[str, str]:
    """a's tensor name → b's, through matched layers first, then by equal names."""
    pairs: dict[str, str] = {}
    taken: set[str] = set()
    ga, gb = a.graph.graph, b.graph.graph
    for a_id, b_id in match.pairs.items():
        da, db = ga.nodes[a_id], gb.nodes[b_id]
        rel_b = {relative_param(n, b_id, db["group"]): n for n in db["params"]}
        for name_a in da["params"]:
            name_b = rel_b.get(relative_param(name_a, a_id, da["group"]))
            if name_b is None:
                continue
            src_a, src_b = a.ties.get(name_a, name_a), b.ties.get(name_b, name_b)
            if src_a in a.tensors and src_b in b.tensors and src_a not in pairs and src_b not in taken:
                pairs[src_a] = src_b
                taken.add(src_b)
    for name in a.tensors:
        if name not in pairs and name in b.tensors and name not in taken:
            pairs[name] = name
            taken.add(name)
    return pairs


# -- assembling the diff ---------------------------------------------------------------------------------


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def diff_versions(store: Store, a: Side, b: Side, all_params: bool = False) -> VersionDiff:
    match = match_graphs(a.graph, b.graph, fingerprints_a=a.fingerprints(), fingerprints_b=b.fingerprints())
    pairs = pair_tensors(a, b, match)
    owners_b = param_owners(b.graph)
    owners_a = param_owners(a.graph)

    def layer_b(name: str) -> str:
        return owners_b.get(name) or name.rpartition(".")[0] or "(top)"

    result = VersionDiff(a=a.ref, b=b.ref, step_a=a.step, step_b=b.step, match=match)
    to_compare: list[tuple[str, str]] = []
    same: list[tuple[str, str]] = []
    for name_a, name_b in pairs.items():
        ta, tb = a.tensors[name_a], b.tensors[name_b]
        if name_a != name_b:
            result.renamed.append([name_a, name_b])
        if ta["hash"] == tb["hash"]:  # decided by hash: nothing is read
            same.append((name_a, name_b))
        elif list(ta["shape"]) != list(tb["shape"]) or ta["dtype"] != tb["dtype"]:
            entry: dict[str, Any] = {
                "name": name_b,
                "from": [ta["dtype"], list(ta["shape"])],
                "to": [tb["dtype"], list(tb["shape"])],
            }
            if name_a != name_b:
                entry["a_name"] = name_a
            result.reshaped.append(entry)
        else:
            to_compare.append((name_a, name_b))
    result.unchanged = len(same)
    paired_b = set(pairs.values())
    result.added = sorted(n for n in b.tensors if n not in paired_b)
    result.removed = sorted(n for n in a.tensors if n not in pairs)

    def measure(names: tuple[str, str]) -> dict[str, Any]:
        name_a, name_b = names
        ta, tb = a.tensors[name_a], b.tensors[name_b]
        dtype, shape = str(ta["dtype"]), tuple(int(s) for s in ta["shape"])
        stream_a = store.iter_tensor(str(ta["hash"]), dtype, shape, f"{a.ref}: tensor {name_a!r}")
        stream_b = store.iter_tensor(str(tb["hash"]), dtype, shape, f"{b.ref}: tensor {name_b!r}")
        stats = change(stream_a, stream_b, dtype).to_dict()
        entry = {"name": name_b, **stats, "layer": layer_b(name_b)}
        if name_a != name_b:
            entry["a_name"] = name_a
        return entry

    # Largest first so the pool's tail is short; each worker holds a few chunks, never a tensor.
    to_compare.sort(key=lambda p: -math.prod(a.tensors[p[0]]["shape"]))
    if len(to_compare) > 1:
        with ThreadPoolExecutor(_workers(), thread_name_prefix="nbmodelhub-diff") as pool:
            result.changed = list(pool.map(measure, to_compare))
    else:
        result.changed = [measure(p) for p in to_compare]
    result.changed.sort(key=lambda c: natural_key(c["name"]))

    result.architecture = _architecture(match, a.graph, b.graph)
    result.layers = _layers(a, b, match, result, owners_a, owners_b, same)
    result.params = {
        k: {"from": a.params.get(k), "to": b.params.get(k)}
        for k in sorted(set(a.params) | set(b.params))
        if all_params or a.params.get(k) != b.params.get(k)
    }
    metric_keys = sorted(set(a.metrics) | set(b.metrics))
    result.metrics = {k: {"a": a.metrics.get(k), "b": b.metrics.get(k)} for k in metric_keys}
    result.curves = align_curves(a.curves, b.curves)
    result.evaluations = _evaluations(a.evaluations, b.evaluations)
    return result


def _architecture(match: GraphMatch, ga: LayerGraph, gb: LayerGraph) -> dict[str, Any]:
    full = match.to_json()
    return {
        "identical": match.identical,
        "structurally_equal": match.structurally_equal,
        "traced": [ga.traced, gb.traced],
        "layers": [len(ga), len(gb)],
        "added": full["added"],
        "removed": full["removed"],
        "changed": full["changed"],
        "renamed": full["renamed"],
        "groups_added": full["groups_added"],
        "groups_removed": full["groups_removed"],
        "edges_added": full["edges_added"],
        "edges_removed": full["edges_removed"],
        "summary": {**full["summary"], "unchanged": len(match.unchanged)},
    }


def _layers(
    a: Side,
    b: Side,
    match: GraphMatch,
    result: VersionDiff,
    owners_a: Mapping[str, str],
    owners_b: Mapping[str, str],
    same: list[tuple[str, str]],
) -> dict[str, dict[str, Any]]:
    """Per layer (b's id; a's for removed layers): tensors, how many changed, the layer's change norm."""
    changed_ids = {a_id for a_id, _, _ in match.changed}
    out: dict[str, dict[str, Any]] = {}

    def entry(layer: str, a_id: str | None, status: str) -> dict[str, Any]:
        return out.setdefault(
            layer,
            {"a": a_id, "status": status, "tensors": 0, "changed": 0, "l2": 0.0, "norm_a": 0.0, "relative": 0.0},
        )

    for a_id, b_id in match.pairs.items():
        entry(b_id, a_id, "changed" if a_id in changed_ids else "unchanged")
    for b_id in match.added:
        entry(b_id, None, "added")
    for a_id in match.removed:
        entry(a_id, a_id, "removed")

    sq: dict[str, float] = {}
    norm_sq: dict[str, float] = {}

    def layer_of_b(name: str) -> str:
        return owners_b.get(name) or name.rpartition(".")[0] or "(top)"

    for _, name_b in same:
        entry(layer_of_b(name_b), None, "unchanged")["tensors"] += 1
    for c in result.changed:
        e = entry(c["layer"], None, "unchanged")
        e["tensors"] += 1
        e["changed"] += 1
        sq[c["layer"]] = sq.get(c["layer"], 0.0) + c["l2"] ** 2
        norm_sq[c["layer"]] = norm_sq.get(c["layer"], 0.0) + c["norm_a"] ** 2
    for r in result.reshaped:
        e = entry(layer_of_b(r["name"]), None, "changed")
        e["tensors"] += 1
        e["changed"] += 1
    for name in result.added:
        entry(layer_of_b(name), None, "added")["tensors"] += 1
    for name in result.removed:
        layer = owners_a.get(name) or name.rpartition(".")[0] or "(top)"
        entry(layer, layer, "removed")["tensors"] += 1
    for layer, total in sq.items():
        e = out[layer]
        e["l2"] = math.sqrt(total)
        e["norm_a"] = math.sqrt(norm_sq[layer])
        e["relative"] = e["l2"] / e["norm_a"] if e["norm_a"] else None
    return out


def align_curves(
    curves_a: Mapping[str, list[tuple[int, Any]]], curves_b: Mapping[str, list[tuple[int, Any]]]
) -> dict[str, dict[str, list[Any]]]:
    """Per metric: the union of steps, and each side's value at each step (None where it has none)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for key in sorted(set(curves_a) | set(curves_b)):
        pa, pb = dict(curves_a.get(key, [])), dict(curves_b.get(key, []))
        steps = sorted(set(pa) | set(pb))
        out[key] = {"steps": steps, "a": [pa.get(s) for s in steps], "b": [pb.get(s) for s in steps]}
    return out


def _evaluations(evals_a: list[dict[str, Any]], evals_b: list[dict[str, Any]]) -> dict[str, Any]:
    """Both sides' evaluations, and the latest value of each evaluated metric side by side."""
    latest_a: dict[str, Any] = {}
    latest_b: dict[str, Any] = {}
    for e in evals_a:
        latest_a.update(e["metrics"])
    for e in evals_b:
        latest_b.update(e["metrics"])
    keys = sorted(set(latest_a) | set(latest_b))
    return {
        "a": list(evals_a),
        "b": list(evals_b),
        "metrics": {k: {"a": latest_a.get(k), "b": latest_b.get(k)} for k in keys},
    }
