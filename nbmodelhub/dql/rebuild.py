"""Layer graph + weights → a runnable torch module (an ``fx.GraphModule``).

Each layer is rebuilt from its stored class (``module_type``) and attributes: the constructor's
arguments are read from the attributes by name (``bias`` from whether the layer has one).
Only classes from ``torch.nn`` and a few parameter-only ``transformers`` layers are ever imported;
the graph names a class, it never supplies code. Functional ops are rebuilt where the graph fully
determines them (``add``, ``mul`` and elementwise activations); anything else — attention
kernels, splits, ops whose arguments the graph does not record — is refused with the layer's name.

``torch.flatten`` between a convolution stack and a linear layer is folded away by the tracer,
so a ``Linear`` fed by a spatial layer (conv, pool, 2-d norm) gets a ``flatten(x, 1)`` first.
Submodules keep their original paths, so the state-dict names are the stored tensor names.
"""

from __future__ import annotations

import importlib
import inspect
import operator
from collections.abc import Mapping
from typing import Any

import networkx as nx

from nbmodelhub.errors import UsageError
from nbmodelhub.graph import LayerGraph

_ALLOWED_MODULES = ("torch.nn.modules.", "transformers.activations.", "transformers.pytorch_utils.")
_SPATIAL = ("Conv2d", "Conv3d", "MaxPool2d", "MaxPool3d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool2d",
            "AdaptiveMaxPool2d", "BatchNorm2d", "BatchNorm3d", "Dropout2d", "InstanceNorm2d", "Upsample")  # fmt: skip
_ELEMENTWISE = ("ReLU", "ReLU6", "GELU", "SiLU", "Sigmoid", "Tanh", "ELU", "LeakyReLU", "Dropout", "Identity",
                "Hardtanh", "add", "mul", "relu", "gelu", "silu", "sigmoid", "tanh")  # fmt: skip


def _function(op: str) -> Any:
    import torch

    table = {
        "add": operator.add,
        "mul": operator.mul,
        "relu": torch.relu,
        "gelu": torch.nn.functional.gelu,
        "silu": torch.nn.functional.silu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "flatten": torch.flatten,
    }
    return table.get(op)


def module_class(module_type: str | None, layer: str) -> type:
    if not module_type or not module_type.startswith(_ALLOWED_MODULES):
        raise UsageError(
            f"layer {layer!r} ({module_type or 'no class recorded'}) cannot be rebuilt from the graph: only torch.nn "
            "layers can; check out the version into your own module instead (repo.checkout)"
        )
    module_name, _, class_name = module_type.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"layer {layer!r}: {module_type} is not importable here ({exc})") from exc
    if not isinstance(cls, type):
        raise UsageError(f"layer {layer!r}: {module_type} is not a class")
    return cls


def build_layer(layer: str, data: Mapping[str, Any]) -> Any:
    """One torch module from its node data (type, module_type, attrs, params)."""
    cls = module_class(data.get("module_type"), layer)
    attrs = data.get("attrs") or {}
    kwargs: dict[str, Any] = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        if name == "bias" and "bias" not in attrs:
            kwargs["bias"] = any(k.endswith(".bias") or k == "bias" for k in data.get("params", {}))
        elif name in attrs:
            value = attrs[name]
            kwargs[name] = tuple(value) if isinstance(value, list) else value
        elif p.default is p.empty:
            raise UsageError(f"layer {layer!r} ({data.get('type')}) cannot be rebuilt: attribute {name!r} is unknown")
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise UsageError(f"layer {layer!r} ({data.get('type')}) cannot be rebuilt: {exc}") from exc


def build_module(graph: LayerGraph, entry: str | None = None, exit: str | None = None) -> Any:
    """An ``fx.GraphModule`` running ``graph`` from its one input layer to its one output layer."""
    import torch
    import torch.fx as fx

    g = graph.graph
    used = [n for n in g.nodes if g.degree(n) > 0 or g.number_of_nodes() == 1]
    idle = [n for n in g.nodes if n not in used]
    roots = [n for n in used if g.in_degree(n) == 0]
    sinks = [n for n in used if g.out_degree(n) == 0]
    entry = entry or (roots[0] if len(roots) == 1 else None)
    exit = exit or (sinks[0] if len(sinks) == 1 else None)
    if entry is None or exit is None:
        which = roots if entry is None else sinks
        raise UsageError(
            f"cannot rebuild a module from this graph: it has {len(which)} {'inputs' if entry is None else 'outputs'} "
            f"({', '.join(which[:5])}); a rebuilt module takes one input and gives one output"
        )
    if not graph.traced:
        raise UsageError(
            f"cannot rebuild a module: the graph has no data-flow edges (source {graph.source!r}); "
            "only traced graphs (torch.fx, torch.export, hooks) can be rebuilt"
        )
    modules: dict[str, Any] = {}
    fx_graph = fx.Graph()
    x = fx_graph.placeholder("x")
    values: dict[str, Any] = {}
    spatial: dict[str, bool] = {}
    for node in nx.topological_sort(g.subgraph(used)):
        data = g.nodes[node]
        preds = sorted(g.predecessors(node), key=list(g.nodes).index)
        if node == entry:
            inputs, spatial_in = [x], False
        elif not preds:
            raise UsageError(f"cannot rebuild a module: layer {node!r} takes an input from outside the graph")
        else:
            inputs, spatial_in = [values[p] for p in preds], any(spatial[p] for p in preds)
        kind, layer_type = data.get("kind"), str(data.get("type"))
        if kind == "module":
            if len(inputs) != 1:
                raise UsageError(f"cannot rebuild layer {node!r}: it takes {len(inputs)} inputs ({', '.join(preds)})")
            if "@" in node:
                raise UsageError(f"cannot rebuild layer {node!r}: a module applied twice is not supported")
            modules[node] = build_layer(node, data)
            value = inputs[0]
            if layer_type in ("Linear", "Conv1D") and spatial_in:
                value = fx_graph.call_function(torch.flatten, (value, 1))
                spatial_in = False
            values[node] = fx_graph.call_module(node, (value,))
        elif kind == "op" and _function(layer_type) is not None:
            arity = 2 if layer_type in ("add", "mul") else 1
            if len(inputs) != arity:
                raise UsageError(f"cannot rebuild op {node!r} ({layer_type}): the graph gives it {len(inputs)} inputs")
            args = (inputs[0], 1) if layer_type == "flatten" else tuple(inputs)
            values[node] = fx_graph.call_function(_function(layer_type), args)
        else:
            raise UsageError(
                f"cannot rebuild layer {node!r} ({layer_type}): the graph does not record how to call it "
                "(its arguments or its code); slice around it, or check the weights out into your own module"
            )
        if layer_type in _SPATIAL:
            spatial[node] = True
        elif layer_type in ("Flatten", "flatten", "Linear", "Conv1D") or layer_type not in _ELEMENTWISE:
            spatial[node] = False
        else:
            spatial[node] = spatial_in
    fx_graph.output(values[exit])
    for node in idle:
        if g.nodes[node].get("kind") == "module" and g.nodes[node].get("params"):
            modules[node] = build_layer(node, g.nodes[node])
    root = torch.nn.Module()
    for path, m in modules.items():
        _attach(root, path, m)
    module = fx.GraphModule(root, fx_graph, class_name="RebuiltModel")
    for node in idle:  # layers the trace never called keep their weights (GraphModule drops them)
        if node in modules and not _has(module, node):
            _attach(module, node, modules[node])
    return module


def _has(root: Any, path: str) -> bool:
    try:
        root.get_submodule(path)
    except AttributeError:
        return False
    return True


def _attach(root: Any, path: str, module: Any) -> None:
    import torch

    *parents, leaf = path.split(".")
    owner = root
    for part in parents:
        if not hasattr(owner, part):
            owner.add_module(part, torch.nn.Module())
        owner = getattr(owner, part)
    owner.add_module(leaf, module)
