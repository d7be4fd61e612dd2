"""Tensors as plain zarr v3 arrays, named by their content hash.

A tensor object is the array ``objects/tensors/<hash>``: chunks along the first axis, each chunk
bit-shuffled and LZ4-compressed by zarr's standard ``blosc`` codec (bit-shuffling puts the sign and
exponent bits of neighbouring floats together, which is what makes float weights compress at all).
Any zarr client opens it. We encode and decode chunks ourselves (same codec, same bytes) so that a
tensor is decoded straight into the caller's buffer and every byte read is counted and hashed.

Write order makes an object visible last: chunks first, then ``zarr.json``. A writer killed
midway leaves chunks without metadata, which is no object at all (``gc`` removes the debris).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import blake3
import numcodecs.blosc
import numpy as np
from numcodecs import Blosc

from nbmodelhub.errors import CorruptObject, UsageError
from nbmodelhub.store.backend import Backend

# Our worker threads compress chunks in parallel; blosc's global thread pool would fight them.
numcodecs.blosc.use_threads = False

CHUNK_BYTES = 8 << 20
_CODEC = Blosc(cname="lz4", clevel=1, shuffle=Blosc.BITSHUFFLE, blocksize=0)

# Logical dtype (what the user's framework calls it) → how its bits are stored in zarr.
# zarr v3 has no bfloat16, so its bit patterns live in uint16 and the attribute says what they are.
STORAGE_DTYPES: dict[str, str] = {
    "float64": "float64",
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "uint16",
    "int64": "int64",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint64": "uint64",
    "uint32": "uint32",
    "uint16": "uint16",
    "uint8": "uint8",
    "bool": "bool",
}


@dataclass(frozen=True)
class Tensor:
    """An array plus the dtype its framework gave it (``array`` holds the storage dtype)."""

    dtype: str
    array: np.ndarray

    @staticmethod
    def of(array: np.ndarray, dtype: str | None = None) -> Tensor:
        logical = dtype or str(array.dtype)
        if logical not in STORAGE_DTYPES:
            raise UsageError(f"unsupported dtype {logical}: supported are {', '.join(STORAGE_DTYPES)}")
        # ascontiguousarray would turn a 0-d array into shape (1,).
        storage = array if array.flags.c_contiguous else array.copy(order="C")
        if str(storage.dtype) != STORAGE_DTYPES[logical]:
            raise UsageError(f"a {logical} tensor must be held as {STORAGE_DTYPES[logical]}, got {storage.dtype}")
        return Tensor(logical, storage)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.array.shape)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


def _header(dtype: str, shape: tuple[int, ...]) -> bytes:
    return f"nbmodelhub-tensor\0{dtype}\0{','.join(map(str, shape))}\0".encode()


def flat_bytes(array: np.ndarray) -> np.ndarray:
    """The C-order bytes of a contiguous array as a uint8 view (no copy)."""
    return array.reshape(-1).view(np.uint8)


def tensor_hash(tensor: Tensor) -> str:
    """Content hash over dtype, shape and bytes: equal tensors get equal names across models."""
    hasher = blake3.blake3(_header(tensor.dtype, tensor.shape), max_threads=blake3.blake3.AUTO)
    hasher.update(flat_bytes(tensor.array).data)
    return hasher.hexdigest()


@dataclass(frozen=True)
class Layout:
    """How a tensor is cut into chunks: ``rows`` of the first axis per chunk."""

    shape: tuple[int, ...]
    storage_dtype: str
    rows: int

    @staticmethod
    def plan(shape: tuple[int, ...], storage_dtype: str) -> Layout:
        if not shape:
            return Layout(shape, storage_dtype, 1)
        row_bytes = max(1, math.prod(shape[1:]) * np.dtype(storage_dtype).itemsize)
        max_rows = max(1, CHUNK_BYTES // row_bytes)
        chunks = max(1, math.ceil(shape[0] / max_rows))
        # Spread rows evenly so the padded edge chunk wastes as little as possible.
        return Layout(shape, storage_dtype, max(1, math.ceil(shape[0] / chunks)))

    @property
    def chunk_shape(self) -> list[int]:
        if not self.shape:
            return []
        return [self.rows, *(max(1, d) for d in self.shape[1:])]

    @property
    def chunk_count(self) -> int:
        if not self.shape:
            return 1
        if math.prod(self.shape) == 0:
            return 0
        return math.ceil(self.shape[0] / self.rows)

    def chunk_key(self, index: int) -> str:
        if not self.shape:
            return "c"
        return "c/" + "/".join([str(index)] + ["0"] * (len(self.shape) - 1))

    def row_range(self, index: int) -> tuple[int, int]:
        if not self.shape:
            return 0, 1
        start = index * self.rows
        return start, min(self.shape[0], start + self.rows)

    @property
    def row_bytes(self) -> int:
        return (
            math.prod(self.shape[1:]) * np.dtype(self.storage_dtype).itemsize
            if self.shape
            else np.dtype(self.storage_dtype).itemsize
        )

    def chunk_nbytes(self) -> int:
        return self.rows * self.row_bytes


def zarr_metadata(tensor_dtype: str, shape: tuple[int, ...], layout: Layout, attributes: dict[str, object]) -> bytes:
    """The array's ``zarr.json``: standard zarr v3, readable by any zarr client."""
    storage = layout.storage_dtype
    itemsize = np.dtype(storage).itemsize
    bytes_codec: dict[str, object] = {"name": "bytes"}
    if itemsize > 1:
        bytes_codec["configuration"] = {"endian": "little"}
    fill: object = False if storage == "bool" else (0.0 if storage.startswith("float") else 0)
    doc = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": storage,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": layout.chunk_shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [
            bytes_codec,
            {
                "name": "blosc",
                "configuration": {
                    "typesize": itemsize,
                    "cname": "lz4",
                    "clevel": 1,
                    "shuffle": "bitshuffle",
                    "blocksize": 0,
                },
            },
        ],
        "attributes": {"nbmodelhub": {"kind": "tensor", "dtype": tensor_dtype, **attributes}},
    }
    return json.dumps(doc, indent=1).encode()


def _encode_chunk(tensor: Tensor, layout: Layout, index: int) -> bytes:
    start, stop = layout.row_range(index)
    if not layout.shape:
        rows = tensor.array.reshape(1)
    else:
        rows = tensor.array[start:stop]
        if stop - start < layout.rows:
            # zarr stores edge chunks at full chunk size, padded with the fill value.
            padded = np.zeros((layout.rows, *layout.shape[1:]), dtype=tensor.array.dtype)
            padded[: stop - start] = rows
            rows = padded
    return bytes(_CODEC.encode(np.ascontiguousarray(rows)))


def write_tensor(
    backend: Backend,
    path: str,
    tensor: Tensor,
    digest: str,
    pool: Executor,
    progress: Callable[[int], None],
) -> None:
    """Write chunks in parallel, then the metadata that makes the object exist."""
    layout = Layout.plan(tensor.shape, tensor.array.dtype.name)

    def one(index: int) -> None:
        data = _encode_chunk(tensor, layout, index)
        backend.set(f"{path}/{layout.chunk_key(index)}", data)
        start, stop = layout.row_range(index)
        progress((stop - start) * layout.row_bytes)

    for future in [pool.submit(one, i) for i in range(layout.chunk_count)]:
        future.result()
    backend.set(f"{path}/zarr.json", zarr_metadata(tensor.dtype, tensor.shape, layout, {"hash": digest}))


def read_metadata(backend: Backend, path: str) -> dict[str, object] | None:
    """The object's zarr.json if it is a complete tensor object, else None."""
    raw = backend.get(f"{path}/zarr.json")
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        _ = doc["attributes"]["nbmodelhub"]["hash"]
        return dict(doc)
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class TensorRead:
    """One tensor to read: where it lives, what it should be, and how to name it in errors."""

    path: str
    dtype: str
    shape: tuple[int, ...]
    digest: str
    what: str


def read_tensors(
    backend: Backend,
    reads: list[TensorRead],
    pool: Executor,
    progress: Callable[[int], None],
    verify: bool = True,
) -> list[Tensor]:
    """Read whole tensors, decoding each chunk straight into its place, and check their hashes.

    Every chunk of every tensor goes to the pool at once, so reading one chunk from disk overlaps
    with decoding another: a cold load is bound by the disk, not by one tensor at a time.
    """
    outs = [np.empty(r.shape, dtype=STORAGE_DTYPES[r.dtype]) for r in reads]
    futures = [
        pool.submit(_read_chunk, backend, read, out, index, progress)
        for read, out in zip(reads, outs, strict=True)
        for index in range(Layout.plan(read.shape, STORAGE_DTYPES[read.dtype]).chunk_count)
    ]
    for future in futures:
        future.result()
    tensors = [Tensor(r.dtype, out) for r, out in zip(reads, outs, strict=True)]
    if verify:
        for read, digest in zip(reads, pool.map(tensor_hash, tensors), strict=True):
            if digest != read.digest:
                raise CorruptObject(
                    f"{read.what}: tensor {read.digest[:12]} does not match its hash (the stored bytes were altered)"
                )
    return tensors


def _read_chunk(
    backend: Backend, read: TensorRead, out: np.ndarray, index: int, progress: Callable[[int], None]
) -> None:
    storage = STORAGE_DTYPES[read.dtype]
    layout = Layout.plan(read.shape, storage)
    key = layout.chunk_key(index)
    raw = backend.get_buffer(f"{read.path}/{key}")
    if raw is None:
        raise CorruptObject(f"{read.what}: chunk {key} of tensor {read.digest[:12]} is missing")
    start, stop = layout.row_range(index)
    try:
        if read.shape and stop - start == layout.rows:
            rows = out.reshape(read.shape[0], math.prod(read.shape[1:]))[start:stop]
            _CODEC.decode(raw, out=rows.reshape(-1).view(np.uint8))
        else:
            buf = np.frombuffer(bytes(_CODEC.decode(raw)), dtype=np.uint8)
            if buf.size != layout.chunk_nbytes():
                raise ValueError("wrong size")
            part = buf[: (stop - start) * layout.row_bytes].view(storage)
            if read.shape:
                out[start:stop] = part.reshape((stop - start, *read.shape[1:]))
            else:
                out[()] = part[0]
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CorruptObject(f"{read.what}: chunk {key} of tensor {read.digest[:12]} is damaged ({exc})") from exc
    progress((stop - start) * layout.row_bytes)


def decode_chunk(backend: Backend, read: TensorRead, index: int) -> np.ndarray:
    """One chunk's rows (storage dtype), without the padding of an edge chunk. Not hash-checked."""
    storage = STORAGE_DTYPES[read.dtype]
    layout = Layout.plan(read.shape, storage)
    key = layout.chunk_key(index)
    raw = backend.get_buffer(f"{read.path}/{key}")
    if raw is None:
        raise CorruptObject(f"{read.what}: chunk {key} of tensor {read.digest[:12]} is missing")
    start, stop = layout.row_range(index)
    buf = np.empty(layout.chunk_nbytes(), dtype=np.uint8)
    try:
        _CODEC.decode(raw, out=buf)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise CorruptObject(f"{read.what}: chunk {key} of tensor {read.digest[:12]} is damaged ({exc})") from exc
    part = buf[: (stop - start) * layout.row_bytes].view(storage)
    return part.reshape((stop - start, *read.shape[1:])) if read.shape else part.reshape(())


def iter_tensor(
    backend: Backend,
    path: str,
    dtype: str,
    shape: tuple[int, ...],
    digest: str,
    pool: Executor,
    what: str,
) -> Iterator[np.ndarray]:
    """Yield a tensor's rows chunk by chunk (storage dtype), holding at most two chunks in memory.

    The content hash is checked as the chunks stream past; a mismatch raises after the last
    chunk, so a consumer never finishes a computation on altered bytes without hearing of it.
    """
    read = TensorRead(path, dtype, shape, digest, what)
    hasher = blake3.blake3(_header(dtype, shape), max_threads=blake3.blake3.AUTO)

    def fetch(index: int) -> np.ndarray:
        return decode_chunk(backend, read, index)

    count = Layout.plan(shape, STORAGE_DTYPES[dtype]).chunk_count
    pending = pool.submit(fetch, 0) if count else None
    for index in range(count):
        assert pending is not None
        rows = pending.result()
        pending = pool.submit(fetch, index + 1) if index + 1 < count else None
        hasher.update(flat_bytes(np.ascontiguousarray(rows)).data)
        yield rows
    if hasher.hexdigest() != digest:
        raise CorruptObject(f"{what}: tensor {digest[:12]} does not match its hash (the stored bytes were altered)")
