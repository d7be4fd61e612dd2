"""safetensors files, read by parsing the format directly (a JSON header, then raw bytes).

Parsing it ourselves gives bfloat16 without torch and lets a malformed file fail with one clear
message instead of a Rust panic.
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from pathlib import Path

import numpy as np

from nbmodelhub.errors import UsageError
from nbmodelhub.store.tensors import STORAGE_DTYPES, Tensor

_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}


def read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    def bad(why: str) -> UsageError:
        return UsageError(f"{path} is not a valid safetensors file: {why}")

    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size < 8:
            raise bad("too short")
        f.seek(0)
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > min(size - 8, 100 << 20):
            raise bad("header length out of range")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as exc:
            raise bad(f"header is not JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise bad("header is not a JSON object")
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 8 + header_len else b""
    body = 8 + header_len
    tensors: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _DTYPES[info["dtype"]]
            shape = tuple(info["shape"])
            start, stop = info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"entry {name!r} is malformed") from exc
        # Exact non-negative ints only: int(1.5) would quietly lie, and a dimension past int64 (or a product
        # of dimensions that overflows numpy's int64 back to 0) must not slip past the size check below.
        numbers = (*shape, start, stop)
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**62 for n in numbers):
            raise bad(f"entry {name!r} has a shape or offsets that are not non-negative integers in range")
        storage = np.dtype(STORAGE_DTYPES[dtype])
        count = math.prod(shape)
        if stop < start or body + stop > size or stop - start != count * storage.itemsize:
            raise bad(f"entry {name!r} points outside the file or has the wrong size")
        if count == 0:  # no bytes to read: the body may be empty, and frombuffer refuses an offset past its end
            try:
                array = np.empty(shape, dtype=storage)
            except ValueError as exc:  # numpy refuses (0, 2**61): its size check ignores the zero
                raise bad(f"entry {name!r} has a shape numpy cannot hold") from exc
        else:
            array = np.frombuffer(data, dtype=storage, count=count, offset=body + start).reshape(shape).copy()
        tensors[name] = Tensor.of(array, dtype)
    if not tensors:
        raise bad("it holds no tensors")
    return tensors, {}
