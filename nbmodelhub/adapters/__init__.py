"""Adapters turn what users hold (a module, a state dict, a checkpoint file) into tensors, and back.

They never touch zarr: the store receives ``Tensor`` objects and tie maps only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmodelhub.adapters import numpy as np_adapter
from nbmodelhub.adapters import torch as torch_adapter
from nbmodelhub.adapters.safetensors import read_safetensors
from nbmodelhub.errors import UsageError
from nbmodelhub.store.tensors import Tensor

FRAMEWORKS = ("numpy", "torch")


@dataclass
class Weights:
    """Named tensors plus ties (alias name → the name whose tensor it shares)."""

    tensors: dict[str, Tensor]
    ties: dict[str, str] = field(default_factory=dict)
    framework: str = "numpy"
    source: str | None = None
    module: Any = None


def extract(obj: object) -> Weights:
    """Accept an ``nn.Module``, a state dict (torch or numpy), or a ``.safetensors``/``.pt`` path."""
    if torch_adapter.is_module(obj):
        tensors, ties = torch_adapter.from_module(obj)
        return Weights(tensors, ties, "torch", type(obj).__name__, module=obj)
    if torch_adapter.is_tensor_dict(obj):
        tensors, ties = torch_adapter.from_state_dict(obj)  # type: ignore[arg-type]
        return Weights(tensors, ties, "torch", "state dict")
    if np_adapter.is_array_dict(obj):
        tensors, ties = np_adapter.from_arrays(obj)  # type: ignore[arg-type]
        return Weights(tensors, ties, "numpy", "arrays")
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj).expanduser()
        if not path.is_file():
            raise UsageError(f"no such file: {path} (commit a module, a state dict, or a .safetensors/.pt file)")
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            tensors, ties = read_safetensors(path)
            return Weights(tensors, ties, "safetensors", path.name)
        if suffix in (".pt", ".pth", ".bin", ".ckpt"):
            tensors, ties = torch_adapter.read_pt(path)
            return Weights(tensors, ties, "torch", path.name)
        raise UsageError(f"cannot commit {path.name}: expected a .safetensors, .pt, .pth, .bin or .ckpt file")
    if isinstance(obj, dict) and not obj:
        raise UsageError("the state dict is empty: nothing to commit")
    raise UsageError(
        f"cannot commit a {type(obj).__name__}: pass an nn.Module, a state dict of tensors or numpy arrays, "
        "or a path to a .safetensors or .pt file"
    )


def convert(tensor: Tensor, framework: str) -> Any:
    if framework == "torch":
        return torch_adapter.to_torch(tensor)
    if framework == "numpy":
        return np_adapter.to_array(tensor)
    raise UsageError(f"unknown framework {framework!r}: use one of {', '.join(FRAMEWORKS)}")
