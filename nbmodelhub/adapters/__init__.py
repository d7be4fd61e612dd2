"""Adapters turn what users hold (a module, a state dict, a checkpoint file) into tensors, and back.

They never touch zarr: the store receives ``Tensor`` objects and tie maps only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmodelhub.adapters import numpy as np_adapter
from nbmodelhub.adapters import torch as torch_adapter
from nbmodelhub.adapters.safetensors import read_safetensors
from nbmodelhub.errors import UsageError
from nbmodelhub.graph import graph_from_onnx, graph_from_tensors, onnx_initializers
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
    graph: Any = None  # a LayerGraph when the source itself describes the architecture (ONNX, HF folder)


def extract(obj: object) -> Weights:
    """Accept an ``nn.Module``, a state dict (torch or numpy), or a ``.safetensors``/``.pt`` path."""
    if isinstance(obj, Weights):  # already extracted, e.g. a derived model with its own layer graph
        return obj
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
        if path.is_dir():
            return _hf_folder(path)
        if not path.is_file():
            raise UsageError(f"no such file: {path} (commit a module, a state dict, or a .safetensors/.pt file)")
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            tensors, ties = read_safetensors(path)
            return Weights(tensors, ties, "safetensors", path.name)
        if suffix in (".pt", ".pth", ".bin", ".ckpt"):
            tensors, ties = torch_adapter.read_pt(path)
            return Weights(tensors, ties, "torch", path.name)
        if suffix == ".onnx":
            return _onnx(path)
        raise UsageError(f"cannot commit {path.name}: expected a .safetensors, .onnx, .pt, .pth, .bin or .ckpt file")
    if isinstance(obj, dict) and not obj:
        raise UsageError("the state dict is empty: nothing to commit")
    raise UsageError(
        f"cannot commit a {type(obj).__name__}: pass an nn.Module, a state dict of tensors or numpy arrays, "
        "or a path to a .safetensors or .pt file"
    )


def _onnx(path: Path) -> Weights:
    """An ONNX file: its ops become the layer graph, its initializers the tensors."""
    try:
        graph = graph_from_onnx(path)
        arrays = onnx_initializers(path)
    except ImportError as exc:
        raise UsageError("reading ONNX files needs the onnx package: pip install 'nbmodelhub[onnx]'") from exc
    except Exception as exc:  # onnx raises its own DecodeError/ValidationError types
        raise UsageError(f"{path} is not a readable ONNX model: {str(exc).strip().splitlines()[0]}") from exc
    if not arrays:
        raise UsageError(f"{path} holds no initializers (weights): nothing to commit")
    tensors, ties = np_adapter.from_arrays(arrays)
    return Weights(tensors, ties, "onnx", path.name, graph=graph)


def _hf_folder(path: Path) -> Weights:
    """A Hugging Face-format folder: ``config.json`` plus one or more ``*.safetensors`` shards."""
    shards = sorted(path.glob("*.safetensors"))
    if not shards:
        raise UsageError(f"{path} is a folder without *.safetensors files: commit a model folder or a file")
    config: dict[str, Any] | None = None
    config_file = path / "config.json"
    if config_file.is_file():
        loaded = _json_file(config_file)
        config = loaded if isinstance(loaded, dict) else None
    index_file = path / INDEX_NAME
    weight_map = _weight_map(index_file) if index_file.is_file() else None
    if weight_map is not None:
        # The index says which shards make the model: read those (a missing one is an error, not half a model).
        shards = [path / name for name in sorted(set(weight_map.values()))]
    tensors: dict[str, Tensor] = {}
    for shard in shards:
        if not shard.is_file():
            raise UsageError(f"{index_file} names shard {shard.name}, which is not in {path}")
        part, _ = read_safetensors(shard)
        clash = set(part) & set(tensors)
        if clash:
            raise UsageError(f"{shard.name} repeats tensor {sorted(clash)[0]!r} from another shard")
        tensors.update(part)
    if weight_map is not None and set(weight_map) != set(tensors):
        odd = sorted(set(weight_map) ^ set(tensors))[0]
        where = "the index names but no shard holds" if odd in weight_map else "a shard holds but the index omits"
        raise UsageError(f"{path}: tensor {odd!r} {where}; the folder and {INDEX_NAME} disagree")
    graph = graph_from_tensors({n: (t.dtype, t.shape) for n, t in tensors.items()}, config)
    return Weights(tensors, {}, "safetensors", path.name, graph=graph)


INDEX_NAME = "model.safetensors.index.json"


def _json_file(file: Path) -> Any:
    try:
        return json.loads(file.read_bytes())
    except (ValueError, RecursionError) as exc:  # a deeply nested file exhausts json's recursion, not a ValueError
        raise UsageError(f"{file} is not valid JSON ({type(exc).__name__}: {str(exc)[:80]})") from None


def _weight_map(index_file: Path) -> dict[str, str]:
    """The index's tensor → shard map; shards are plain file names in the same folder."""
    index = _json_file(index_file)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UsageError(f"{index_file} has no weight_map of tensor name → shard file")
    for shard in weight_map.values():
        if not isinstance(shard, str) or not shard.endswith(".safetensors") or Path(shard).name != shard:
            raise UsageError(f"{index_file} names shard {shard!r}: shards are .safetensors files beside it")
    return weight_map


def convert(tensor: Tensor, framework: str) -> Any:
    if framework == "torch":
        return torch_adapter.to_torch(tensor)
    if framework == "numpy":
        return np_adapter.to_array(tensor)
    raise UsageError(f"unknown framework {framework!r}: use one of {', '.join(FRAMEWORKS)}")
