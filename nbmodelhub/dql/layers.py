"""Layers in DQL: path patterns (``conv[1,3,5]``, ``h.*($1).attn``) and type names (``POOL("MAX")``).

A pattern matches whole layer ids of the stored layer graph (module paths such as ``features.3``
or ``transformer.h.0.attn.c_attn``; functional ops read ``<group>:<op>``):

- ``*`` matches within one path segment, ``**`` across segments, ``?`` one character;
- ``[1,3,5]`` and ``[2-4]`` are sets of whole numbers (``[1,3-5]`` mixes both);
- ``($1)`` right after a wildcard or a number set captures what it matched as ``$1`` (``$2``, …),
  which a construct's new layer names may use: ``RELU("relu$1")``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbmodelhub.errors import UsageError

# DQL type name → (layer types it covers, variant → layer types). Layer types are the stored
# graph's ``type`` (a torch class name or a functional op name). Anything not listed here is
# matched by its own type name, case-insensitively (``Conv1D``, ``NewGELUActivation``).
TYPES: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] = {}


def _type(name: str, *members: str, **variants: tuple[str, ...]) -> None:
    covered = set(members)
    for v in variants.values():
        covered |= set(v)
    TYPES[name] = (frozenset(covered), {k.upper(): frozenset(v) for k, v in variants.items()})


_type(
    "CONV",
    D1=("Conv1d", "conv1d", "Conv1D"),
    D2=("Conv2d", "conv2d"),
    D3=("Conv3d", "conv3d"),
    TRANSPOSED=("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "conv_transpose2d"),
)
_type(
    "POOL",
    MAX=("MaxPool1d", "MaxPool2d", "MaxPool3d", "max_pool1d", "max_pool2d", "max_pool3d", "AdaptiveMaxPool1d",
         "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "adaptive_max_pool2d"),
    AVG=("AvgPool1d", "AvgPool2d", "AvgPool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "AdaptiveAvgPool1d",
         "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d"),
)  # fmt: skip
_type("RELU", "ReLU", "relu", "ReLU6")
_type("GELU", "GELU", "gelu", "NewGELUActivation", "GELUActivation", "FastGELUActivation", "QuickGELUActivation")
_type("SIGMOID", "Sigmoid", "sigmoid")
_type("TANH", "Tanh", "tanh")
_type("SOFTMAX", "Softmax", "softmax", "LogSoftmax", "log_softmax", "_softmax")
_type(
    "ACT",
    *TYPES["RELU"][0], *TYPES["GELU"][0], *TYPES["SIGMOID"][0], *TYPES["TANH"][0],
    "SiLU", "silu", "ELU", "elu", "LeakyReLU", "leaky_relu", "Hardtanh", "hardtanh", "Mish", "PReLU",
)  # fmt: skip
_type("LINEAR", "Linear", "linear", "LazyLinear", "Bilinear", "Conv1D", "addmm")
_type(
    "NORM",
    BATCH=("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "batch_norm"),
    LAYER=("LayerNorm", "layer_norm"),
    GROUP=("GroupNorm", "group_norm"),
    RMS=("RMSNorm", "rms_norm", "LlamaRMSNorm"),
    INSTANCE=("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"),
)
_type("ATTENTION", "MultiheadAttention", "scaled_dot_product_attention")
_type("EMBEDDING", "Embedding", "embedding", "EmbeddingBag")
_type("DROPOUT", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout")
_type("FLATTEN", "Flatten", "flatten")
_type("RNN", "RNN", "LSTM", "GRU", "lstm", "gru")
_type("ADD", "add")
_type("MUL", "mul")
_type("CONCAT", "cat", "stack")
_type("MATMUL", "matmul", "bmm", "mm", "einsum", "baddbmm")
_type("IDENTITY", "Identity")


def type_matches(spec_type: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Does a stored layer (its graph node data) satisfy ``TYPE(args, key=value)``?"""
    layer_type = str(node.get("type", ""))
    name = spec_type.upper()
    if name in TYPES:
        covered, variants = TYPES[name]
        if layer_type not in covered:
            return False
        for arg in args:
            key = str(arg).upper()
            if key not in variants:
                known = ", ".join(sorted(variants)) or "none"
                raise UsageError(f'{spec_type}("{arg}"): unknown kind; {spec_type} kinds are {known}')
            if layer_type not in variants[key]:
                return False
    elif layer_type.lower() != spec_type.lower():
        return False
    elif args:
        raise UsageError(f"{spec_type}(...) takes attributes as key=value, not {args[0]!r}")
    attrs = node.get("attrs") or {}
    return all(_attr_equal(attrs.get(k), v) for k, v in kwargs.items())


def _attr_equal(stored: Any, wanted: Any) -> bool:
    # kernel_size=3 should match a stored [3, 3]: torch expands scalars per dimension.
    if isinstance(stored, list) and not isinstance(wanted, list):
        return bool(stored) and all(x == wanted for x in stored)
    if isinstance(stored, str) and isinstance(wanted, str):
        return stored.lower() == wanted.lower()
    return bool(stored == wanted)


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern[str]
    captures: tuple[str, ...]  # "$1", "$2" in the order they appear


_NUMBERS = re.compile(r"\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*")


@functools.lru_cache(maxsize=512)
def compile_pattern(text: str) -> Pattern:
    out: list[str] = []
    captures: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "*":
            if text.startswith("**", i):
                out.append("(.*?)")
                i += 2
            else:
                out.append("([^.]*?)")
                i += 1
        elif c == "?":
            out.append("([^.])")
            i += 1
        elif c == "[":
            end = text.find("]", i)
            body = text[i + 1 : end] if end > 0 else ""
            if end < 0 or not _NUMBERS.fullmatch(body.replace(" ", "")):
                raise UsageError(
                    f'layer pattern "{text}": a [...] set holds whole numbers and ranges, as in [1,3,5] or [2-4]'
                )
            numbers: list[str] = []
            for part in body.replace(" ", "").split(","):
                lo, _, hi = part.partition("-")
                numbers += [str(n) for n in range(int(lo), int(hi or lo) + 1)]
            out.append("(" + "|".join(sorted(set(numbers), key=len, reverse=True)) + ")")
            i = end + 1
        elif c == "(" and re.match(r"\(\$\d+\)", text[i:]):
            close = text.index(")", i)
            label = text[i + 1 : close]
            if not out or not out[-1].startswith("(") or out[-1].startswith("(?P"):
                raise UsageError(f'layer pattern "{text}": ({label}) must follow a *, ? or [...] to capture it')
            if label in captures:
                raise UsageError(f'layer pattern "{text}": {label} is captured twice')
            captures.append(label)
            out[-1] = f"(?P<c{label[1:]}>" + out[-1][1:]
            i = close + 1
        else:
            out.append(re.escape(c))
            i += 1
    return Pattern(text, re.compile("".join(out) + r"\Z"), tuple(captures))


def match_layers(pattern: Pattern, layer_ids: list[str]) -> list[tuple[str, dict[str, str]]]:
    """The layers a pattern names, in graph order, each with what its captures matched."""
    hits = []
    for layer in layer_ids:
        m = pattern.regex.match(layer)
        if m:
            hits.append((layer, {label: m.group(f"c{label[1:]}") for label in pattern.captures}))
    return hits


def fill_captures(text: str, bindings: Mapping[str, str]) -> str:
    """``"relu$1"`` with ``$1 = "3"`` → ``"relu3"``."""

    def sub(m: re.Match[str]) -> str:
        label = m.group(0)
        if label not in bindings:
            raise UsageError(f'"{text}" uses {label}, but no layer pattern of the query captures it')
        return bindings[label]

    return re.sub(r"\$\d+", sub, text)
