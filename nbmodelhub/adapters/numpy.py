"""numpy arrays in and out: the common currency between adapters and the store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from nbmodelhub.errors import UsageError
from nbmodelhub.store.tensors import STORAGE_DTYPES, Tensor

_BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def is_array_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())


def to_tensor(array: np.ndarray, name: str) -> Tensor:
    if array.dtype == _BFLOAT16:
        contiguous = array if array.flags.c_contiguous else array.copy(order="C")
        return Tensor.of(contiguous.view(np.uint16), "bfloat16")
    if str(array.dtype) not in STORAGE_DTYPES or array.dtype.byteorder == ">":
        raise UsageError(
            f"tensor {name!r} has dtype {array.dtype}, which cannot be stored: "
            f"convert it to one of {', '.join(STORAGE_DTYPES)}"
        )
    return Tensor.of(array)


def _alias_key(array: np.ndarray) -> tuple[Any, ...]:
    return (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)


def from_arrays(arrays: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors plus ties: names whose arrays are the very same memory as an earlier name's."""
    tensors: dict[str, Tensor] = {}
    ties: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, array in arrays.items():
        if not isinstance(name, str) or not name:
            raise UsageError(f"tensor names must be non-empty strings, got {name!r}")
        if not isinstance(array, np.ndarray):
            raise UsageError(f"{name!r} is a {type(array).__name__}, not an array: pass numpy arrays or torch tensors")
        key = _alias_key(array)
        if array.size and key in seen:
            ties[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = to_tensor(array, name)
    return tensors, ties


def to_array(tensor: Tensor) -> np.ndarray:
    if tensor.dtype == "bfloat16":
        return tensor.array.view(_BFLOAT16)
    return tensor.array
