"""safetensors files, read by parsing the format directly (a JSON header, then raw bytes).

Parsing it ourselves gives bfloat16 without torch and lets a malformed file fail with one clear
message instead of a Rust panic.
"""

from __future__ import annotations

import json
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
            shape = tuple(int(d) for d in info["shape"])
            start, stop = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"entry {name!r} is malformed") from exc
        storage = np.dtype(STORAGE_DTYPES[dtype])
        count = int(np.prod(shape)) if shape else 1
        if (
            start < 0
            or stop < start
            or body + stop > size
            or stop - start != count * storage.itemsize
            or min(shape, default=0) < 0
        ):
            raise bad(f"entry {name!r} points outside the file or has the wrong size")
        array = np.frombuffer(data, dtype=storage, count=count, offset=body + start).reshape(shape)
        tensors[name] = Tensor.of(array.copy(), dtype)
    if not tensors:
        raise bad("it holds no tensors")
    return tensors, {}
