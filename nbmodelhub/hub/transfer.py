"""Copying versions between two repositories: publish (local → hub) and pull (hub → local).

Objects are content-addressed, so "what the other side lacks" is a set difference of names, and
a repeated or resumed transfer skips every object that already arrived. Each object is copied
key by key (chunks first, ``zarr.json`` last, the store's own visible-last rule), and its bytes
are verified against its hash between the read and the write: a damaged or tampered object is
never written. Refs come last, ancestors first, so the destination never shows a version whose
objects or parents are missing. Version ids (and with them parents) are kept, which is what lets a
pulled base and a local fine-tune diff against each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm
from zarr.storage import MemoryStore

from nbmodelhub.errors import CorruptObject
from nbmodelhub.store import archived
from nbmodelhub.store.backend import Backend
from nbmodelhub.store.documents import content_id, parse_group_node
from nbmodelhub.store.repository import Store
from nbmodelhub.store.tensors import STORAGE_DTYPES, TensorRead, read_tensors, write_tensor

# Objects in flight at once: enough to hide object-storage latency, few enough to bound memory
# (an object is held whole between its read and its write).
WORKERS = 8


@dataclass
class TransferReport:
    """What a publish or pull did. ``bytes_sent`` counts stored (compressed) bytes written."""

    source: str
    destination: str
    ref: str = ""  # the destination's ref of the version asked for
    created: list[str] = field(default_factory=list)  # refs made at the destination, oldest first
    existing: list[str] = field(default_factory=list)  # versions it already had (their refs there)
    objects_sent: int = 0
    objects_present: int = 0
    bytes_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "ref": self.ref,
            "created": self.created,
            "existing": self.existing,
            "objects_sent": self.objects_sent,
            "objects_present": self.objects_present,
            "bytes_sent": self.bytes_sent,
        }


@dataclass(frozen=True)
class _Object:
    kind: str
    digest: str
    what: str
    dtype: str = "uint8"
    shape: tuple[int, ...] = ()

    @property
    def prefix(self) -> str:
        return f"objects/{self.kind}/{self.digest}"

    @property
    def nbytes(self) -> int:
        if self.kind not in ("tensors", "files"):
            return 0
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(STORAGE_DTYPES[self.dtype]).itemsize


def lineage(store: Store, version_id: str) -> list[str]:
    """``version_id`` and its visible ancestors in ``store``, every parent before its children."""
    visible = {r.version_id for r in store.refs.all_versions()}
    order: list[str] = []
    seen: set[str] = set()
    stack: list[tuple[str, bool]] = [(version_id, False)]
    while stack:
        vid, expanded = stack.pop()
        if expanded:
            order.append(vid)
            continue
        if vid in seen:
            continue
        seen.add(vid)
        stack.append((vid, True))
        record = store.get_document("versions", vid, vid[:12])
        stack += [(p, False) for p in reversed(record.get("parents", [])) if p in visible and p not in seen]
    return order


def _objects(store: Store, ids: list[str]) -> list[_Object]:
    found: dict[str, _Object] = {}
    for vid in ids:
        ref = store.refs.ref_of(vid)
        where = f"{ref[0]}@{ref[1]}" if ref else vid[:12]
        record = store.get_document("versions", vid, where)
        for snap in record.get("snapshots", []):
            for name, t in snap["tensors"].items():
                o = _Object("tensors", t["hash"], f"{where}: tensor {name!r}", t["dtype"], tuple(t["shape"]))
                found.setdefault(o.prefix, o)
        for f in record.get("files", []):
            o = _Object("files", f["hash"], f"{where}: file {f['name']!r}", "uint8", (int(f["size"]),))
            found.setdefault(o.prefix, o)
        if record.get("graph"):
            o = _Object("graphs", record["graph"], f"{where}: layer graph")
            found.setdefault(o.prefix, o)
        o = _Object("versions", vid, f"{where}: version record")
        found.setdefault(o.prefix, o)
    return list(found.values())


def _present(store: Store, obj: _Object) -> bool:
    if obj.kind == "tensors":
        return store.has_tensor(obj.digest)
    return store.backend.exists(f"{obj.prefix}/zarr.json")


def _verify(obj: _Object, data: dict[str, bytes], pool: ThreadPoolExecutor) -> None:
    """Check the bytes in hand against the object's name before anything is written."""
    meta = data.get(f"{obj.prefix}/zarr.json")
    if meta is None:
        raise CorruptObject(f"{obj.what}: {obj.kind[:-1]} object {obj.digest[:12]} is missing at the source")
    if obj.kind in ("tensors", "files"):
        # Decode with the store's own reader over exactly these bytes, so any encoding it knows is checked.
        scratch = Backend(MemoryStore())
        scratch.set_many(list(data.items()))
        read_tensors(scratch, [TensorRead(obj.prefix, obj.dtype, obj.shape, obj.digest, obj.what)], pool, _noop)
        return
    doc = parse_group_node(meta, obj.what)
    if content_id(doc) != obj.digest:
        raise CorruptObject(f"{obj.what}: record {obj.digest[:12]} does not match its hash (it was altered)")


def _noop(_: int) -> None:
    pass


def _copy(src: Store, dst: Store, obj: _Object, verify_pool: ThreadPoolExecutor) -> int:
    if obj.kind == "tensors" and not archived.is_committed(src.backend, obj.digest):
        # An archived (PAS) tensor has no commit form to copy key by key, and its deltas need their
        # bases: it travels in its commit form, decoded and hash-checked by the store's own reader.
        tensor = src.read_tensor(obj.digest, obj.dtype, obj.shape, obj.what)
        write_tensor(dst.backend, obj.prefix, tensor, obj.digest, dst.pool, _noop)
        return archived.stored_bytes(dst.backend, obj.digest)
    keys = list(src.backend.list_prefix(f"{obj.prefix}/"))
    data = {k: v for k, v in zip(keys, src.backend.get_many(keys), strict=True) if v is not None}
    _verify(obj, data, verify_pool)
    meta_key = f"{obj.prefix}/zarr.json"
    body = [(k, v) for k, v in data.items() if k != meta_key]
    # Visible last: the metadata that makes the object exist goes after all its chunks.
    if body:
        dst.backend.set_many(body)
    dst.backend.set(meta_key, data[meta_key])
    return sum(len(v) for v in data.values())


def transfer(
    src: Store,
    dst: Store,
    version_id: str,
    name_for: Callable[[str], str],
    desc: str,
) -> TransferReport:
    """Copy ``version_id`` and its ancestors from ``src`` to ``dst``; ``name_for(model)`` names them there."""
    report = TransferReport(src.location, dst.location)
    ids = lineage(src, version_id)
    objects = _objects(src, ids)
    # The lease keeps a gc on the destination off these objects until their refs exist; it is also
    # the first write, so a destination we may not write to says so before any data moves.
    lease = dst.take_lease(o.prefix.removeprefix("objects/") for o in objects)
    try:
        present = list(dst.pool.map(lambda o: _present(dst, o), objects))
        missing = [o for o, ok in zip(objects, present, strict=True) if not ok]
        report.objects_present = len(objects) - len(missing)
        # Largest first: the long transfers start early and the small ones fill the gaps.
        missing.sort(key=lambda o: o.nbytes, reverse=True)
        total = sum(max(o.nbytes, 1) for o in missing)
        lock = threading.Lock()
        with (
            tqdm(total=total, unit="B", unit_scale=True, desc=desc, delay=1.0, leave=False) as bar,
            ThreadPoolExecutor(WORKERS, thread_name_prefix="nbmodelhub-transfer") as workers,
            ThreadPoolExecutor(WORKERS, thread_name_prefix="nbmodelhub-verify") as verify_pool,
        ):

            def one(obj: _Object) -> None:
                sent = _copy(src, dst, obj, verify_pool)
                with lock:
                    report.objects_sent += 1
                    report.bytes_sent += sent
                    bar.update(max(obj.nbytes, 1))

            futures = [workers.submit(one, o) for o in missing]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in futures:
                if future in done or not future.cancelled():
                    future.result()
        _make_refs(src, dst, ids, name_for, report)
    finally:
        dst.release(lease)
    return report


def _make_refs(src: Store, dst: Store, ids: list[str], name_for: Callable[[str], str], report: TransferReport) -> None:
    known = {r.version_id: f"{r.model}@{r.number}" for r in dst.refs.all_versions()}
    for vid in ids:
        if vid in known:
            report.existing.append(known[vid])
        else:
            ref = src.refs.ref_of(vid)
            model = name_for(ref[0] if ref else src.get_document("versions", vid, vid[:12])["model"])
            number = dst.refs.allocate(model, vid)
            known[vid] = f"{model}@{number}"
            report.created.append(known[vid])
        report.ref = known[vid]
