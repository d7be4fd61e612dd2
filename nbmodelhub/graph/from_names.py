"""A layer graph from parameter names and shapes alone (state dict, safetensors, HF folder).

Without code there is no data flow: layers are parameter-name prefixes, groups come from the
dotted hierarchy, types are guessed from names and shapes, and ``source="names"`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .layer_graph import LayerGraph, natural_key, param_record, parent_path, to_jsonable

_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}  # fmt: skip

# HF config keys differ per model family; these are the common spellings of the same facts.
_CONFIG_ALIASES: dict[str, tuple[str, ...]] = {
    "model_type": ("model_type",),
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads"),
    "num_kv_heads": ("num_key_value_heads",),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers", "encoder_layers"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "d_ff"),
    "vocab_size": ("vocab_size",),
    "max_positions": ("max_position_embeddings", "n_positions", "n_ctx"),
    "architectures": ("architectures",),
}

_EMBED = re.compile(r"(embed|wte|wpe|tok_embeddings|shared|word_embeddings|embedding)", re.I)
_RNN = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")


def normalize_dtype(dtype: Any) -> str:
    text = str(dtype)
    return _SAFETENSORS_DTYPES.get(text, text.removeprefix("torch."))


def config_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, aliases in _CONFIG_ALIASES.items():
        for alias in aliases:
            if alias in config and config[alias] is not None:
                out[key] = to_jsonable(config[alias])
                break
    return out


def _guess(layer: str, params: Mapping[str, tuple[str, tuple[int, ...]]]) -> tuple[str, dict[str, Any]]:
    """(type, attrs) for a layer from its parameters' local names and shapes."""
    local = {name.rsplit(".", 1)[-1]: shape for name, (_, shape) in params.items()}
    weight = local.get("weight")
    leaf_name = layer.rsplit(".", 1)[-1]
    rnn = [k for k in local if _RNN.match(k)]
    if rnn and "weight_ih_l0" in local and "weight_hh_l0" in local:
        hidden = local["weight_hh_l0"][-1]
        gates = local["weight_ih_l0"][0] // hidden if hidden else 0
        kind = {4: "lstm", 3: "gru"}.get(gates, "rnn")
        layers = 1 + max(int(_RNN.match(k).group(3)) for k in rnn)  # type: ignore[union-attr]
        bidirectional = any(k.endswith("_reverse") for k in rnn)
        return kind, {
            "input_size": local["weight_ih_l0"][-1],
            "hidden_size": hidden,
            "num_layers": layers,
            "bidirectional": bidirectional,
        }
    if "running_mean" in local or "running_var" in local:
        return "batchnorm", {"num_features": (weight or local.get("running_mean") or [0])[0]}
    if weight is None:
        return "parameter", {}
    if len(weight) == 2 and _EMBED.search(leaf_name) and "bias" not in local:
        return "embedding", {"num_embeddings": weight[0], "embedding_dim": weight[1]}
    if len(weight) in (3, 4, 5):
        return f"conv{len(weight) - 2}d", {
            "out_channels": weight[0],
            "kernel_size": list(weight[2:]),
        }
    if len(weight) == 2:
        return "linear", {}
    if len(weight) == 1:
        # 1-D weights are normalisation scales (LayerNorm, RMSNorm, GroupNorm).
        return "norm", {"normalized_shape": list(weight)}
    return "parameter", {}


def graph_from_tensors(
    tensors: Mapping[str, tuple[str, tuple[int, ...]]],
    config: Mapping[str, Any] | None = None,
) -> LayerGraph:
    """A hierarchy-only layer graph from ``name → (dtype, shape)`` and an optional HF config dict."""
    names = sorted(tensors, key=natural_key)
    by_layer: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    for name in names:
        dtype, shape = tensors[name]
        by_layer.setdefault(parent_path(name), {})[name] = (normalize_dtype(dtype), tuple(shape))
    # A prefix that also has sub-layers (a ViT's "embeddings.cls_token" beside
    # "embeddings.patch.weight") is a group; its own tensors go to a holder node.
    prefixes = {p for layer in by_layer for p in _ancestors(layer)}

    g = LayerGraph("names")
    for layer in sorted(by_layer, key=natural_key):
        params = by_layer[layer]
        records = {n: param_record(shape, dtype) for n, (dtype, shape) in params.items()}
        if layer in prefixes or layer == "":
            node_id = f"{layer}:params" if layer else "params"
            g.add_layer(node_id, "Parameters", kind="params", group=layer, params=records)
        else:
            type_, attrs = _guess(layer, params)
            g.add_layer(layer, type_, kind="module", group=parent_path(layer), attrs=attrs, params=records)
    g.ensure_groups(default_type="module")

    summary: dict[str, Any] = {}
    if config:
        summary = config_summary(config)
        g.attrs["config"] = summary
        raw = to_jsonable(dict(config))
        if isinstance(raw, dict):
            g.attrs["hf_config"] = raw
    # Repeated blocks: a group whose children are all numbered is a ModuleList of blocks; when
    # the config says how many layers there are, those blocks get the per-block facts.
    per_block = ("hidden_size", "num_heads", "num_kv_heads", "intermediate_size")
    block_attrs = {k: summary[k] for k in per_block if k in summary}
    for info in g.groups.values():
        children = info["children"]
        if children and all(c.rsplit(".", 1)[-1].isdigit() for c in children):
            info["type"] = "list"
            if summary.get("num_layers") == len(children):
                info["attrs"]["blocks"] = len(children)
                for child in children:
                    if child in g.groups:
                        g.groups[child]["type"] = "block"
                        g.groups[child]["attrs"].update(block_attrs)
    if "" in g.groups and summary.get("architectures"):
        archs = summary["architectures"]
        if isinstance(archs, list) and archs:
            g.groups[""]["type"] = str(archs[0])
    return g


def _ancestors(path: str) -> list[str]:
    out = []
    while path:
        path = parent_path(path)
        out.append(path)
    return out
