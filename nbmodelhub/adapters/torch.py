"""PyTorch in and out. torch is imported lazily: the package works without it."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nbmodelhub.errors import UsageError
from nbmodelhub.store.tensors import Tensor

_NAMES = {
    "float64": "float64",
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
}


def require_torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise UsageError("PyTorch is not installed: pip install 'nbmodelhub[torch]'") from exc
    return torch


def is_module(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_tensor_dict(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return (
        torch is not None
        and isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def to_tensor(value: Any, name: str) -> Tensor:
    torch = require_torch()
    dtype = str(value.dtype).removeprefix("torch.")
    if dtype not in _NAMES:
        raise UsageError(f"tensor {name!r} has dtype {value.dtype}, which cannot be stored: cast it first")
    t = value.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    if dtype == "bfloat16":
        return Tensor.of(t.view(torch.int16).numpy().view(np.uint16), "bfloat16")
    return Tensor.of(t.numpy(), dtype)


def _alias_key(t: Any) -> tuple[Any, ...]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), str(t.dtype))


def from_state_dict(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors plus ties (a name whose tensor is the same memory as an earlier name's: GPT-2's
    ``lm_head.weight`` is ``transformer.wte.weight``)."""
    torch = require_torch()
    tensors: dict[str, Tensor] = {}
    ties: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, value in state.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"tensor names must be non-empty strings, got {name!r}")
        if not isinstance(value, torch.Tensor):
            raise UsageError(f"{name!r} is a {type(value).__name__}, not a tensor")
        if value.numel():
            key = _alias_key(value)
            if key in seen:
                ties[name] = seen[key]
                continue
            seen[key] = name
        tensors[name] = to_tensor(value, name)
    return tensors, ties


def from_module(module: Any) -> tuple[dict[str, Tensor], dict[str, str]]:
    return from_state_dict(module.state_dict(keep_vars=False))


def read_pt(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """A ``.pt``/``.bin`` checkpoint, read with ``weights_only=True`` (never a full unpickle)."""
    torch = require_torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad or unsafe files
        # torch's message carries terminal escapes (bold) and advice to load unsafely: keep its first line, plain.
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise UsageError(f"cannot read {path} as a weights-only PyTorch checkpoint: {first}") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not is_tensor_dict(state):
        raise UsageError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return from_state_dict(state)


def to_torch(tensor: Tensor) -> Any:
    torch = require_torch()
    if tensor.dtype == "bfloat16":
        return torch.from_numpy(tensor.array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(tensor.array)
