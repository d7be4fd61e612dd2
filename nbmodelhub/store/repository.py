"""The repository on disk (or in any zarr store): content-addressed objects plus refs.

Layout (one zarr v3 hierarchy; every node has a ``zarr.json``)::

    zarr.json                          root group; attributes.nbmodelhub = {"format": 1}
    objects/tensors/<blake3>/          a tensor: a plain zarr array (see tensors.py)
    objects/files/<blake3>/            an attached file: a uint8 zarr array
    objects/versions/<blake3>/         a version record: group attributes (see api.py)
    objects/graphs/<blake3>/           a layer graph: group attributes
    objects/evals/<blake3>/            an evaluation of a version (see evaluations.py)
    objects/archive/<blake3>/          a tensor's archived (PAS) encoding (see archived.py)
    refs/models/<name>/...             version numbers, tags, tombstones (refs.py), evaluations
    refs/staging/<user>/<key>/         files staged by `add` for the user's next commit
    refs/leases/<token>/               objects an unfinished commit is about to reference
    refs/gc-lock/                      present while a gc runs
    refs/archive-lock/                 present while an archive runs

Objects are immutable and written before anything refers to them; a version becomes visible
when its number ref is created, last. So a crash leaves the repository as it was plus
unreferenced objects, which ``gc`` removes. ``gc`` and commits meet through leases and the gc
lock: a commit writes its lease, then checks the lock; gc takes the lock, then reads the leases.
Whatever the interleaving, either gc sees the lease or the commit sees the lock and waits.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from zarr.abc.store import Store as ZarrStore

from nbmodelhub.errors import ConcurrentUpdate, CorruptObject, NotARepository
from nbmodelhub.store import archive as pas
from nbmodelhub.store import archived, evaluations
from nbmodelhub.store.backend import Backend, open_zarr_store
from nbmodelhub.store.documents import content_id, group_node, parse_group_node
from nbmodelhub.store.planes import keep, planes_for
from nbmodelhub.store.refs import Refs, current_user
from nbmodelhub.store.repair import Damage, repair
from nbmodelhub.store.tensors import (
    STORAGE_DTYPES,
    Layout,
    Tensor,
    TensorRead,
    decode_chunk,
    iter_tensor,
    read_metadata,
    read_tensors,
    tensor_hash,
    write_tensor,
)

FORMAT = 1
KINDS = ("tensors", "files", "versions", "graphs", "evals", "archive")
LEASE_TTL = 24 * 3600.0
GC_LOCK_TTL = 15 * 60.0
_GROUPS = ["objects", *(f"objects/{k}" for k in KINDS), "refs", "refs/models", "refs/staging", "refs/leases"]

Progress = Callable[[int], None]
R = TypeVar("R")


def _noop(_: int) -> None:
    pass


@dataclass
class FsckReport:
    problems: list[str] = field(default_factory=list)
    versions: int = 0
    objects: int = 0
    bytes_checked: int = 0
    debris: int = 0
    repaired: list[str] = field(default_factory=list)  # with a repair: what was restored, and from where
    unrepaired: list[str] = field(default_factory=list)  # ... and what could not be, and why
    damaged: list[Damage] = field(default_factory=list)  # the objects behind ``problems``

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class GcReport:
    removed: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    bytes_freed: int = 0


def _dead_here(lease: Mapping[str, Any]) -> bool:
    """A lease taken on this machine by a process that no longer exists protects nothing."""
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return False
    try:
        os.kill(lease["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Store:
    """Objects and refs of one repository. Knows zarr, not frameworks."""

    def __init__(self, location: str | os.PathLike[str] | ZarrStore | None, read_only: bool = False) -> None:
        self.backend = Backend(open_zarr_store(location, read_only))
        self.refs = Refs(self.backend)
        # More threads than cores: while some wait on storage, others decode or hash.
        self.pool = ThreadPoolExecutor(max_workers=max(6, 3 * (os.cpu_count() or 2)), thread_name_prefix="nbmodelhub")
        self._records: dict[str, dict[str, Any]] = {}
        self._open()

    @property
    def location(self) -> str:
        return self.backend.location

    def _open(self) -> None:
        raw = self.backend.get("zarr.json")
        if raw is None and self.backend.read_only:
            raise NotARepository(f"no repository at {self.location}: create it with `dlv init {self.location}`")
        if raw is None:
            # A concurrent first writer (four publishers to a new hub) may have just made the root.
            if any(True for _ in self.backend.list_prefix("")) and self.backend.get("zarr.json") is None:
                raise NotARepository(
                    f"{self.location} holds other data, not an nbmodelhub repository: use an empty folder"
                )
            self.backend.create("zarr.json", group_node({"nbmodelhub": {"format": FORMAT}}))
            raw = self.backend.get("zarr.json") or b""
        attrs = parse_group_node(raw, f"the repository root of {self.location}")
        info = attrs.get("nbmodelhub")
        if not isinstance(info, dict):
            raise NotARepository(f"{self.location} is a zarr hierarchy but not an nbmodelhub repository")
        if int(info.get("format", 0)) > FORMAT:
            raise NotARepository(f"{self.location} was written by a newer nbmodelhub: upgrade the package")
        if not self.backend.read_only and self.backend.get("refs/models/zarr.json") is None:
            for group in _GROUPS:
                self.backend.create(f"{group}/zarr.json", group_node({}))

    # -- tensors -------------------------------------------------------------------------------
    def hash_tensors(self, tensors: Mapping[str, Tensor]) -> dict[str, str]:
        names = list(tensors)
        digests = self.pool.map(lambda n: tensor_hash(tensors[n]), names)
        return dict(zip(names, digests, strict=True))

    def has_tensor(self, digest: str) -> bool:
        """True if the tensor is stored, in its commit form or archived."""
        return archived.is_committed(self.backend, digest) or self.backend.exists(
            f"{archived.ARCHIVE}/{digest}/zarr.json"
        )

    def missing_tensors(self, digests: Iterable[str]) -> list[str]:
        unique = sorted(set(digests))
        present = list(self.pool.map(self.has_tensor, unique))
        return [d for d, ok in zip(unique, present, strict=True) if not ok]

    def write_tensor(self, digest: str, tensor: Tensor, progress: Progress = _noop) -> None:
        write_tensor(self.backend, f"objects/tensors/{digest}", tensor, digest, self.pool, progress)

    def read_tensors(
        self,
        items: list[tuple[str, str, tuple[int, ...], str]],
        progress: Progress = _noop,
        verify: bool = True,
        precision: str | None = None,
        resolver: archived.Resolver | None = None,
        beyond: str | None = None,
    ) -> list[Tensor]:
        """Read whole tensors given as (digest, dtype, shape, what) — in parallel, hash-checked.

        With ``precision`` ("bf16", "fp16") floats come back truncated to it: archived tensors
        then read only their high-order planes (each plane chunk checked against its hash).
        With ``beyond`` only the planes a read at that precision left out are read (the rest
        zero): OR it into that read to complete it.
        """
        resolver = resolver or archived.Resolver(self.backend)
        forms = [resolver.form(digest, what) for digest, _, _, what in items]
        reads = [TensorRead(f"objects/tensors/{d}", dt, sh, d, what) for d, dt, sh, what in items]
        counts = [planes_for(dt, precision) for _, dt, _, _ in items]
        firsts = [0 if beyond is None else planes_for(dt, beyond) for _, dt, _, _ in items]
        out: list[Tensor | None] = [None] * len(items)
        committed = [i for i, f in enumerate(forms) if f is None]
        if committed:
            got = read_tensors(self.backend, [reads[i] for i in committed], self.pool, progress, verify)
            for i, tensor in zip(committed, got, strict=True):
                keep(tensor.array, firsts[i], counts[i])
                out[i] = tensor
        packed = [i for i, f in enumerate(forms) if f is not None]
        if packed:
            got = archived.read_tensors(
                resolver,
                [reads[i] for i in packed],
                [counts[i] for i in packed],
                self.pool,
                progress,
                verify,
                [firsts[i] for i in packed],
            )
            for i, tensor in zip(packed, got, strict=True):
                out[i] = tensor
        return [t for t in out if t is not None]

    def read_tensor(
        self,
        digest: str,
        dtype: str,
        shape: tuple[int, ...],
        what: str,
        progress: Progress = _noop,
        verify: bool = True,
    ) -> Tensor:
        return self.read_tensors([(digest, dtype, shape, what)], progress, verify)[0]

    def iter_tensor(self, digest: str, dtype: str, shape: tuple[int, ...], what: str) -> Iterator[np.ndarray]:
        """Stream a tensor's rows chunk by chunk with bounded memory (see tensors.iter_tensor)."""
        resolver = archived.Resolver(self.backend)
        read = TensorRead(f"objects/tensors/{digest}", dtype, shape, digest, what)
        if resolver.form(digest, what) is None:
            return iter_tensor(self.backend, read.path, dtype, shape, digest, self.pool, what)
        return archived.iter_rows(resolver, read, self.pool)

    def map_chunks(
        self, digest: str, dtype: str, shape: tuple[int, ...], what: str, fn: Callable[[np.ndarray], R]
    ) -> list[R]:
        """``fn`` over every chunk's rows, in parallel and NOT hash-checked.

        Only for numbers that merely steer a verified pass (e.g. histogram ranges): the caller must
        read the tensor again through ``iter_tensor`` or ``read_tensors``, which check the hash.
        """
        resolver = archived.Resolver(self.backend)
        read = TensorRead(f"objects/tensors/{digest}", dtype, shape, digest, what)
        count = Layout.plan(shape, STORAGE_DTYPES[dtype]).chunk_count
        if resolver.form(digest, what) is None:
            return list(self.pool.map(lambda i: fn(decode_chunk(self.backend, read, i)), range(count)))
        return list(self.pool.map(lambda i: fn(resolver.chunk_rows(read, i)), range(count)))

    # -- files -----------------------------------------------------------------------------------
    @staticmethod
    def file_hash(data: bytes) -> str:
        return tensor_hash(Tensor("uint8", np.frombuffer(data, dtype=np.uint8)))

    def put_file(self, data: bytes) -> str:
        tensor = Tensor("uint8", np.frombuffer(data, dtype=np.uint8))
        digest = tensor_hash(tensor)
        if read_metadata(self.backend, f"objects/files/{digest}") is None:
            write_tensor(self.backend, f"objects/files/{digest}", tensor, digest, self.pool, _noop)
        return digest

    def get_file(self, digest: str, size: int, what: str) -> bytes:
        path = f"objects/files/{digest}"
        if read_metadata(self.backend, path) is None:
            raise CorruptObject(f"{what}: file object {digest[:12]} is missing")
        read = TensorRead(path, "uint8", (size,), digest, what)
        return read_tensors(self.backend, [read], self.pool, _noop)[0].array.tobytes()

    # -- documents -------------------------------------------------------------------------------
    def put_document(self, kind: str, doc: Mapping[str, Any]) -> str:
        digest = content_id(doc)
        self.backend.create(f"objects/{kind}/{digest}/zarr.json", group_node(doc))
        return digest

    def get_document(self, kind: str, digest: str, what: str) -> dict[str, Any]:
        cached = self._records.get(digest)
        if cached is not None:
            return cached
        raw = self.backend.get(f"objects/{kind}/{digest}/zarr.json")
        if raw is None:
            raise CorruptObject(f"{what}: its {kind[:-1]} record {digest[:12]} is missing")
        doc = parse_group_node(raw, f"{what}: {kind[:-1]} record {digest[:12]}")
        if content_id(doc) != digest:
            raise CorruptObject(f"{what}: {kind[:-1]} record {digest[:12]} does not match its hash (it was altered)")
        self._records[digest] = doc
        return doc

    def prefetch_documents(self, kind: str, digests: Iterable[str]) -> None:
        """Read many documents in one batch of concurrent reads, so ``get_document`` finds them cached.

        Only documents that parse and match their hash are kept; ``get_document`` reports the rest.
        """
        missing = [d for d in dict.fromkeys(digests) if d not in self._records]
        raws = self.backend.get_many([f"objects/{kind}/{d}/zarr.json" for d in missing])
        for digest, raw in zip(missing, raws, strict=True):
            if raw is None:
                continue
            try:
                doc = parse_group_node(raw, f"{kind[:-1]} record {digest[:12]}")
            except CorruptObject:
                continue
            if content_id(doc) == digest:
                self._records[digest] = doc

    def add_version(
        self, model: str, record: Mapping[str, Any], documents: Iterable[tuple[str, Mapping[str, Any]]] = ()
    ) -> tuple[str, int]:
        """Write a version record and give it the next number of ``model``: (its id, its number).

        gc cannot see a version before its ref exists, so from the record's write to the ref's, the
        record and every object it names are leased; ``documents`` (kind, doc) — its layer graph —
        are written again under the lease, as a gc that ran since they were written may have taken them.
        """
        version_id = content_id(record)
        lease = self.take_lease({f"versions/{version_id}", *self.record_objects(record)})
        try:
            for kind, doc in documents:
                self.put_document(kind, doc)
            self.put_document("versions", record)
            return version_id, self.refs.allocate(model, version_id)
        finally:
            self.release(lease)

    def document_ids(self, kind: str) -> list[str]:
        return [d for d in self.backend.list_dir(f"objects/{kind}/") if d != "zarr.json"]

    # -- staging ----------------------------------------------------------------------------------
    def stage(self, entry: Mapping[str, Any], author: str) -> None:
        key = hashlib.sha1(str(entry["name"]).encode()).hexdigest()
        prefix = f"refs/staging/{author}/{key}"
        self.backend.create(f"refs/staging/{author}/zarr.json", group_node({}))
        # A re-add of the same name replaces the staged entry (staging is the user's scratch area).
        self.backend.set(f"{prefix}/zarr.json", group_node(dict(entry)))

    def staged(self, author: str) -> dict[str, dict[str, Any]]:
        keys = [k for k in self.backend.list_dir(f"refs/staging/{author}/") if k != "zarr.json"]
        raws = self.backend.get_many([f"refs/staging/{author}/{k}/zarr.json" for k in keys])
        return {k: parse_group_node(r, "a staged file") for k, r in zip(keys, raws, strict=True) if r is not None}

    def unstage(self, author: str, keys: Iterable[str]) -> None:
        for key in keys:
            self.backend.delete(f"refs/staging/{author}/{key}/zarr.json")

    # -- leases and the gc lock ---------------------------------------------------------------------
    def take_lease(self, objects: Iterable[str], wait: float = GC_LOCK_TTL) -> str:
        """Protect ``objects`` (``kind/hash``) from a concurrent gc until ``release``."""
        token = uuid.uuid4().hex
        doc = {
            "objects": sorted(set(objects)),
            "time": time.time(),
            "author": current_user(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self.backend.set(f"refs/leases/{token}/zarr.json", group_node(doc))
        deadline = time.monotonic() + wait
        while self._gc_lock_held():
            if time.monotonic() > deadline:
                self.release(token)
                raise ConcurrentUpdate("a gc has held the repository for too long: retry, or `dlv gc --break-lock`")
            time.sleep(0.1)
        return token

    def release(self, token: str) -> None:
        # The whole folder: on a local disk an empty one per commit would pile up, and every gc
        # lists refs/leases/ and reads each entry (after 2,000 commits, 2,000 empty folders).
        self.backend.delete_prefix(f"refs/leases/{token}")

    def _gc_lock_held(self) -> bool:
        raw = self.backend.get("refs/gc-lock/zarr.json")
        if raw is None:
            return False
        try:
            holder = json.loads(raw)["attributes"]
            started = float(holder["time"])
        except (ValueError, KeyError, TypeError):
            return True
        return time.time() - started < GC_LOCK_TTL and not _dead_here(holder)

    def _leased(self) -> set[str]:
        leased: set[str] = set()
        now = time.time()
        for token in self.backend.list_dir("refs/leases/"):
            if token == "zarr.json":
                continue
            raw = self.backend.get(f"refs/leases/{token}/zarr.json")
            if raw is None:
                continue
            try:
                doc = json.loads(raw)["attributes"]
            except (ValueError, KeyError):
                continue
            if now - float(doc.get("time", 0)) < LEASE_TTL and not _dead_here(doc):
                leased.update(doc.get("objects", []))
            else:
                self.release(token)  # an abandoned commit's lease
        return leased

    # -- reachability, gc, fsck ---------------------------------------------------------------------
    def live_versions(self) -> list[tuple[str, int, str]]:
        return [(r.model, r.number, r.version_id) for r in self.refs.all_versions()]

    @staticmethod
    def record_objects(record: Mapping[str, Any]) -> set[str]:
        objects = {f"tensors/{t['hash']}" for s in record.get("snapshots", []) for t in s["tensors"].values()}
        objects |= {f"files/{f['hash']}" for f in record.get("files", [])}
        if record.get("graph"):
            objects.add(f"graphs/{record['graph']}")
        return objects

    def gc(self, break_lock: bool = False) -> GcReport:
        lock = "refs/gc-lock/zarr.json"
        if break_lock:
            self.backend.delete(lock)
        # host and pid: a gc killed on this machine must not stall every commit for GC_LOCK_TTL.
        holder = {"time": time.time(), "token": uuid.uuid4().hex, "author": current_user()}
        if not self.backend.create(lock, group_node({**holder, "host": socket.gethostname(), "pid": os.getpid()})):
            if self._gc_lock_held():
                raise ConcurrentUpdate(
                    "another gc is running on this repository: wait for it, or `dlv gc --break-lock` if it died"
                )
            self.backend.delete(lock)
            return self.gc()
        try:
            listed = {kind: self.document_ids(kind) for kind in KINDS}
            leased = self._leased()
            live: set[str] = set(leased)
            for model, number, vid in self.live_versions():
                live.add(f"versions/{vid}")
                live |= self.record_objects(self.get_document("versions", vid, f"{model}@{number}"))
                live |= evaluations.live_objects(self.backend, model, number)
            # A tensor lives in its commit form, its archived encoding, or both; a delta keeps its bases.
            live |= pas.live_closure(self, [k.split("/", 1)[1] for k in live if k.startswith("tensors/")])
            for user in self.backend.list_dir("refs/staging/"):
                if user != "zarr.json":
                    live |= {f"files/{e['hash']}" for e in self.staged(user).values()}
            report = GcReport()
            for prefix in pas.leftovers(self, live, leased):
                report.bytes_freed += int(self._size(prefix))
                self.backend.delete_prefix(prefix)
                report.removed["archive leftovers"] = report.removed.get("archive leftovers", 0) + 1
            for kind, digests in listed.items():
                for digest in digests:
                    if f"{kind}/{digest}" in live:
                        report.kept += 1
                        continue
                    report.bytes_freed += int(self._size(f"objects/{kind}/{digest}"))
                    # Metadata first: a gc killed halfway through the chunks must not leave an object
                    # that looks whole, which a later commit of the same content would dedup against.
                    self.backend.delete(f"objects/{kind}/{digest}/zarr.json")
                    self.backend.delete_prefix(f"objects/{kind}/{digest}")
                    report.removed[kind] = report.removed.get(kind, 0) + 1
            return report
        finally:
            self.backend.delete(lock)

    def _size(self, prefix: str) -> int:
        from zarr.core.sync import sync

        try:
            return int(sync(self.backend.store.getsize_prefix(prefix)))
        except (NotImplementedError, FileNotFoundError):
            return 0

    def fsck(self, progress: Progress = _noop, repair_from: Store | None = None) -> FsckReport:
        """Re-hash every reachable object; report each problem naming the object and version.

        With ``repair_from`` (another repository, e.g. a hub) every damaged or missing object it
        has is fetched, checked against its hash, and put back (see repair.py); then the check runs
        again, so the report says what is still wrong. A restored version record can reveal damage
        behind it, hence a few rounds.
        """
        report = self._fsck(progress)
        if repair_from is None:
            return report
        tried: set[str] = set()
        repaired: list[str] = []
        unrepaired: dict[str, str] = {}
        for _ in range(3):
            todo = [d for d in report.damaged if d.key not in tried]
            if not todo:
                break
            tried |= {d.key for d in todo}
            done, failed = repair(self, repair_from, todo, progress)
            repaired += done
            unrepaired.update(failed)
            self._records.clear()
            report = self._fsck(progress)
        report.repaired = repaired
        report.unrepaired = list(unrepaired.values())
        return report

    def forget_document(self, digest: str) -> None:
        self._records.pop(digest, None)

    def _fsck(self, progress: Progress) -> FsckReport:
        report = FsckReport()

        def counted(n: int) -> None:
            report.bytes_checked += n
            progress(n)

        verdicts: dict[str, str | None] = {}  # object → problem, checked once however often shared
        damaged: dict[str, Damage] = {}
        for model, number, vid in self.live_versions():
            where = f"{model}@{number}"
            report.versions += 1
            try:
                record = self.get_document("versions", vid, where)
            except CorruptObject as exc:
                report.problems.append(str(exc))
                damaged.setdefault(f"versions/{vid}", Damage("versions", vid, f"{where}: version record"))
                continue
            for key, what in self._objects_of(record, where):
                if key not in verdicts:
                    problem = self._check(key, record, what, counted)
                    # Kept without the first user's name, so each version sharing it is named once.
                    verdicts[key] = problem and (problem[len(what) :] if problem.startswith(what) else f": {problem}")
                problem = verdicts[key]
                if problem:
                    report.problems.append(f"{what}{problem}")
                    damage = self._damage(key, record, what)
                    damaged.setdefault(damage.key, damage)
        report.problems += sorted(self.refs.broken.values())
        for model, number in sorted(self.refs.broken):
            damaged.setdefault(f"refs/{model}@{number}", Damage("refs", f"{model}@{number}", f"ref {model}@{number}"))
        report.damaged = list(damaged.values())
        report.objects = len(verdicts)
        debris = {
            f"objects/{kind}/{digest}"
            for kind in ("tensors", "files")
            for digest in self.document_ids(kind)
            if read_metadata(self.backend, f"objects/{kind}/{digest}") is None
        }
        # a set: a half-removed commit form is both an incomplete object and an archive leftover
        report.debris = len(debris | set(pas.leftovers(self, None, set())))
        return report

    @staticmethod
    def _damage(key: str, record: Mapping[str, Any], what: str) -> Damage:
        kind, digest, *rest = key.split("/", 2)
        if kind == "tensors":
            for snap in record["snapshots"]:
                t = snap["tensors"].get(rest[0])
                if t is not None and t["hash"] == digest:
                    return Damage(kind, digest, what, t["dtype"], tuple(t["shape"]))
        if kind == "files":
            size = next(int(f["size"]) for f in record["files"] if f["hash"] == digest)
            return Damage(kind, digest, what, "uint8", (size,))
        return Damage(kind, digest, what)

    @staticmethod
    def _objects_of(record: Mapping[str, Any], where: str) -> Iterator[tuple[str, str]]:
        for snap in record.get("snapshots", []):
            step = f" (step {snap['step']})" if snap.get("step") is not None else ""
            for name, t in snap["tensors"].items():
                yield f"tensors/{t['hash']}/{name}", f"{where}: tensor {name!r}{step}"
        for f in record.get("files", []):
            yield f"files/{f['hash']}", f"{where}: file {f['name']!r}"
        if record.get("graph"):
            yield f"graphs/{record['graph']}", f"{where}: layer graph"

    def _check(self, key: str, record: Mapping[str, Any], what: str, progress: Progress) -> str | None:
        kind, digest, *rest = key.split("/", 2)
        try:
            if kind == "tensors":
                name = rest[0]
                for snap in record["snapshots"]:
                    t = snap["tensors"].get(name)
                    if t is not None and t["hash"] == digest:
                        self.read_tensor(digest, t["dtype"], tuple(t["shape"]), what, progress)
                        if archived.is_committed(self.backend, digest):  # else that read was the archived form
                            pas.check(self, digest, t["dtype"], tuple(t["shape"]), what, progress)
                        break
            elif kind == "files":
                size = next(f["size"] for f in record["files"] if f["hash"] == digest)
                self.get_file(digest, size, what)
            else:
                self.get_document(kind, digest, what)
        except CorruptObject as exc:
            return str(exc)
        return None

    def archive(
        self,
        models: list[str] | None = None,
        max_chain: int | None = pas.DEFAULT_MAX_CHAIN,
        max_recreate_bytes: int | None = None,
        unpack: bool = False,
        progress: Callable[[str, int], Any] | None = None,
    ) -> pas.ArchiveReport:
        """Re-encode snapshots into the compact PAS form (or back with ``unpack``); see archive.py."""
        return pas.run(self, models, max_chain, max_recreate_bytes, unpack, progress)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
