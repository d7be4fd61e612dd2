"""The architecture part of a diff: which layers of graph A correspond to which layers of B.

Comparing by path alone fails on the most common edit to a deep network: inserting or removing a
block renumbers everything after it (``h.3`` becomes ``h.4``), and a path diff then reports every
later layer as changed. Instead the module hierarchy is aligned level by level: the ordered members
of a group (child groups and layers) are aligned as sequences with ``difflib.SequenceMatcher`` on
structural signatures (Merkle-style hashes of type, attributes and parameter shapes, independent
of names), and matched groups are aligned recursively inside. Several passes run from strict to
loose keys, each only inside the gaps the stricter passes left, so order is always respected:

1. same weights (when fingerprints are given), same structure, same name
2. same structure, same name (numeric ModuleList indices and op counters count as "any name")
3. same structure, any name                            → renamed
4. same name and type, different structure             → changed
5. same name, different type                           → changed
6. same type, in the same position                     → changed (and renamed if ids differ)

Layers still unmatched are paired across the whole graph when their structure is unique on both
sides (a layer moved to another block); the rest are added or removed.

Structure alone cannot tell which of several identical blocks is the new one; pass parameter
fingerprints (state-dict name → content hash, e.g. from ``tensor_fingerprints``) to let weights
decide. Without them, the earliest identical blocks are matched in order (the paths stay paired).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from .layer_graph import LayerGraph, natural_key

# Attributes that name another layer rather than describe this one.
_REFERENCE_ATTRS = frozenset({"shares_params_with"})

_WILDCARD = "*"


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


def _local_name(node_id: str, group: str) -> str:
    if group and (node_id.startswith(group + ".") or node_id.startswith(group + ":")):
        return node_id[len(group) + 1 :]
    return node_id


def relative_param(name: str, node_id: str, group: str) -> str:
    """A parameter's name relative to its layer (or group), comparable across renamed layers."""
    for prefix in (node_id, group):
        if prefix and name.startswith(prefix + "."):
            return name[len(prefix) + 1 :]
    return name


def _arch_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if k not in _REFERENCE_ATTRS}


class _Side:
    """One graph prepared for matching: ordered members per group and memoized signatures."""

    def __init__(self, g: LayerGraph, fingerprints: Mapping[str, str] | None) -> None:
        self.g = g
        self.fingerprints = fingerprints
        self.order = {n: i for i, n in enumerate(g.graph.nodes)}
        groups = set(g.groups)
        for _, d in g.graph.nodes(data=True):
            path = d["group"]
            while path not in groups:
                groups.add(path)
                path = path.rsplit(".", 1)[0] if "." in path else ""
        self.group_paths = groups
        first: dict[str, float] = {}
        for node_id, d in g.graph.nodes(data=True):
            path = d["group"]
            while True:
                first[path] = min(first.get(path, float("inf")), self.order[node_id])
                if path == "":
                    break
                path = path.rsplit(".", 1)[0] if "." in path else ""
        members: dict[str, list[tuple[str, str]]] = {p: [] for p in groups}
        for p in groups:
            if p:
                parent = p.rsplit(".", 1)[0] if "." in p else ""
                members.setdefault(parent, []).append(("group", p))
        for node_id, d in g.graph.nodes(data=True):
            members[d["group"]].append(("node", node_id))

        def sort_key(m: tuple[str, str]) -> tuple[Any, ...]:
            kind, ident = m
            pos = self.order[ident] if kind == "node" else first.get(ident, float("inf"))
            return (pos, natural_key(ident))

        for p in members:
            members[p].sort(key=sort_key)
        self.members = members
        self._sig: dict[tuple[str, str], str] = {}
        self._wsig: dict[tuple[str, str], str] = {}

    # -- per-member facts -----------------------------------------------------------------
    def parent_of(self, member: tuple[str, str]) -> str:
        kind, ident = member
        if kind == "node":
            group: str = self.g.graph.nodes[ident]["group"]
            return group
        return ident.rsplit(".", 1)[0] if "." in ident else ""

    def name(self, member: tuple[str, str]) -> str:
        """Local name, or the wildcard where the name only records a position."""
        kind, ident = member
        if kind == "node":
            d = self.g.graph.nodes[ident]
            if d["kind"] in ("op", "params"):
                return _WILDCARD
            local = _local_name(ident, d["group"])
        else:
            local = ident.rsplit(".", 1)[-1]
        return _WILDCARD if local.split("@")[0].isdigit() else local

    def type(self, member: tuple[str, str]) -> str:
        kind, ident = member
        if kind == "node":
            return str(self.g.graph.nodes[ident]["type"])
        info = self.g.groups.get(ident)
        return str(info["type"]) if info else ""

    def node_shape(self, node_id: str) -> dict[str, Any]:
        d = self.g.graph.nodes[node_id]
        params = sorted(
            (relative_param(n, node_id, d["group"]), rec.get("shape"), rec.get("dtype"))
            for n, rec in d["params"].items()
        )
        return {"kind": d["kind"], "type": d["type"], "attrs": _arch_attrs(d["attrs"]), "params": params}

    def sig(self, member: tuple[str, str]) -> str:
        if member not in self._sig:
            kind, ident = member
            if kind == "node":
                self._sig[member] = _digest(self.node_shape(ident))
            else:
                info = self.g.groups.get(ident, {})
                self._sig[member] = _digest(
                    {
                        "type": info.get("type", ""),
                        "attrs": _arch_attrs(info.get("attrs", {})),
                        "members": [(m[0], self.sig(m)) for m in self.members.get(ident, [])],
                    }
                )
        return self._sig[member]

    def wsig(self, member: tuple[str, str]) -> str:
        if self.fingerprints is None:
            return ""
        if member not in self._wsig:
            kind, ident = member
            if kind == "node":
                d = self.g.graph.nodes[ident]
                self._wsig[member] = _digest(
                    sorted((relative_param(n, ident, d["group"]), self.fingerprints.get(n, "")) for n in d["params"])
                )
            else:
                self._wsig[member] = _digest([self.wsig(m) for m in self.members.get(ident, [])])
        return self._wsig[member]


@dataclass
class GraphMatch:
    """How layers of graph ``a`` correspond to layers of graph ``b``.

    ``pairs`` maps every matched a-id to its b-id; ``changed`` holds matched pairs whose structure
    differs, with what differs; ``renamed`` holds matched pairs whose ids differ.
    """

    pairs: dict[str, str] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, str, list[str]]] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # a-id → what changed, old/new
    group_pairs: dict[str, str] = field(default_factory=dict)
    groups_added: list[str] = field(default_factory=list)
    groups_removed: list[str] = field(default_factory=list)
    edges_added: list[tuple[str, str]] = field(default_factory=list)
    edges_removed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when the architectures are the same up to renaming of nothing at all."""
        return not (
            self.added or self.removed or self.changed or self.renamed
            or self.edges_added or self.edges_removed
        )  # fmt: skip

    @property
    def structurally_equal(self) -> bool:
        """True when only names differ (renumbered or renamed layers, same architecture)."""
        return not (self.added or self.removed or self.changed or self.edges_added or self.edges_removed)

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": dict(self.pairs),
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [{"a": a, "b": b, "what": list(what), **self.details.get(a, {})} for a, b, what in self.changed],
            "unchanged": [[a, b] for a, b in self.unchanged],
            "renamed": [[a, b] for a, b in self.renamed],
            "group_pairs": dict(self.group_pairs),
            "groups_added": list(self.groups_added),
            "groups_removed": list(self.groups_removed),
            "edges_added": [[u, v] for u, v in self.edges_added],
            "edges_removed": [[u, v] for u, v in self.edges_removed],
            "summary": {
                "matched": len(self.pairs),
                "added": len(self.added),
                "removed": len(self.removed),
                "changed": len(self.changed),
                "renamed": len(self.renamed),
                "edges_added": len(self.edges_added),
                "edges_removed": len(self.edges_removed),
            },
        }


Member = tuple[str, str]
KeyFn = Callable[[_Side, Member, int], Hashable]


def _keys(with_weights: bool) -> list[KeyFn]:
    def kind(side: _Side, m: Member) -> str:
        return m[0] if m[0] == "group" else str(side.g.graph.nodes[m[1]]["kind"])

    def never(side: _Side, m: Member, i: int) -> Hashable:
        return ("never", id(side), i)

    keys: list[KeyFn] = []
    if with_weights:
        keys.append(lambda s, m, i: (kind(s, m), s.sig(m), s.wsig(m), s.name(m)))
    keys.append(lambda s, m, i: (kind(s, m), s.sig(m), s.name(m)))
    keys.append(lambda s, m, i: (kind(s, m), s.sig(m)))
    keys.append(lambda s, m, i: (kind(s, m), s.name(m), s.type(m)))
    keys.append(lambda s, m, i: (kind(s, m), s.name(m)) if s.name(m) != _WILDCARD else never(s, m, i))
    keys.append(lambda s, m, i: (kind(s, m), s.type(m)))
    return keys


def _align(
    a: _Side, b: _Side, ma: list[Member], mb: list[Member], keys: list[KeyFn], level: int = 0
) -> list[tuple[Member, Member]]:
    if not ma or not mb or level >= len(keys):
        return []
    key = keys[level]
    ka = [key(a, m, i) for i, m in enumerate(ma)]
    kb = [key(b, m, i) for i, m in enumerate(mb)]
    matcher = SequenceMatcher(None, ka, kb, autojunk=False)
    out: list[tuple[Member, Member]] = []
    prev_a = prev_b = 0
    for block in matcher.get_matching_blocks():
        out.extend(_align(a, b, ma[prev_a : block.a], mb[prev_b : block.b], keys, level + 1))
        out.extend(zip(ma[block.a : block.a + block.size], mb[block.b : block.b + block.size], strict=True))
        prev_a, prev_b = block.a + block.size, block.b + block.size
    return out


def _compare(a: _Side, b: _Side, a_id: str, b_id: str) -> tuple[list[str], dict[str, Any]]:
    da, db = a.g.graph.nodes[a_id], b.g.graph.nodes[b_id]
    what: list[str] = []
    detail: dict[str, Any] = {}
    if da["kind"] != db["kind"]:
        what.append("kind")
    if da["type"] != db["type"]:
        what.append("type")
        detail["type"] = [da["type"], db["type"]]
    attrs_a, attrs_b = _arch_attrs(da["attrs"]), _arch_attrs(db["attrs"])
    if attrs_a != attrs_b:
        what.append("attrs")
        detail["attrs"] = {
            k: [attrs_a.get(k), attrs_b.get(k)]
            for k in sorted(set(attrs_a) | set(attrs_b))
            if attrs_a.get(k) != attrs_b.get(k)
        }
    pa = {relative_param(n, a_id, da["group"]): r for n, r in da["params"].items()}
    pb = {relative_param(n, b_id, db["group"]): r for n, r in db["params"].items()}
    if set(pa) != set(pb):
        what.append("params")
        detail["params"] = {"removed": sorted(set(pa) - set(pb)), "added": sorted(set(pb) - set(pa))}
    shapes = {k: [pa[k].get("shape"), pb[k].get("shape")] for k in sorted(set(pa) & set(pb))}
    shapes = {k: v for k, v in shapes.items() if v[0] != v[1]}
    if shapes:
        what.append("shapes")
        detail["shapes"] = shapes
    dtypes = {k: [pa[k].get("dtype"), pb[k].get("dtype")] for k in sorted(set(pa) & set(pb))}
    dtypes = {k: v for k, v in dtypes.items() if v[0] != v[1]}
    if dtypes:
        what.append("dtypes")
        detail["dtypes"] = dtypes
    return what, detail


def _names_level(g: LayerGraph) -> LayerGraph:
    if g.source == "names":
        return g
    from nbmodelhub.graph.from_names import graph_from_tensors

    params = {n: (str(r["dtype"]), tuple(r["shape"])) for n, r in g.params().items() if r.get("tied_to") is None}
    return graph_from_tensors(params, g.attrs.get("hf_config") if isinstance(g.attrs.get("hf_config"), dict) else None)


def match_graphs(
    a: LayerGraph,
    b: LayerGraph,
    *,
    fingerprints_a: Mapping[str, str] | None = None,
    fingerprints_b: Mapping[str, str] | None = None,
) -> GraphMatch:
    """Match the layers of ``a`` to those of ``b`` (see the module docstring for how)."""
    if (a.source == "names") != (b.source == "names"):
        # A traced graph against one read from parameter names (a module vs. its safetensors
        # file): compare both at the level of detail they share, or every layer looks different.
        a, b = _names_level(a), _names_level(b)
    with_weights = fingerprints_a is not None and fingerprints_b is not None
    sa = _Side(a, fingerprints_a if with_weights else None)
    sb = _Side(b, fingerprints_b if with_weights else None)
    keys = _keys(with_weights)
    node_pairs: dict[str, str] = {}
    group_pairs: dict[str, str] = {}

    def walk(ga: str, gb: str) -> None:
        group_pairs[ga] = gb
        for ma, mb in _align(sa, sb, sa.members.get(ga, []), sb.members.get(gb, []), keys):
            if ma[0] == "group" and mb[0] == "group":
                walk(ma[1], mb[1])
            elif ma[0] == "node" and mb[0] == "node":
                node_pairs[ma[1]] = mb[1]

    walk("", "")

    # Layers moved to another group: pair them when their structure is unique on both sides.
    left_a = [n for n in a.graph.nodes if n not in node_pairs]
    taken_b = set(node_pairs.values())
    left_b = [n for n in b.graph.nodes if n not in taken_b]

    def leftover_key(side: _Side, n: str) -> tuple[str, str]:
        return side.sig(("node", n)), side.wsig(("node", n))

    for strict in (True, False):
        index_a: dict[Hashable, list[str]] = {}
        index_b: dict[Hashable, list[str]] = {}
        for n in left_a:
            key_a: Hashable = leftover_key(sa, n) if strict else leftover_key(sa, n)[0]
            index_a.setdefault(key_a, []).append(n)
        for n in left_b:
            key_b: Hashable = leftover_key(sb, n) if strict else leftover_key(sb, n)[0]
            index_b.setdefault(key_b, []).append(n)
        for k, ids_a in index_a.items():
            ids_b = index_b.get(k, [])
            if len(ids_a) == 1 and len(ids_b) == 1:
                node_pairs[ids_a[0]] = ids_b[0]
        left_a = [n for n in left_a if n not in node_pairs]
        taken_b = set(node_pairs.values())
        left_b = [n for n in left_b if n not in taken_b]

    result = GraphMatch()
    for a_id in a.graph.nodes:  # report in a's execution order, deterministically
        if a_id not in node_pairs:
            result.removed.append(a_id)
            continue
        b_id = node_pairs[a_id]
        result.pairs[a_id] = b_id
        what, detail = _compare(sa, sb, a_id, b_id)
        if what:
            result.changed.append((a_id, b_id, what))
            result.details[a_id] = detail
        else:
            result.unchanged.append((a_id, b_id))
        if a_id != b_id:
            result.renamed.append((a_id, b_id))
    matched_b = set(result.pairs.values())
    result.added = [n for n in b.graph.nodes if n not in matched_b]

    result.group_pairs = {ga: gb for ga, gb in sorted(group_pairs.items(), key=lambda kv: natural_key(kv[0]))}
    matched_groups_b = set(group_pairs.values())
    result.groups_removed = sorted((p for p in sa.group_paths if p not in group_pairs), key=natural_key)
    result.groups_added = sorted((p for p in sb.group_paths if p not in matched_groups_b), key=natural_key)

    inverse = {v: k for k, v in result.pairs.items()}
    for u, v in a.graph.edges:
        if not (u in result.pairs and v in result.pairs and b.graph.has_edge(result.pairs[u], result.pairs[v])):
            result.edges_removed.append((u, v))
    for u, v in b.graph.edges:
        if not (u in inverse and v in inverse and a.graph.has_edge(inverse[u], inverse[v])):
            result.edges_added.append((u, v))
    return result
