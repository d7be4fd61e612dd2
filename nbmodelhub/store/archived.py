"""The archived form of a tensor: byte planes, maybe a delta against another tensor, in plain zarr.

Layout, beside the commit form ``objects/tensors/<hash>`` (see tensors.py)::

    objects/archive/<hash>/zarr.json               group; attributes name the current encoding
    objects/archive/<hash>/<encoding>/zarr.json    group; the encoding: base, op, plane chunk hashes
    objects/archive/<hash>/<encoding>/<j>/         plane j (0: most significant byte): a uint8 zarr
                                                   array shaped and chunked like the tensor, zstd

``<encoding>`` is ``whole``, or ``xor-<base hash>`` / ``sub-<base hash>`` for a delta against the
tensor ``<base hash>`` (same dtype and shape; read in whatever form it is stored). To read plane j
of a chunk: decompress it; for a delta, combine it bytewise with plane j of the base's chunk (XOR,
or add modulo 256). Interleaving the planes (plane 0 as the last byte of each little-endian
element) gives the stored bytes; with only the first planes, the rest zero, a float is truncated.

A tensor is readable as long as either form is complete. Archiving writes an encoding, verifies it
by reading it back, then points the group at it (one atomic write) and only then removes the
commit form or the previous encoding. Readers prefer the commit form when it is there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import blake3
import numpy as np

from nbmodelhub.errors import CorruptObject
from nbmodelhub.store import delta, planes
from nbmodelhub.store.backend import Backend
from nbmodelhub.store.documents import group_node, parse_group_node
from nbmodelhub.store.tensors import (
    STORAGE_DTYPES,
    Layout,
    Tensor,
    TensorRead,
    _header,
    decode_chunk,
    flat_bytes,
    read_metadata,
    tensor_hash,
)

ARCHIVE = "objects/archive"
COMMITTED = "objects/tensors"


@dataclass(frozen=True)
class Encoding:
    """One archived encoding of tensor ``hash``: whole, or a delta (``op``) against ``base``."""

    hash: str
    dtype: str
    shape: tuple[int, ...]
    base: str | None
    op: str | None
    chunk_hashes: tuple[tuple[str, ...], ...]  # [chunk][plane]
    stored: tuple[int, ...]  # compressed bytes of each plane

    @property
    def name(self) -> str:
        return "whole" if self.base is None else f"{self.op}-{self.base}"

    @property
    def path(self) -> str:
        return f"{ARCHIVE}/{self.hash}/{self.name}"

    @property
    def layout(self) -> Layout:
        return Layout.plan(self.shape, STORAGE_DTYPES[self.dtype])

    @property
    def stored_bytes(self) -> int:
        return sum(self.stored)

    def attributes(self, kind: str) -> dict[str, Any]:
        return {
            "nbmodelhub": {
                "kind": kind,
                "hash": self.hash,
                "encoding": self.name,
                "dtype": self.dtype,
                "shape": list(self.shape),
                "base": self.base,
                "op": self.op,
                "planes": len(self.stored),
                "stored": list(self.stored),
                "chunk_hashes": [list(c) for c in self.chunk_hashes],
            }
        }

    @staticmethod
    def from_attributes(attrs: dict[str, Any], digest: str) -> Encoding:
        try:
            info = attrs["nbmodelhub"]
            enc = Encoding(
                hash=str(info["hash"]),
                dtype=str(info["dtype"]),
                shape=tuple(int(d) for d in info["shape"]),
                base=None if info["base"] is None else str(info["base"]),
                op=None if info["op"] is None else str(info["op"]),
                chunk_hashes=tuple(tuple(str(h) for h in c) for c in info["chunk_hashes"]),
                stored=tuple(int(s) for s in info["stored"]),
            )
            if enc.hash != digest or enc.dtype not in STORAGE_DTYPES or enc.name != info["encoding"]:
                raise ValueError("it describes another tensor")
            if enc.op is not None and enc.op not in delta.OPS:
                raise ValueError(f"unknown delta op {enc.op}")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptObject(f"the archived encoding of tensor {digest[:12]} is garbled ({exc})") from exc
        return enc


def current_encoding(backend: Backend, digest: str) -> Encoding | None:
    raw = backend.get(f"{ARCHIVE}/{digest}/zarr.json")
    if raw is None:
        return None
    return Encoding.from_attributes(parse_group_node(raw, f"archived tensor {digest[:12]}"), digest)


def is_committed(backend: Backend, digest: str) -> bool:
    meta = read_metadata(backend, f"{COMMITTED}/{digest}")
    return meta is not None and meta["attributes"]["nbmodelhub"]["hash"] == digest  # type: ignore[index]


class Resolver:
    """Where each tensor's chunks come from (commit form or archived encoding), for one read.

    A form that disappears mid-read (a concurrent archive or unpack switched it) is looked up again.
    """

    def __init__(self, backend: Backend, prefer_archive: frozenset[str] = frozenset()) -> None:
        self.backend = backend
        self.prefer_archive = prefer_archive
        self._forms: dict[str, Encoding | None] = {}
        self._lock = threading.Lock()

    def form(self, digest: str, what: str) -> Encoding | None:
        """None for the commit form, else the archived encoding; CorruptObject if neither exists."""
        with self._lock:
            if digest in self._forms:
                return self._forms[digest]
        enc: Encoding | None
        if digest not in self.prefer_archive and is_committed(self.backend, digest):
            enc = None
        else:
            enc = current_encoding(self.backend, digest)
            if enc is None and not is_committed(self.backend, digest):
                raise CorruptObject(f"{what}: tensor object {digest[:12]} is missing or its zarr.json is damaged")
            if enc is None:
                raise CorruptObject(f"{what}: tensor {digest[:12]} has no archived encoding")
        with self._lock:
            self._forms[digest] = enc
        return enc

    def forget(self, digest: str) -> None:
        with self._lock:
            self._forms.pop(digest, None)

    def chunk_planes(self, read: TensorRead, index: int, count: int, first: int = 0) -> list[np.ndarray]:
        """Planes ``first`` to ``count - 1`` of chunk ``index`` (unpadded, writable), through any delta chain."""
        try:
            return self._chunk_planes(read, index, count, first)
        except CorruptObject:
            # The form may have been switched under us (archive/unpack in another process): look again.
            self.forget(read.digest)
            return self._chunk_planes(read, index, count, first)

    def _chunk_planes(self, read: TensorRead, index: int, count: int, first: int) -> list[np.ndarray]:
        enc = self.form(read.digest, read.what)
        storage = STORAGE_DTYPES[read.dtype]
        itemsize = np.dtype(storage).itemsize
        if enc is None:
            path = f"{COMMITTED}/{read.digest}"
            rows = decode_chunk(self.backend, TensorRead(path, *_rest(read)), index)
            return planes.split(flat_bytes(np.ascontiguousarray(rows)), itemsize)[first:count]
        if enc.dtype != read.dtype or enc.shape != read.shape:
            raise CorruptObject(f"{read.what}: archived tensor {read.digest[:12]} has another dtype or shape")
        layout = enc.layout
        start, stop = layout.row_range(index)
        elements = (stop - start) * (layout.row_bytes // itemsize)
        chunk_elements = layout.chunk_nbytes() // itemsize
        key = layout.chunk_key(index)
        out = []
        frames = self.backend.get_buffers([f"{enc.path}/{j}/{key}" for j in range(first, count)])
        for j, frame in enumerate(frames, start=first):
            if frame is None:
                raise CorruptObject(f"{read.what}: plane {j} chunk {key} of tensor {read.digest[:12]} is missing")
            try:
                plane = planes.decompress(frame, elements, chunk_elements)
            except ValueError as exc:
                raise CorruptObject(
                    f"{read.what}: plane {j} chunk {key} of tensor {read.digest[:12]} is damaged ({exc})"
                ) from exc
            if index >= len(enc.chunk_hashes) or planes.digest(plane) != enc.chunk_hashes[index][j]:
                raise CorruptObject(
                    f"{read.what}: plane {j} chunk {key} of tensor {read.digest[:12]} does not match its hash"
                )
            out.append(plane.copy())
        if enc.base is not None:
            assert enc.op is not None
            base = TensorRead(f"{COMMITTED}/{enc.base}", read.dtype, read.shape, enc.base, read.what)
            for j, b in enumerate(self.chunk_planes(base, index, count, first)):
                out[j] = delta.apply(out[j], b, enc.op)
        return out

    def chunk_rows(self, read: TensorRead, index: int, count: int | None = None, first: int = 0) -> np.ndarray:
        """One chunk's rows (storage dtype, unpadded) from planes ``first`` to ``count - 1``, the rest zero."""
        storage = STORAGE_DTYPES[read.dtype]
        itemsize = np.dtype(storage).itemsize
        layout = Layout.plan(read.shape, storage)
        start, stop = layout.row_range(index)
        rows = np.zeros(((stop - start) * layout.row_bytes,), dtype=np.uint8)
        last = itemsize if count is None else count
        planes.merge(self.chunk_planes(read, index, last, first), itemsize, rows, first)
        part = rows.view(storage)
        return part.reshape((stop - start, *read.shape[1:])) if read.shape else part.reshape(())


def _rest(read: TensorRead) -> tuple[str, tuple[int, ...], str, str]:
    return read.dtype, read.shape, read.digest, read.what


def read_tensors(
    resolver: Resolver,
    reads: list[TensorRead],
    counts: list[int],
    pool: Executor,
    progress: Callable[[int], None],
    verify: bool,
    firsts: list[int] | None = None,
) -> list[Tensor]:
    """Whole tensors from their first ``counts`` planes; full reads are checked against the hash.

    Approximate reads (fewer planes) cannot be checked against the tensor's hash; every plane chunk
    they read is checked against its own hash instead.
    """
    outs = [np.zeros(r.shape, dtype=STORAGE_DTYPES[r.dtype]) for r in reads]

    firsts = firsts or [0] * len(reads)

    def one(read: TensorRead, out: np.ndarray, index: int, count: int, first: int) -> None:
        rows = resolver.chunk_rows(read, index, count, first)
        layout = Layout.plan(read.shape, STORAGE_DTYPES[read.dtype])
        start, stop = layout.row_range(index)
        if read.shape:
            out[start:stop] = rows
        else:
            out[()] = rows
        progress((stop - start) * layout.row_bytes)

    futures = [
        pool.submit(one, read, out, index, count, first)
        for read, out, count, first in zip(reads, outs, counts, firsts, strict=True)
        for index in range(Layout.plan(read.shape, STORAGE_DTYPES[read.dtype]).chunk_count)
    ]
    for future in futures:
        future.result()
    tensors = [Tensor(r.dtype, out) for r, out in zip(reads, outs, strict=True)]
    if verify:
        full = [
            (r, t)
            for r, t, c, f in zip(reads, tensors, counts, firsts, strict=True)
            if f == 0 and c == np.dtype(t.array.dtype).itemsize
        ]
        for (read, _), digest in zip(full, pool.map(lambda rt: tensor_hash(rt[1]), full), strict=True):
            if digest != read.digest:
                raise CorruptObject(
                    f"{read.what}: tensor {read.digest[:12]} does not match its hash (the stored bytes were altered)"
                )
    return tensors


def iter_rows(resolver: Resolver, read: TensorRead, pool: Executor) -> Iterator[np.ndarray]:
    """Stream a tensor's rows chunk by chunk, checking its hash as they pass (see tensors.iter_tensor)."""
    hasher = blake3.blake3(_header(read.dtype, read.shape), max_threads=blake3.blake3.AUTO)
    count = Layout.plan(read.shape, STORAGE_DTYPES[read.dtype]).chunk_count
    pending = pool.submit(resolver.chunk_rows, read, 0) if count else None
    for index in range(count):
        assert pending is not None
        rows = pending.result()
        pending = pool.submit(resolver.chunk_rows, read, index + 1) if index + 1 < count else None
        hasher.update(flat_bytes(np.ascontiguousarray(rows)).data)
        yield rows
    if hasher.hexdigest() != read.digest:
        raise CorruptObject(
            f"{read.what}: tensor {read.digest[:12]} does not match its hash (the stored bytes were altered)"
        )


def write_encoding(
    backend: Backend,
    pool: Executor,
    digest: str,
    tensor: Tensor,
    base_digest: str | None,
    base: Tensor | None,
    op: str | None,
    progress: Callable[[int], None],
) -> Encoding:
    """Write one encoding: plane chunks, the planes' zarr.json, then the encoding's zarr.json."""
    storage = tensor.array.dtype.name
    itemsize = tensor.array.dtype.itemsize
    layout = Layout.plan(tensor.shape, storage)
    chunk_elements = layout.chunk_nbytes() // itemsize
    name = "whole" if base_digest is None else f"{op}-{base_digest}"
    path = f"{ARCHIVE}/{digest}/{name}"
    x_flat = flat_bytes(tensor.array)
    b_flat = None if base is None else flat_bytes(base.array)

    def one(index: int) -> tuple[list[str], list[int]]:
        start, stop = layout.row_range(index)
        lo, hi = start * layout.row_bytes, stop * layout.row_bytes
        xs = planes.split(x_flat[lo:hi], itemsize)
        if b_flat is not None:
            assert op is not None
            xs = [delta.encode(x, b, op) for x, b in zip(xs, planes.split(b_flat[lo:hi], itemsize), strict=True)]
        frames = [planes.compress(plane, chunk_elements) for plane in xs]
        backend.set_many([(f"{path}/{j}/{layout.chunk_key(index)}", f) for j, f in enumerate(frames)])
        hashes, sizes = [planes.digest(plane) for plane in xs], [len(f) for f in frames]
        progress(hi - lo)
        return hashes, sizes

    results = [f.result() for f in [pool.submit(one, i) for i in range(layout.chunk_count)]]
    stored = tuple(sum(s[j] for _, s in results) for j in range(itemsize))
    enc = Encoding(
        hash=digest,
        dtype=tensor.dtype,
        shape=tensor.shape,
        base=base_digest,
        op=op,
        chunk_hashes=tuple(tuple(h) for h, _ in results),
        stored=stored,
    )
    backend.set_many(
        [
            (
                f"{path}/{j}/zarr.json",
                planes.plane_metadata(
                    tensor.shape,
                    layout.chunk_shape,
                    {"hash": digest, "plane": j, "of": itemsize, "dtype": tensor.dtype},
                ),
            )
            for j in range(itemsize)
        ]
    )
    backend.set(f"{path}/zarr.json", group_node(enc.attributes("tensor-encoding")))  # last: the encoding exists
    return enc


def read_encoding(backend: Backend, digest: str, name: str) -> Encoding | None:
    """A written encoding by name (current or not), or None if it is incomplete."""
    raw = backend.get(f"{ARCHIVE}/{digest}/{name}/zarr.json")
    if raw is None:
        return None
    try:
        return Encoding.from_attributes(parse_group_node(raw, f"an encoding of tensor {digest[:12]}"), digest)
    except CorruptObject:
        return None


def make_current(backend: Backend, enc: Encoding) -> None:
    """Point the tensor's archive group at ``enc`` (one write: the switch is atomic)."""
    if backend.get(f"{ARCHIVE}/zarr.json") is None:
        backend.set(f"{ARCHIVE}/zarr.json", group_node({}))
    backend.set(f"{ARCHIVE}/{enc.hash}/zarr.json", group_node(enc.attributes("archived-tensor")))


def stored_bytes(backend: Backend, digest: str) -> int:
    """Bytes the tensor's current form takes (archived encoding if any, else the commit form)."""
    enc = current_encoding(backend, digest)
    if enc is not None:
        return enc.stored_bytes
    from zarr.core.sync import sync

    try:
        return int(sync(backend.store.getsize_prefix(f"{COMMITTED}/{digest}")))
    except (FileNotFoundError, NotImplementedError):
        return 0
