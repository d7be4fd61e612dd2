"""Build a LayerGraph from an ONNX model, and read its initializers as numpy arrays.

ONNX nodes are already layers with explicit data flow, so each node becomes a layer (op_type as
type) and each tensor producer→consumer pair an edge. The module hierarchy is recovered from what
torch's exporters leave behind: the dynamo exporter's ``namespace`` metadata, or the TorchScript
exporter's scoped node names (``/layer1/layer1.0/conv1/Conv``).

onnx is imported lazily; nothing is ever unpickled (initializers are decoded by
``onnx.numpy_helper``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .layer_graph import LayerGraph, param_record, to_jsonable

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import onnx

# Nodes that only materialise constants; their outputs are not data flow between layers.
_SKIPPED_OPS = frozenset({"Constant"})


def _load(path_or_model: Any, *, load_data: bool) -> onnx.ModelProto:
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(path_or_model))
    else:
        model = onnx.load(os.fspath(path_or_model), load_external_data=load_data)
    _check_text(model)
    return model


def _check_text(message: Any) -> None:
    """Refuse a model whose string fields are not UTF-8: protobuf then hands back bytes (an op type, a tensor
    name), which would end up as a layer name or tensor name that JSON cannot store."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        # protobuf 6 has is_repeated; older releases only label
        repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
        if field.type == FieldDescriptor.TYPE_STRING:
            if any(isinstance(v, bytes) for v in (value if repeated else [value])):
                raise ValueError(f"its {field.name} field is not valid UTF-8 text")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for sub in value if repeated else [value]:
                if hasattr(sub, "ListFields"):  # a map field iterates over its keys, not messages
                    _check_text(sub)


def _attr_value(attr: Any) -> Any:
    import onnx
    from onnx import helper

    if attr.type == onnx.AttributeProto.TENSOR:
        return _tensor_summary(attr.t)
    if attr.type == onnx.AttributeProto.GRAPH:
        return {"graph": attr.g.name, "nodes": len(attr.g.node)}
    if attr.type == onnx.AttributeProto.GRAPHS:
        return [{"graph": sub.name, "nodes": len(sub.node)} for sub in attr.graphs]
    if attr.type == onnx.AttributeProto.TENSORS:
        return [_tensor_summary(t) for t in attr.tensors]
    value = helper.get_attribute_value(attr)
    if isinstance(value, list):
        value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
    elif isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return to_jsonable(value, max_items=1024)


def _tensor_summary(t: Any) -> dict[str, Any]:
    from onnx import helper, numpy_helper

    out: dict[str, Any] = {
        "dtype": str(helper.tensor_dtype_to_np_dtype(t.data_type)),
        "shape": [int(d) for d in t.dims],
    }
    count = 1
    for d in t.dims:
        count *= int(d)
    if count <= 16 and t.data_location != 1:  # small constants are architecture (axes, scales)
        out["value"] = to_jsonable(numpy_helper.to_array(t).tolist())
    return out


def _dtype_name(elem_type: int) -> str:
    from onnx import helper

    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError):
        return f"onnx:{elem_type}"


def _scope_from_namespace(namespace: str) -> tuple[str, dict[str, str]]:
    """Module path and {path: class name} from the dynamo exporter's ``namespace`` metadata."""
    segments = [s for s in namespace.split("/") if s]
    path = ""
    types: dict[str, str] = {}
    for seg in segments[1:-1]:  # the first is the root module, the last the aten op
        name, _, cls = seg.partition(": ")
        name = name.strip()
        if not name:
            continue
        path = name if (not path or name.startswith(path + ".")) else f"{path}.{name}"
        types[path] = cls.rsplit(".", 1)[-1].strip()
    if segments:
        _, _, root_cls = segments[0].partition(": ")
        types[""] = root_cls.rsplit(".", 1)[-1].strip()
    return path, types


def _scope_from_name(name: str) -> str:
    """Module path from a TorchScript-exporter node name like ``/layer1/layer1.0/conv1/Conv``."""
    if not name.startswith("/"):
        return ""
    path = ""
    for seg in name.strip("/").split("/")[:-1]:
        path = seg if (not path or seg.startswith(path + ".")) else f"{path}.{seg}"
    return path


def graph_from_onnx(path_or_model: Any) -> LayerGraph:
    """The layer graph of an ONNX model (a path, serialized bytes or a ``ModelProto``)."""
    import onnx

    model = _load(path_or_model, load_data=False)
    graph = model.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
        value_infos = list(inferred.value_info) + list(inferred.output) + list(inferred.input)
    except Exception:
        value_infos = []
    shapes: dict[str, list[Any]] = {}
    for vi in value_infos:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in vi.type.tensor_type.shape.dim
            ]

    initializers = {init.name: init for init in graph.initializer}
    g = LayerGraph("onnx")
    g.attrs.update(
        {
            "opset": {op.domain or "ai.onnx": int(op.version) for op in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
            "ir_version": int(model.ir_version),
            "inputs": [i.name for i in graph.input if i.name not in initializers],
            "outputs": [o.name for o in graph.output],
        }
    )
    producer: dict[str, str] = {}
    group_types: dict[str, str] = {}
    placed: set[str] = set()
    used_ids: set[str] = set()
    for index, node in enumerate(graph.node):
        if node.op_type in _SKIPPED_OPS:
            continue
        node_id = node.name or f"{node.op_type}_{index}"
        if node_id in used_ids:
            node_id = f"{node_id}~{index}"
        used_ids.add(node_id)
        meta = {p.key: p.value for p in node.metadata_props}
        if "namespace" in meta:
            group, types = _scope_from_namespace(meta["namespace"])
            for k, v in types.items():
                group_types.setdefault(k, v)
        else:
            group = _scope_from_name(node.name)
        attrs = {a.name: _attr_value(a) for a in node.attribute}
        if node.domain:
            attrs["domain"] = node.domain
        params = {}
        for inp in node.input:
            # A shared initializer is listed once, under its first consumer, so counts hold.
            if inp in initializers and inp not in placed:
                init = initializers[inp]
                params[inp] = param_record(init.dims, _dtype_name(init.data_type))
                placed.add(inp)
        g.add_layer(node_id, node.op_type, kind="op", group=group, attrs=attrs, params=params)
        for inp in node.input:
            src = producer.get(inp)
            if src is not None:
                edge: dict[str, Any] = {"tensor": inp}
                if inp in shapes:
                    edge["shape"] = shapes[inp]
                g.add_edge(src, node_id, **edge)
        for out in node.output:
            if out:
                producer[out] = node_id
    leftover = {n: i for n, i in initializers.items() if n not in placed}
    if leftover:
        g.add_layer(
            "params",
            "Parameters",
            kind="params",
            params={n: param_record(i.dims, _dtype_name(i.data_type)) for n, i in leftover.items()},
        )
    for path, cls in group_types.items():
        g.add_group(path, cls)
    g.ensure_groups()
    return g


def onnx_initializers(path_or_model: Any) -> dict[str, np.ndarray]:
    """Initializer name → numpy array (external data is loaded from beside the model file)."""
    from onnx import numpy_helper

    model = _load(path_or_model, load_data=True)
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
