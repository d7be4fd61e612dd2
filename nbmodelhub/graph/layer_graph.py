"""The layer graph: a model's architecture at layer level, as a networkx DiGraph.

Nodes are layers keyed by a stable id (the module path for framework modules, e.g.
``transformer.h.3.attn.c_attn``; ``<group>:<op>`` for functional operations such as the residual
``transformer.h.3:add``). Edges are data flow. The module hierarchy lives beside the graph in
``groups`` so views can collapse and expand blocks without re-deriving it from ids.

The on-disk form is plain JSON (``to_json``); the store keeps it content-addressed, so the JSON is
deterministic: the same graph always dumps to the same bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import networkx as nx

FORMAT = "nbmodelhub.layer_graph"
FORMAT_VERSION = 1

#: Sources whose edges describe real data flow; "modules" and "names" carry the hierarchy only.
TRACED_SOURCES = frozenset({"fx", "export", "hooks", "onnx"})

NODE_KINDS = ("module", "op", "params", "group")

JSONValue = Any  # JSON-able: None, bool, int, float, str, list of these, dict str -> these


def to_jsonable(value: Any, *, max_items: int = 64) -> JSONValue:
    """Best-effort conversion of an attribute value to strict JSON.

    Returns ``None`` for values that have no sensible JSON form, so callers can drop them;
    non-finite floats become strings because the store writes strict JSON (allow_nan=False).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(value, (list, tuple)):
        if len(value) > max_items:
            return None
        items = [to_jsonable(v, max_items=max_items) for v in value]
        if any(i is None and v is not None for i, v in zip(items, value, strict=True)):
            return None
        return items
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            jv = to_jsonable(v, max_items=max_items)
            if jv is not None or v is None:
                out[str(k)] = jv
        return out
    # numpy scalars and torch.dtype / torch.Size expose these without importing either library
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        try:
            return to_jsonable(value.item())
        except Exception:
            return None
    type_name = type(value).__name__
    if type_name == "dtype":
        return str(value).removeprefix("torch.")
    if type_name == "Size":
        return [int(v) for v in value]
    return None


def param_record(
    shape: Iterable[int], dtype: str, *, buffer: bool = False, tied_to: str | None = None
) -> dict[str, Any]:
    """The JSON record of one parameter (or persistent buffer) as nodes carry it."""
    shape_list = [int(s) for s in shape]
    count = 1
    for s in shape_list:
        count *= s
    rec: dict[str, Any] = {"shape": shape_list, "dtype": str(dtype), "count": count}
    if buffer:
        rec["buffer"] = True
    if tied_to is not None:
        rec["tied_to"] = tied_to
    return rec


_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str) -> tuple[Any, ...]:
    """Sort key that orders ``h.2`` before ``h.10`` (safetensors files list names alphabetically)."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in _DIGITS.split(path) if p != "")


def parent_path(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def path_depth(path: str) -> int:
    return 0 if path == "" else path.count(".") + 1


class LayerGraph:
    """A layer-level architecture graph.

    ``graph`` is the networkx DiGraph (node data: ``type``, ``kind``, ``attrs``, ``params``,
    ``group`` and optionally ``module_type``); ``groups`` maps a module path to
    ``{"type", "parent", "children", "attrs"}``; ``source`` says how edges were obtained.
    """

    def __init__(
        self,
        source: str,
        *,
        graph: nx.DiGraph | None = None,
        groups: dict[str, dict[str, Any]] | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self.source = source
        self.graph: nx.DiGraph = graph if graph is not None else nx.DiGraph()
        self.groups: dict[str, dict[str, Any]] = groups if groups is not None else {}
        self.attrs: dict[str, Any] = attrs if attrs is not None else {}

    # -- building -------------------------------------------------------------------------
    def add_layer(
        self,
        node_id: str,
        type: str,
        *,
        kind: str = "module",
        group: str = "",
        attrs: Mapping[str, Any] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        module_type: str | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "type": type,
            "kind": kind,
            "group": group,
            "attrs": dict(attrs or {}),
            "params": {k: dict(v) for k, v in (params or {}).items()},
        }
        if module_type:
            data["module_type"] = module_type
        self.graph.add_node(node_id, **data)

    def add_edge(self, src: str, dst: str, **data: Any) -> None:
        if src == dst:
            return
        self.graph.add_edge(src, dst, **data)

    def add_group(
        self,
        path: str,
        type: str,
        *,
        children: Iterable[str] = (),
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        self.groups[path] = {
            "type": type,
            "parent": None if path == "" else parent_path(path),
            "children": list(children),
            "attrs": dict(attrs or {}),
        }

    def ensure_groups(self, default_type: str = "") -> None:
        """Create any group a node or group refers to but that is missing, and fill ``children``.

        Builders that only know paths (ONNX scopes, parameter names) rely on this so the
        hierarchy invariants hold: every node's group exists, every group's parent exists.
        """
        needed: list[str] = [d["group"] for _, d in self.graph.nodes(data=True)]
        needed.extend(self.groups)
        seen: set[str] = set()
        for g in needed:
            while g not in seen:
                seen.add(g)
                if g not in self.groups:
                    self.add_group(g, default_type)
                if g == "":
                    break
                g = parent_path(g)
        for path, info in self.groups.items():
            parent = info["parent"]
            if parent is not None and path not in self.groups[parent]["children"]:
                self.groups[parent]["children"].append(path)
        for node_id, d in self.graph.nodes(data=True):
            children = self.groups[d["group"]]["children"]
            if node_id not in children:
                children.append(node_id)

    # -- reading --------------------------------------------------------------------------
    @property
    def traced(self) -> bool:
        return self.source in TRACED_SOURCES

    def layers(self) -> list[str]:
        return list(self.graph.nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.graph.nodes)

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.graph

    def node(self, node_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self.graph.nodes[node_id]
        return data

    def params(self) -> dict[str, dict[str, Any]]:
        """All parameter records by state-dict name (a tied name appears once per owner name)."""
        out: dict[str, dict[str, Any]] = {}
        for _, d in self.graph.nodes(data=True):
            for name, rec in d["params"].items():
                out.setdefault(name, rec)
        return out

    def parameter_count(self, *, include_buffers: bool = False) -> int:
        """Number of distinct parameter elements; tied aliases and (by default) buffers excluded."""
        total = 0
        for rec in self.params().values():
            if rec.get("tied_to") is not None:
                continue
            if rec.get("buffer") and not include_buffers:
                continue
            total += int(rec["count"])
        return total

    def nodes_in_group(self, group: str, *, recursive: bool = True) -> list[str]:
        prefix = group + "." if group else ""
        out = []
        for node_id, d in self.graph.nodes(data=True):
            g = d["group"]
            if g == group or (recursive and (group == "" or g.startswith(prefix))):
                out.append(node_id)
        return out

    def summary(self) -> dict[str, Any]:
        by_type = Counter(d["type"] for _, d in self.graph.nodes(data=True))
        root = self.groups.get("")
        top_level = []
        if root is not None:
            for child in root["children"]:
                info = self.groups.get(child)
                if info is not None:
                    top_level.append({"path": child, "type": info["type"]})
                elif child in self.graph:
                    top_level.append({"path": child, "type": self.graph.nodes[child]["type"]})
        return {
            "source": self.source,
            "traced": self.traced,
            "layers": self.graph.number_of_nodes(),
            "edges": self.graph.number_of_edges(),
            "groups": len(self.groups),
            "parameters": self.parameter_count(),
            "buffers": self.parameter_count(include_buffers=True) - self.parameter_count(),
            "by_type": dict(sorted(by_type.items())),
            "top_level": top_level,
        }

    # -- views ----------------------------------------------------------------------------
    def collapsed(self, depth: int | None = None, groups: Iterable[str] | None = None) -> LayerGraph:
        """A coarser graph in which whole groups become single nodes of kind ``group``.

        ``depth`` collapses every group at that nesting depth (``transformer.h.3`` is depth 3);
        ``groups`` names groups to collapse explicitly. The collapsed node's id is the group path
        and it carries all parameters of its members, so parameter counts are preserved.
        """
        targets: set[str] = set(groups or ())
        if depth is not None:
            targets.update(g for g in self.groups if g and path_depth(g) == depth)
        targets.discard("")

        def owner(node_id: str, group: str) -> str:
            g = group
            best = node_id
            while g:
                if g in targets:
                    best = g
                g = parent_path(g)
            return best

        out = LayerGraph(self.source, attrs=json.loads(json.dumps(self.attrs)))
        mapping: dict[str, str] = {}
        for node_id, d in self.graph.nodes(data=True):
            target = owner(node_id, d["group"])
            mapping[node_id] = target
            if target == node_id:
                out.add_layer(
                    node_id,
                    d["type"],
                    kind=d["kind"],
                    group=d["group"],
                    attrs=d["attrs"],
                    params=d["params"],
                    module_type=d.get("module_type"),
                )
            elif target not in out.graph:
                info = self.groups[target]
                out.add_layer(
                    target,
                    info["type"],
                    kind="group",
                    group=info["parent"] or "",
                    attrs=info.get("attrs", {}),
                    params=dict(d["params"]),
                )
            else:
                out.graph.nodes[target]["params"].update(d["params"])
        for u, v, data in self.graph.edges(data=True):
            mu, mv = mapping[u], mapping[v]
            if mu != mv and not out.graph.has_edge(mu, mv):
                out.add_edge(mu, mv, **data)
        hidden = {g for g in self.groups for t in targets if g.startswith(t + ".")}
        for path, info in self.groups.items():
            if path in hidden or path in targets:
                continue
            out.add_group(
                path,
                info["type"],
                children=[c for c in info["children"] if c not in hidden],
                attrs=info.get("attrs", {}),
            )
        return out

    # -- serialisation --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Plain JSON; node order is execution order, edges follow node order."""
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        nodes = []
        for node_id, d in self.graph.nodes(data=True):
            entry: dict[str, Any] = {
                "id": node_id,
                "type": d["type"],
                "kind": d["kind"],
                "group": d["group"],
                "attrs": d["attrs"],
                "params": d["params"],
            }
            if d.get("module_type"):
                entry["module_type"] = d["module_type"]
            nodes.append(entry)
        edges = []
        for u, v, data in sorted(self.graph.edges(data=True), key=lambda e: (order[e[0]], order[e[1]])):
            edge: dict[str, Any] = {"source": u, "target": v}
            edge.update({k: data[k] for k in sorted(data)})
            edges.append(edge)
        groups = {
            path: {
                "type": info["type"],
                "parent": info["parent"],
                "children": list(info["children"]),
                "attrs": info.get("attrs", {}),
            }
            for path, info in sorted(self.groups.items(), key=lambda kv: natural_key(kv[0]))
        }
        result: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "source": self.source,
            "traced": self.traced,
            "attrs": self.attrs,
            "nodes": nodes,
            "edges": edges,
            "groups": groups,
        }
        # A round trip through json proves the result is plain data and detaches it from us.
        loaded: dict[str, Any] = json.loads(json.dumps(result, allow_nan=False))
        return loaded

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LayerGraph:
        if d.get("format", FORMAT) != FORMAT:
            raise ValueError(f"not a layer graph: format {d.get('format')!r}")
        version = int(d.get("version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise ValueError(f"layer graph format version {version} is newer than this nbmodelhub")
        g = cls(str(d["source"]), attrs=dict(d.get("attrs") or {}))
        for n in d.get("nodes", []):
            g.add_layer(
                str(n["id"]),
                str(n["type"]),
                kind=str(n.get("kind", "module")),
                group=str(n.get("group", "")),
                attrs=n.get("attrs") or {},
                params=n.get("params") or {},
                module_type=n.get("module_type"),
            )
        for e in d.get("edges", []):
            extra = {k: v for k, v in e.items() if k not in ("source", "target")}
            g.graph.add_edge(str(e["source"]), str(e["target"]), **extra)
        for path, info in (d.get("groups") or {}).items():
            g.groups[str(path)] = {
                "type": str(info.get("type", "")),
                "parent": info.get("parent"),
                "children": list(info.get("children", [])),
                "attrs": dict(info.get("attrs") or {}),
            }
        return g

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerGraph):
            return NotImplemented
        return self.canonical_bytes() == other.canonical_bytes()

    __hash__ = None  # type: ignore[assignment]  # mutable container

    def __repr__(self) -> str:
        return (
            f"LayerGraph(source={self.source!r}, layers={self.graph.number_of_nodes()}, "
            f"edges={self.graph.number_of_edges()}, parameters={self.parameter_count()})"
        )
