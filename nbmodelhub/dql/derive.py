"""slice and construct: new, uncommitted models cut or derived from a stored version.

A :class:`DerivedModel` holds the new layer graph, the weights it keeps from its source (numpy),
and — built on first use — a torch module (``.module``) with those weights loaded, where every
layer can be rebuilt (see rebuild.py). ``commit`` stores it as a version whose parent is the
source, with the derived graph.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from nbmodelhub.dql import syntax as s
from nbmodelhub.dql.layers import TYPES, compile_pattern, fill_captures, match_layers
from nbmodelhub.dql.predicates import Binding, bound_layers
from nbmodelhub.errors import UsageError
from nbmodelhub.graph import LayerGraph

if TYPE_CHECKING:  # pragma: no cover
    from nbmodelhub.api import Repository, Version


@dataclass
class DerivedModel:
    """A model made by a query: not in the repository until :meth:`commit`."""

    kind: str  # "slice" | "construct"
    source: Version
    graph: LayerGraph
    weights: dict[str, Any]  # state-dict name → numpy array, the source's tensors it keeps
    changes: list[str] = field(default_factory=list)
    name: str = ""  # a suggested model name for commit
    edits: list[tuple[str, str, str, Any]] = field(default_factory=list)  # (insert|delete, layer, new id, module)
    _module: Any = None

    def apply(self, module: Any) -> Any:
        """This model as a copy of ``module`` — your own instance of the source's architecture.

        For models the graph cannot rebuild (GPT-2's attention, custom code): the copy gets the
        source version's weights, then each inserted layer runs on its anchor's output (a forward
        hook; the new layer is registered beside the anchor under its graph name) and each
        deleted layer becomes ``nn.Identity``. The result is also what :meth:`commit` stores.
        """
        import torch

        copied = copy.deepcopy(module)
        try:
            copied.load_state_dict(_torch_state(self.source_weights or {}), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[1:2] or [str(exc)]
            raise UsageError(f"this module is not {self.source.ref}'s architecture: {first[0].strip()}") from None
        for action, layer, node_id, new in self.edits:
            anchor = copied.get_submodule(layer)
            parent_path, _, leaf = node_id.rpartition(".")
            if action == "insert":
                added = copy.deepcopy(new)
                copied.get_submodule(parent_path).add_module(leaf, added)
                anchor.register_forward_hook(lambda _m, _i, out, layer_=added: layer_(out))
            else:
                owner_path, _, name = layer.rpartition(".")
                copied.get_submodule(owner_path).add_module(name, torch.nn.Identity())
        self._module = copied
        return copied

    source_weights: dict[str, Any] | None = None  # construct: all the source's tensors, for apply()

    @property
    def module(self) -> Any:
        """The torch module, rebuilt from the graph with the kept weights loaded (new layers: fresh init).

        Where the graph cannot be rebuilt, the error says so; use :meth:`apply` with your own module.
        """
        if self._module is None:
            import torch

            from nbmodelhub.dql.rebuild import build_module

            module = build_module(self.graph, *self._ends())
            state = module.state_dict()
            unknown = sorted(set(self.weights) - set(state))
            if unknown:
                raise UsageError(f"rebuilt module has no place for {unknown[0]!r}: the graph and weights disagree")
            for name, array in self.weights.items():
                tensor = torch.from_numpy(array.copy())
                if tuple(state[name].shape) != tuple(tensor.shape):
                    raise UsageError(
                        f"{name}: stored shape {tuple(tensor.shape)} does not fit the rebuilt layer's "
                        f"{tuple(state[name].shape)}"
                    )
                state[name] = tensor
            module.load_state_dict(state, strict=True)
            self._module = module
        return self._module

    def _ends(self) -> tuple[str | None, str | None]:
        info = self.graph.attrs.get("derived", {})
        return info.get("input"), info.get("output")

    def commit(self, repo: Repository, name: str | None = None, message: str | None = None, **kw: Any) -> Version:
        """Store as a version of ``name`` (default: the suggested name) with the source as parent."""
        from nbmodelhub.adapters import Weights, np_adapter, torch_adapter

        try:
            module = self.module
        except UsageError:
            module = None
        if module is not None:
            tensors, ties = torch_adapter.from_module(module)
            weights = Weights(tensors, ties, "torch", type(module).__name__, graph=self.graph)
        else:
            tensors, ties = np_adapter.from_arrays(self.weights)
            weights = Weights(tensors, ties, "numpy", "arrays", graph=self.graph)
        kw.setdefault("parents", [self.source.id])
        text = message if message is not None else f"{self.kind} of {self.source.ref}: " + "; ".join(self.changes)
        return repo.commit(weights, name=name or self.name, message=text, **kw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source.ref,
            "changes": list(self.changes),
            "layers": len(self.graph),
            "parameters": int(sum(a.size for a in self.weights.values())),
            "graph": self.graph.summary(),
        }

    def __repr__(self) -> str:
        return f"<DerivedModel {self.kind} of {self.source.ref}: {len(self.graph)} layers; {'; '.join(self.changes)}>"


def _torch_state(arrays: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}


def _one_layer(graph: LayerGraph, ref: s.Ref, version: Version, binding: Binding) -> str:
    if len(ref.steps) != 1 or ref.steps[0][0] != "layers":
        raise UsageError(f'{ref.text()}: name one layer, as in {ref.var}["conv1"]')
    hits = bound_layers(graph, compile_pattern(ref.steps[0][1]), binding)
    if len(hits) != 1:
        found = f"matches {len(hits)}: {', '.join(hits[:6])}" if hits else "matches no layer"
        raise UsageError(f'{ref.text()} must name one layer of {version.ref}; it {found}')
    return hits[0]


def _subgraph(graph: LayerGraph, nodes: list[str], attrs: dict[str, Any]) -> LayerGraph:
    out = LayerGraph(graph.source, attrs={**copy.deepcopy(graph.attrs), **attrs})
    for n in graph.graph.nodes:
        if n in nodes:
            d = graph.node(n)
            out.add_layer(n, d["type"], kind=d["kind"], group=d["group"], attrs=d["attrs"], params=d["params"],
                          module_type=d.get("module_type"))  # fmt: skip
    for u, v, data in graph.graph.edges(data=True):
        if u in nodes and v in nodes:
            out.add_edge(u, v, **data)
    for path in list(out.groups):
        out.groups.pop(path)
    out.ensure_groups()
    for path, info in out.groups.items():
        if path in graph.groups:
            info["type"] = graph.groups[path]["type"]
            info["attrs"] = copy.deepcopy(graph.groups[path].get("attrs", {}))
    return out


def _load_weights(repo: Repository, version: Version, graph: LayerGraph) -> dict[str, Any]:
    names = sorted(graph.params())
    return repo.load(version, keys=names) if names else {}


def slice_version(
    repo: Repository, version: Version, graph: LayerGraph, query: s.Slice, binding: Binding
) -> DerivedModel:
    ends: dict[str, str] = {}
    for m in query.mutations:
        target = m.target
        if target.var != query.target or len(target.steps) != 1 or target.steps[0][1] not in ("input", "output"):
            raise UsageError(f"a slice sets {query.target}.input and {query.target}.output, not {target.text()}")
        if not isinstance(m.value, s.Ref) or m.value.var != query.source:
            raise UsageError(f'{target.text()} takes a layer of {query.source}, as in {query.source}["conv1"]')
        ends[target.steps[0][1]] = _one_layer(graph, m.value, version, binding)
    if set(ends) != {"input", "output"}:
        raise UsageError(f"a slice needs both {query.target}.input and {query.target}.output")
    g = graph.graph
    first, last = ends["input"], ends["output"]
    if last != first and not nx.has_path(g, first, last):
        raise UsageError(f"{version.ref}: no data flows from {first!r} to {last!r}; swap them or pick other layers")
    keep = ({first} | nx.descendants(g, first)) & ({last} | nx.ancestors(g, last))
    for n in keep - {first}:
        outside = [p for p in g.predecessors(n) if p not in keep]
        if outside:
            raise UsageError(
                f"{version.ref}: the slice {first!r} → {last!r} needs input from outside it ({outside[0]!r} feeds "
                f"{n!r}); start the slice earlier"
            )
    order = [n for n in g.nodes if n in keep]
    sub = _subgraph(graph, order, {"derived": {"kind": "slice", "from": version.ref, "input": first, "output": last}})
    return DerivedModel(
        "slice", version, sub, _load_weights(repo, version, sub), [f"{first} → {last} ({len(order)} layers)"],
        name=f"{version.model}-slice",
    )  # fmt: skip


def _new_layer(spec: s.LayerSpec, binding: Binding, anchor: Mapping[str, Any]) -> tuple[str, Any]:
    """(name, torch module) for ``RELU("relu$1")``, ``POOL("MAX", "pool$1", kernel_size=2)``, …"""
    import torch.nn as nn

    kind = spec.type.upper()
    variants = TYPES.get(kind, (frozenset(), {}))[1]
    args = list(spec.args)
    variant = str(args.pop(0)).upper() if variants and args and str(args[0]).upper() in variants else None
    if not args or not isinstance(args[0], str):
        raise UsageError(f'{spec.text()}: give the new layer a name, as in {kind}("{kind.lower()}$1")')
    name = fill_captures(args[0], binding)
    kw = dict(spec.kwargs)
    attrs = anchor.get("attrs") or {}
    features = attrs.get("out_channels") or attrs.get("out_features") or attrs.get("nf") or attrs.get("num_features")
    try:
        if kind == "RELU":
            return name, nn.ReLU()
        if kind == "GELU":
            return name, nn.GELU(**kw)
        if kind == "SIGMOID":
            return name, nn.Sigmoid()
        if kind == "TANH":
            return name, nn.Tanh()
        if kind in ("SILU", "ACT"):
            return name, nn.SiLU()
        if kind == "DROPOUT":
            return name, nn.Dropout(**kw)
        if kind == "IDENTITY":
            return name, nn.Identity()
        if kind == "POOL":
            size = kw.pop("kernel_size", 2)
            return name, (nn.AvgPool2d if variant == "AVG" else nn.MaxPool2d)(size, **kw)
        if kind == "NORM" and features:
            if variant in (None, "BATCH"):
                return name, nn.BatchNorm2d(int(features), **kw)
            if variant == "LAYER":
                return name, nn.LayerNorm(int(features), **kw)
    except TypeError as exc:
        raise UsageError(f"{spec.text()}: {exc}") from exc
    raise UsageError(
        f"{spec.text()} cannot be inserted: new layers are RELU, GELU, SIGMOID, TANH, SILU, DROPOUT(p=…), IDENTITY, "
        'POOL("MAX"|"AVG", name, kernel_size=…) and NORM("BATCH"|"LAYER", name) after a layer with a known width'
    )


def construct_version(
    repo: Repository, version: Version, graph: LayerGraph, query: s.Construct, bindings: list[Binding]
) -> DerivedModel:
    from nbmodelhub.graph.from_torch import _module_attrs, _param_records, _qualname

    g = copy.deepcopy(graph.graph)
    new = LayerGraph(graph.source, graph=g, groups=copy.deepcopy(graph.groups), attrs=copy.deepcopy(graph.attrs))
    changes: list[str] = []
    edits: list[tuple[str, str, str, Any]] = []
    fresh: set[str] = set()
    for m in query.mutations:
        steps = m.target.steps
        if m.target.var != query.source or len(steps) != 2 or steps[0][0] != "layers" or steps[1][0] != "field":
            raise UsageError(f'construct mutates layers, as in {query.source}["conv*($1)"].insert = RELU("relu$1")')
        action = steps[1][1]
        pattern = compile_pattern(steps[0][1])
        targets: list[tuple[str, Binding]] = []
        for b in bindings:
            for layer, caps in match_layers(pattern, list(graph.graph.nodes)):
                if all(b.get(k, v) == v for k, v in caps.items()) and layer not in [t for t, _ in targets]:
                    targets.append((layer, {**b, **caps}))
        if not targets:
            raise UsageError(f"{m.target.text()} names no layer of {version.ref} where the query holds")
        for layer, b in targets:
            if action == "insert":
                if not isinstance(m.value, s.LayerSpec):
                    raise UsageError(f'{m.target.text()} = a new layer, as in RELU("relu$1")')
                name, module = _new_layer(m.value, b, g.nodes[layer])
                group = g.nodes[layer]["group"]
                node_id = f"{group}.{name}" if group else name
                if node_id in g or node_id in new.groups:
                    raise UsageError(f"{version.ref} already has a layer {node_id!r}: pick another name")
                records = {f"{node_id}.{k}": v for k, v in _param_records(module).items()}
                successors = list(g.successors(layer))
                new.add_layer(node_id, type(module).__name__, group=group, attrs=_module_attrs(module),
                              params=records, module_type=_qualname(module))  # fmt: skip
                for nxt in successors:
                    data = g.edges[layer, nxt]
                    g.remove_edge(layer, nxt)
                    g.add_edge(node_id, nxt, **data)
                g.add_edge(layer, node_id)
                fresh.add(node_id)
                edits.append(("insert", layer, node_id, module))
                changes.append(f"insert {node_id} ({type(module).__name__}) after {layer}")
            elif action == "delete":
                if m.value != s.Literal(True):
                    raise UsageError(f"{m.target.text()} = true deletes the layers it names")
                preds, succs = list(g.predecessors(layer)), list(g.successors(layer))
                if len(preds) > 1 and len(succs) > 0:
                    raise UsageError(f"cannot delete {layer!r}: it merges {len(preds)} inputs")
                g.remove_node(layer)
                g.add_edges_from((p, n) for p in preds for n in succs)
                edits.append(("delete", layer, layer, None))
                changes.append(f"delete {layer}")
            else:
                raise UsageError(f"{m.target.text()}: construct can .insert or .delete layers, not .{action}")
    _reorder(new, g)
    new.ensure_groups()
    new.attrs["derived"] = {"kind": "construct", "from": version.ref, "changes": changes}
    for info in new.groups.values():  # deleted layers leave their groups
        info["children"] = [c for c in info["children"] if c in g or c in new.groups]
    source_weights = repo.load(version)
    kept = set(_without(new, fresh).params())
    weights = {k: v for k, v in source_weights.items() if k in kept}
    return DerivedModel("construct", version, new, weights, changes, name=f"{version.model}-derived", edits=edits,
                        source_weights=source_weights)  # fmt: skip


def _without(graph: LayerGraph, nodes: set[str]) -> LayerGraph:
    out = LayerGraph(graph.source)
    for n, d in graph.graph.nodes(data=True):
        if n not in nodes:
            out.add_layer(n, d["type"], kind=d["kind"], group=d["group"], params=d["params"])
    return out


def _reorder(graph: LayerGraph, g: nx.DiGraph) -> None:
    """Keep nodes in execution order (the stored JSON's order) after inserts."""
    order = list(nx.lexicographical_topological_sort(g, key=list(g.nodes).index))
    fresh = nx.DiGraph()
    fresh.add_nodes_from((n, g.nodes[n]) for n in order)
    fresh.add_edges_from(g.edges(data=True))
    graph.graph = fresh
