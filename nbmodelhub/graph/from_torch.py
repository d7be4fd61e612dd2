"""Build a LayerGraph from a torch ``nn.Module``.

Tracers are tried from the cheapest and most faithful to the most forgiving:

1. ``torch.fx`` symbolic tracing — needs no input; fails on data-dependent Python control flow
   (every Hugging Face model in transformers 5.x, which no longer ships its own fx tracer).
2. ``torch.export`` (non-strict) — needs an example input; Hugging Face models get one from
   ``dummy_inputs`` so ``graph_from_module(model)`` works on them without arguments.
3. forward hooks plus a ``TorchFunctionMode`` — runs the model once on the example input and
   follows tensors through modules and functional calls; works on almost anything that runs.
4. the module tree alone (``source="modules"``): leaf modules as layers, no data-flow edges, and
   ``attrs["trace_errors"]`` says why tracing failed.

Every tracer produces the same intermediate form (``_Raw`` nodes in execution order), so leaf
modules, functional operations and parameter ownership are decided in one place and graphs from
different tracers of the same model look alike.

torch is imported lazily: the graph package must import with numpy and networkx alone.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .layer_graph import LayerGraph, param_record, parent_path, to_jsonable

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Functional operations worth showing as layers: they merge branches (residuals, attention) or
# change what the data means. Everything else between layers (views, transposes, casts, getitem,
# dropout calls made functionally, …) is folded: edges pass straight through it.
KEPT_OPS = frozenset(
    {
        "add", "sub", "mul", "div", "matmul", "bmm", "mm", "baddbmm", "addmm", "einsum",
        "softmax", "log_softmax", "_softmax", "scaled_dot_product_attention",
        "cat", "concat", "concatenate", "stack",
        "mean", "sum", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
        "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
        "relu", "gelu", "silu", "sigmoid", "tanh", "elu", "leaky_relu", "hardtanh",
        "linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "layer_norm", "batch_norm",
        "group_norm", "rms_norm", "embedding", "lstm", "gru", "interpolate", "upsample_nearest2d",
        "upsample_bilinear2d", "where",
    }
)  # fmt: skip

# Attributes that record a module's position rather than its architecture; keeping them would
# make every renumbered block look "changed" in a diff.
POSITIONAL_ATTRS = frozenset(
    {"training", "layer_idx", "layer_id", "layer_index", "layer_number", "block_idx", "idx", "index"}
)

_OVERLOAD = re.compile(r"\.(default|Tensor|Scalar|int|dim|dtype_layout|using_ints|self|other|out)$")


def normalize_op(target: Any) -> str:
    """``aten.add.Tensor`` / ``operator.iadd`` / ``torch.add`` / ``"add_"`` → ``"add"``."""
    if isinstance(target, str):
        name = target
    else:
        name = getattr(target, "__name__", None) or str(target)
        op_name = getattr(target, "_opname", None)  # torch._ops.OpOverload / OpOverloadPacket
        if isinstance(op_name, str):
            name = op_name
    name = _OVERLOAD.sub("", name)
    name = name.rsplit(".", 1)[-1]
    name = name.strip("_") if name.startswith("__") else name
    if name.startswith("i") and name[1:] in {"add", "sub", "mul", "truediv", "matmul"}:
        name = name[1:]
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return {"truediv": "div", "floordiv": "div", "true_divide": "div", "concat": "cat"}.get(name, name)


@dataclass
class _Raw:
    """One step of a trace, before leaf calls are merged and pass-through ops folded."""

    name: str
    kind: str  # "input" | "module" | "op" | "pass" | "param" | "output"
    path: str = ""  # module: the leaf's path; op/pass: the innermost module around it
    op: str = ""
    call: int = 0
    inputs: list[str] = field(default_factory=list)
    param: str = ""  # kind "param": state-dict name


class _Untraceable(Exception):
    pass


# -- module structure ---------------------------------------------------------------------


def _is_container(m: torch.nn.Module) -> bool:
    import torch.nn as nn

    return isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict))


def _is_leaf(m: torch.nn.Module) -> bool:
    # torch's own modules (LSTM, MultiheadAttention) are leaves even with children: users think
    # of them as one layer and their parameters are addressed through them.
    if next(iter(m.children()), None) is None:
        return True
    return type(m).__module__.startswith("torch.nn.") and not _is_container(m)


def _leaf_paths(root: torch.nn.Module) -> dict[str, torch.nn.Module]:
    leaves: dict[str, torch.nn.Module] = {}

    def walk(path: str, m: torch.nn.Module) -> None:
        for name, child in m.named_children():
            child_path = f"{path}.{name}" if path else name
            if _is_leaf(child):
                leaves.setdefault(child_path, child)
            else:
                walk(child_path, child)

    if _is_leaf(root):
        leaves[""] = root
    else:
        walk("", root)
    return leaves


def _module_attrs(m: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key, value in sorted(vars(m).items()):
        if key.startswith("_") or key in POSITIONAL_ATTRS:
            continue
        jv = to_jsonable(value, max_items=16)
        if jv is None and value is not None:
            continue
        if isinstance(jv, str) and len(jv) > 200:
            continue
        attrs[key] = jv
    return attrs


def _qualname(m: Any) -> str:
    cls = type(m)
    return f"{cls.__module__}.{cls.__qualname__}"


def _param_records(root: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """state-dict name → record; a tied alias points at the first name holding the same tensor."""
    sd = root.state_dict(keep_vars=True)
    buffer_names = {n for n, _ in root.named_buffers(remove_duplicate=False)}
    first_owner: dict[int, str] = {}
    records: dict[str, dict[str, Any]] = {}
    for name, tensor in sd.items():
        try:
            shape = list(tensor.shape)
            dtype = str(tensor.dtype).removeprefix("torch.")
        except Exception:
            shape, dtype = [], "uninitialized"
        tied_to = None
        key = id(tensor)
        if key in first_owner:
            tied_to = first_owner[key]
        else:
            first_owner[key] = name
        records[name] = param_record(shape, dtype, buffer=name in buffer_names, tied_to=tied_to)
    return records


def _owner(name: str, leaves: Mapping[str, Any]) -> str | None:
    """The leaf path owning state-dict entry ``name``, or None for a non-leaf's direct parameter."""
    if "" in leaves:
        return ""
    path = parent_path(name)
    while path:
        if path in leaves:
            return path
        path = parent_path(path)
    return None


# -- tracers ------------------------------------------------------------------------------


def _innermost(stack: Mapping[str, Any] | None) -> tuple[str, str]:
    """(path, key) of the innermost module in an nn_module_stack entry."""
    if not stack:
        return "", ""
    key, value = list(stack.items())[-1]
    path = value[0] if isinstance(value, tuple) else str(value)
    return _clean_path(path), str(key)


def _clean_path(path: str) -> str:
    # fx/export sometimes spell paths like "L['self'].transformer.h[0]" or "self.h.0".
    path = re.sub(r"^L\['self'\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    return path.removeprefix("self.").strip(".")


def _outer_leaf(stack: Mapping[str, Any] | None, leaves: Mapping[str, Any]) -> tuple[str, str] | None:
    if not stack:
        return None
    for key, value in stack.items():
        path = _clean_path(value[0] if isinstance(value, tuple) else str(value))
        if path in leaves and path != "":
            return path, str(key)
    return None


def _trace_fx(root: torch.nn.Module, leaves: Mapping[str, Any], sd_names: set[str]) -> list[_Raw]:
    import torch.fx

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, module_qualified_name: str) -> bool:
            return module_qualified_name in leaves

    graph = Tracer().trace(root)
    raw: list[_Raw] = []
    calls: dict[str, int] = {}
    for n in graph.nodes:
        inputs = [a.name for a in n.all_input_nodes]
        if n.op == "placeholder":
            raw.append(_Raw(n.name, "input"))
        elif n.op == "get_attr":
            target = str(n.target)
            kind = "param" if target in sd_names else "pass"
            raw.append(_Raw(n.name, kind, path=parent_path(target), param=target))
        elif n.op == "call_module":
            path = str(n.target)
            k = calls.get(path, 0)
            calls[path] = k + 1
            raw.append(_Raw(n.name, "module", path=path, call=k, inputs=inputs))
        elif n.op in ("call_function", "call_method"):
            op = normalize_op(n.target)
            group, _ = _innermost(n.meta.get("nn_module_stack"))
            kind = "op" if op in KEPT_OPS else "pass"
            raw.append(_Raw(n.name, kind, path=group, op=op, inputs=inputs))
        elif n.op == "output":
            raw.append(_Raw(n.name, "output", inputs=inputs))
    return raw


def _split_input(example_input: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    import torch

    if example_input is None:
        return (), {}
    if isinstance(example_input, torch.Tensor):
        return (example_input,), {}
    if isinstance(example_input, Mapping):
        return (), dict(example_input)
    if isinstance(example_input, (tuple, list)):
        return tuple(example_input), {}
    return (example_input,), {}


def _hf_inputs(root: torch.nn.Module, example_input: Any) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Example inputs, completed for Hugging Face models (dummy inputs, no KV cache)."""
    args, kwargs = _split_input(example_input)
    if not args and not kwargs:
        dummy = None
        try:
            dummy = getattr(root, "dummy_inputs", None)
        except Exception:
            dummy = None
        if isinstance(dummy, Mapping) and dummy:
            kwargs = dict(dummy)
        else:
            return None
    try:
        params = inspect.signature(root.forward).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    # A KV cache object in the output is not a pytree torch.export knows, and it is not
    # architecture anyway.
    if "use_cache" in params and "use_cache" not in kwargs:
        kwargs["use_cache"] = False
    return args, kwargs


def _trace_export(
    root: torch.nn.Module, leaves: Mapping[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[_Raw]:
    import torch

    ep = torch.export.export(root, args, kwargs, strict=False)
    sig = ep.graph_signature
    to_param = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    user_inputs = set(sig.user_inputs)
    raw: list[_Raw] = []
    alias: dict[str, str] = {}  # aten node inside a leaf call → that call's raw node
    calls: dict[str, _Raw] = {}
    call_count: dict[str, int] = {}
    for n in ep.graph.nodes:
        inputs = [alias.get(a.name, a.name) for a in n.all_input_nodes]
        if n.op == "placeholder":
            if n.name in to_param:
                raw.append(_Raw(n.name, "param", param=to_param[n.name]))
            elif n.name in user_inputs:
                raw.append(_Raw(n.name, "input"))
            else:
                raw.append(_Raw(n.name, "pass"))
        elif n.op == "call_function":
            stack = n.meta.get("nn_module_stack")
            leaf = _outer_leaf(stack, leaves)
            if leaf is not None:
                path, key = leaf
                call = calls.get(key)
                if call is None:
                    k = call_count.get(path, 0)
                    call_count[path] = k + 1
                    call = _Raw(f"call:{key}", "module", path=path, call=k)
                    calls[key] = call
                    raw.append(call)
                for i in inputs:
                    if i != call.name and i not in call.inputs:
                        call.inputs.append(i)
                alias[n.name] = call.name
                continue
            op = normalize_op(n.target)
            group, _ = _innermost(stack)
            kind = "op" if op in KEPT_OPS else "pass"
            raw.append(_Raw(n.name, kind, path=group, op=op, inputs=inputs))
        elif n.op == "output":
            raw.append(_Raw(n.name, "output", inputs=inputs))
    return raw


def _trace_hooks(
    root: torch.nn.Module, leaves: Mapping[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[_Raw]:
    import torch
    from torch.overrides import TorchFunctionMode

    raw: list[_Raw] = []
    producer: dict[int, str] = {}  # id(tensor) → raw node name
    keep_alive: list[Any] = []  # ids are only unique while the tensors live
    param_names = {id(t): n for n, t in root.state_dict(keep_vars=True).items()}
    module_path = {id(m): p for p, m in root.named_modules()}
    stack: list[str] = []
    leaf_depth = [0]
    calls: dict[str, int] = {}
    counter = [0]

    def tensors(obj: Any) -> list[Any]:
        out: list[Any] = []

        def visit(o: Any) -> None:
            if isinstance(o, torch.Tensor):
                out.append(o)
            elif isinstance(o, (list, tuple)):
                for x in o:
                    visit(x)
            elif isinstance(o, Mapping):
                for x in o.values():
                    visit(x)
            elif hasattr(o, "to_tuple"):  # transformers ModelOutput
                visit(o.to_tuple())

        visit(obj)
        return out

    def sources(obj: Any) -> list[str]:
        names: list[str] = []
        for t in tensors(obj):
            name = producer.get(id(t))
            if name is None and id(t) in param_names:
                name = f"param:{param_names[id(t)]}"
                raw.append(_Raw(name, "param", param=param_names[id(t)]))
                producer[id(t)] = name
            if name is not None and name not in names:
                names.append(name)
        return names

    def produce(obj: Any, name: str) -> None:
        for t in tensors(obj):
            producer[id(t)] = name
            keep_alive.append(t)

    pending: dict[int, list[_Raw]] = {}

    def pre_hook(m: torch.nn.Module, a: Any, kw: Any) -> None:
        path = module_path.get(id(m), "")
        stack.append(path)
        if path in leaves and path != "" and leaf_depth[0] == 0:
            k = calls.get(path, 0)
            calls[path] = k + 1
            node = _Raw(f"call:{path}@{k}", "module", path=path, call=k, inputs=sources((a, kw)))
            raw.append(node)
            pending.setdefault(id(m), []).append(node)
            leaf_depth[0] += 1
        elif leaf_depth[0]:
            leaf_depth[0] += 1

    def post_hook(m: torch.nn.Module, a: Any, kw: Any, out: Any) -> None:
        stack.pop()
        if leaf_depth[0]:
            leaf_depth[0] -= 1
            if leaf_depth[0] == 0:
                node = pending[id(m)].pop()
                produce(out, node.name)

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, a: Any = (), kw: Any = None) -> Any:
            kw = kw or {}
            out = func(*a, **kw)
            if leaf_depth[0] == 0:
                op = normalize_op(func)
                srcs = sources((a, kw))
                if tensors(out) and srcs:
                    counter[0] += 1
                    name = f"fn:{counter[0]}"
                    kind = "op" if op in KEPT_OPS else "pass"
                    raw.append(_Raw(name, kind, path=stack[-1] if stack else "", op=op, inputs=srcs))
                    produce(out, name)
            return out

    handles = []
    for m in root.modules():
        handles.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(m.register_forward_hook(post_hook, with_kwargs=True))
    try:
        for i, t in enumerate(tensors((args, kwargs))):
            name = f"input:{i}"
            raw.append(_Raw(name, "input"))
            producer[id(t)] = name
            keep_alive.append(t)
        with torch.no_grad(), Mode():
            out = root(*args, **kwargs)
        raw.append(_Raw("output", "output", inputs=sources(out)))
    finally:
        for h in handles:
            h.remove()
    return raw


# -- building -----------------------------------------------------------------------------


def _build(
    root: torch.nn.Module,
    raw: list[_Raw],
    source: str,
    leaves: Mapping[str, torch.nn.Module],
    records: Mapping[str, dict[str, Any]],
) -> LayerGraph:
    by_name = {r.name: r for r in raw}
    # Keep only operations on the path of the data: mask and position-id arithmetic built from
    # constants (arange, ones, …) is bookkeeping, not architecture.
    reach: set[str] = set()
    for r in raw:
        if r.kind in ("input", "module") or any(i in reach for i in r.inputs):
            reach.add(r.name)
    # ... and that lead somewhere: a condition's ``x.sum() > 0`` is control, not data flow.
    useful: set[str] = set()
    for r in reversed(raw):
        if r.kind in ("output", "module") or r.name in useful:
            useful.add(r.name)
            useful.update(r.inputs)
    reach &= useful

    g = LayerGraph(source)
    node_of: dict[str, str] = {}  # raw name → layer id
    first_call: dict[str, str] = {}
    op_counts: dict[tuple[str, str], int] = {}
    owned_params: dict[str, set[str]] = {}

    def unique(candidate: str) -> str:
        node_id, k = candidate, 1
        while node_id in g.graph or node_id in leaves:
            node_id = f"{candidate}~{k}"
            k += 1
        return node_id

    for r in raw:
        if r.kind == "module":
            m = leaves[r.path]
            if r.call == 0:
                node_id = r.path if r.path else "self"
                params = {n: rec for n, rec in records.items() if _owner(n, leaves) == r.path}
                attrs = _module_attrs(m)
                first_call[r.path] = node_id
            else:
                # A module applied twice (a shared ReLU, weight sharing across steps) is two
                # layers in the data flow; its parameters stay with the first so counts hold.
                node_id = f"{r.path}@{r.call}"
                params = {}
                attrs = {**_module_attrs(m), "call": r.call, "shares_params_with": first_call[r.path]}
            g.add_layer(
                node_id,
                type(m).__name__,
                kind="module",
                group=parent_path(r.path) if r.path else "",
                attrs=attrs,
                params=params,
                module_type=_qualname(m),
            )
            node_of[r.name] = node_id
        elif r.kind == "op" and r.name in reach:
            key = (r.path, r.op)
            k = op_counts.get(key, 0)
            op_counts[key] = k + 1
            local = r.op if k == 0 else f"{r.op}_{k}"
            node_id = unique(f"{r.path}:{local}" if r.path else local)
            g.add_layer(node_id, r.op, kind="op", group=r.path)
            node_of[r.name] = node_id

    # Data-flow edges: walk back from each layer's inputs through folded steps.
    memo: dict[str, tuple[set[str], set[str]]] = {}

    def producers(name: str) -> tuple[set[str], set[str]]:
        """(layer ids, parameter names) that feed raw node ``name``."""
        if name in memo:
            return memo[name]
        memo[name] = (set(), set())  # cycles cannot occur in a trace, but be safe
        r = by_name.get(name)
        layers: set[str] = set()
        params: set[str] = set()
        if r is None or r.kind in ("input", "output"):
            pass
        elif r.name in node_of:
            layers.add(node_of[r.name])
        elif r.kind == "param":
            params.add(r.param)
        else:
            for i in r.inputs:
                sub_layers, sub_params = producers(i)
                layers |= sub_layers
                params |= sub_params
        memo[name] = (layers, params)
        return layers, params

    order = {n: i for i, n in enumerate(g.graph.nodes)}
    for r in raw:
        target = node_of.get(r.name)
        if target is None:
            continue
        for i in r.inputs:
            feeding, used = producers(i)
            for s in sorted(feeding, key=order.__getitem__):
                g.add_edge(s, target)
            if r.kind == "op":
                owned_params.setdefault(target, set()).update(used)

    # Direct parameters of non-leaf modules (a ViT's cls_token) belong to the operations that
    # use them; any left unused get a holder node so the graph still lists every state-dict entry.
    placed: set[str] = set()
    for _, d in g.graph.nodes(data=True):
        placed.update(d["params"])
    for node_id in list(g.graph.nodes):
        for name in sorted(owned_params.get(node_id, ())):
            if name in records and name not in placed and _owner(name, leaves) is None:
                g.graph.nodes[node_id]["params"][name] = dict(records[name])
                placed.add(name)
    for path, m in leaves.items():
        if path not in first_call:  # never called in the trace: still a layer, without edges
            node_id = path if path else "self"
            params = {n: rec for n, rec in records.items() if _owner(n, leaves) == path}
            g.add_layer(
                node_id,
                type(m).__name__,
                kind="module",
                group=parent_path(path) if path else "",
                attrs=_module_attrs(m),
                params=params,
                module_type=_qualname(m),
            )
            placed.update(params)
    holders: dict[str, dict[str, dict[str, Any]]] = {}
    for name, rec in records.items():
        if name not in placed:
            holders.setdefault(parent_path(name), {})[name] = dict(rec)
    for path, params in holders.items():
        node_id = unique(f"{path}:params" if path else "params")
        g.add_layer(node_id, "Parameters", kind="params", group=path, params=params)

    _add_groups(g, root, leaves)
    return g


def _add_groups(g: LayerGraph, root: torch.nn.Module, leaves: Mapping[str, Any]) -> None:
    def walk(path: str, m: torch.nn.Module) -> None:
        children = []
        for name, child in m.named_children():
            child_path = f"{path}.{name}" if path else name
            children.append(child_path)
            if child_path not in leaves:
                walk(child_path, child)
        g.add_group(path, type(m).__name__, children=children, attrs=_module_attrs(m))

    if "" in leaves:
        g.add_group("", type(root).__name__)
    else:
        walk("", root)
    g.ensure_groups()


def graph_from_module(
    module: torch.nn.Module,
    example_input: Any = None,
    *,
    tracers: Iterable[str] = ("fx", "export", "hooks"),
) -> LayerGraph:
    """The layer graph of ``module``.

    ``example_input`` is a tensor, a tuple of positional arguments or a dict of keyword
    arguments; it is needed by the ``export`` and ``hooks`` tracers (Hugging Face models supply
    their own dummy inputs). The model is traced in eval mode and its mode restored afterwards.
    """
    leaves = _leaf_paths(module)
    records = _param_records(module)
    errors: dict[str, str] = {}
    was_training = module.training
    module.eval()
    try:
        for tracer in tracers:
            try:
                if tracer == "fx":
                    raw = _trace_fx(module, leaves, set(records))
                elif tracer in ("export", "hooks"):
                    inputs = _hf_inputs(module, example_input)
                    if inputs is None:
                        raise _Untraceable("needs an example input")
                    if tracer == "export":
                        raw = _trace_export(module, leaves, *inputs)
                    else:
                        raw = _trace_hooks(module, leaves, *inputs)
                else:
                    raise ValueError(f"unknown tracer {tracer!r}")
            except ValueError as exc:
                if str(exc).startswith("unknown tracer"):
                    raise
                errors[tracer] = _one_line(exc)
                continue
            except Exception as exc:
                errors[tracer] = _one_line(exc)
                continue
            g = _build(module, raw, tracer, leaves, records)
            if errors:
                g.attrs["trace_errors"] = errors
            g.attrs["model_type"] = type(module).__name__
            return g
    finally:
        module.train(was_training)

    # Nothing traced: the module tree still gives layers, parameters and hierarchy.
    g = _build(module, [], "modules", leaves, records)
    g.attrs["trace_errors"] = errors
    g.attrs["model_type"] = type(module).__name__
    return g


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]


def tensor_fingerprints(module_or_state_dict: Any) -> dict[str, str]:
    """state-dict name → content hash, for ``match_graphs`` to tell identical-looking blocks apart.

    Any hash works as long as both sides of a match use the same one; the store's own content
    hashes are just as good.
    """
    import hashlib

    import torch

    sd = (
        module_or_state_dict.state_dict() if isinstance(module_or_state_dict, torch.nn.Module) else module_or_state_dict
    )
    out: dict[str, str] = {}
    for name, t in sd.items():
        t = t.detach().cpu().contiguous()
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        out[name] = h.hexdigest()
    return out
