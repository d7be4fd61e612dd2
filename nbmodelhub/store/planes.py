"""Byte planes: a tensor's bytes regrouped by significance, each group compressed on its own.

An element of ``itemsize`` bytes contributes one byte to each of ``itemsize`` planes; plane 0 holds
the most significant byte (for floats: the sign and most of the exponent), the last plane the
least significant. High-order planes of trained weights are highly repetitive, low-order ones are
noise: compressed apart, the repetitive ones shrink and the noisy ones cost nothing to try. An
approximate read takes the first planes only: for a float32 that is a bfloat16 truncation.

Deltas (``delta.py``) are bytewise too, so every plane of a tensor decodes without the others.
Each plane chunk is one zstd frame: a plane is a plain ``uint8`` zarr array with the standard
``zstd`` codec, shaped like the tensor and chunked like it.
"""

from __future__ import annotations

import json
import threading

import blake3
import numpy as np
import zstandard

from nbmodelhub.errors import UsageError

ZSTD_LEVEL = 3

# Mantissa bits of each storage dtype; the rest of the top bytes is sign and exponent.
_MANTISSA = {"float64": 52, "float32": 23, "float16": 10, "bfloat16": 7}
# Mantissa bits an approximate read keeps at least.
PRECISIONS = {"bf16": 7, "fp16": 10}

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard's (de)compressor objects are not thread-safe; one per worker thread.
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def plane_count(storage_dtype: str) -> int:
    return int(np.dtype(storage_dtype).itemsize)


def planes_for(dtype: str, precision: str | None) -> int:
    """How many high-order planes of a ``dtype`` tensor hold at least ``precision``'s mantissa."""
    from nbmodelhub.store.tensors import STORAGE_DTYPES

    total = plane_count(STORAGE_DTYPES[dtype])
    if precision is None:
        return total
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}, or None for full")
    if dtype not in _MANTISSA:
        return total  # integers and bools have no low-order part to leave out
    exponent_and_sign = total * 8 - _MANTISSA[dtype]
    bits = exponent_and_sign + PRECISIONS[precision]
    return min(total, -(-bits // 8))


def split(flat: np.ndarray, itemsize: int) -> list[np.ndarray]:
    """The planes of a flat uint8 array of whole elements, high-order first (little-endian storage)."""
    grid = flat.reshape(-1, itemsize)
    return [np.ascontiguousarray(grid[:, itemsize - 1 - j]) for j in range(itemsize)]


def merge(planes: list[np.ndarray], itemsize: int, out: np.ndarray, first: int = 0) -> None:
    """Write planes ``first``, ``first + 1``, … into ``out`` (flat uint8); other bytes are left as they are."""
    grid = out.reshape(-1, itemsize)
    for j, plane in enumerate(planes, start=first):
        grid[:, itemsize - 1 - j] = plane


def keep(array: np.ndarray, first: int, count: int) -> None:
    """Zero every plane of a contiguous array but planes ``first`` to ``count - 1``, in place."""
    itemsize = array.dtype.itemsize
    if array.size and (first > 0 or count < itemsize):
        grid = array.reshape(-1).view(np.uint8).reshape(-1, itemsize)
        grid[:, : itemsize - count] = 0
        grid[:, itemsize - first :] = 0


def fill_low(array: np.ndarray, count: int, value: int) -> None:
    """Set the bytes of planes ``count`` and beyond to ``value``, in place (bounds of a truncated read)."""
    itemsize = array.dtype.itemsize
    if array.size and count < itemsize:
        array.reshape(-1).view(np.uint8).reshape(-1, itemsize)[:, : itemsize - count] = value


def compressed_size(plane: np.ndarray) -> int:
    return len(_compressor().compress(plane.data))


def compress(plane: np.ndarray, chunk_elements: int) -> bytes:
    """One plane chunk as a zstd frame, padded to the full chunk (zarr stores edge chunks whole)."""
    if plane.size < chunk_elements:
        padded = np.zeros(chunk_elements, dtype=np.uint8)
        padded[: plane.size] = plane
        plane = padded
    return bytes(_compressor().compress(plane.data))


def decompress(frame: np.ndarray, elements: int, chunk_elements: int) -> np.ndarray:
    """A plane chunk's first ``elements`` bytes (the rest is edge padding); ValueError if damaged."""
    try:
        raw = _decompressor().decompress(frame.data, max_output_size=chunk_elements)
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from exc
    if len(raw) != chunk_elements:
        raise ValueError(f"decodes to {len(raw)} bytes, expected {chunk_elements}")
    return np.frombuffer(raw, dtype=np.uint8, count=elements)


def digest(plane: np.ndarray) -> str:
    """A short hash of one plane chunk, so an approximate read is verified without the low planes."""
    return blake3.blake3(plane.data).hexdigest()[:32]


def plane_metadata(shape: tuple[int, ...], chunk_shape: list[int], attributes: dict[str, object]) -> bytes:
    """``zarr.json`` of one plane: a standard zarr v3 uint8 array with the zstd codec."""
    doc = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes"}, {"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}}],
        "attributes": {"nbmodelhub": {"kind": "plane", **attributes}},
    }
    return json.dumps(doc, indent=1).encode()
