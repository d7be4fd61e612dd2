"""``archive``: re-encode a repository's snapshots into the compact PAS form, and back (``unpack``).

The plan (archive_plan.py) says how each tensor is to be stored. Tensors are then re-encoded one
at a time, each base before the tensors stored as its deltas, and each one crash-safely: the new
encoding is written beside the old form, read back through the ordinary reader and checked against
the tensor's hash, and only then made current (one atomic write) and the old form removed. A
process killed at any point leaves every tensor readable, bit for bit; running archive again
finishes the work, and ``gc`` removes the half-written leftovers.

One archive runs at a time per repository (a lock under ``refs/archive-lock``, taken over when its
holder died on this machine). Its tensors are leased, so a concurrent ``gc`` keeps everything.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from nbmodelhub.errors import ConcurrentUpdate, UsageError
from nbmodelhub.store import archived
from nbmodelhub.store.archive_plan import ROOT, Node, Placement, plan, sample_positions
from nbmodelhub.store.documents import group_node, parse_group_node
from nbmodelhub.store.refs import current_user
from nbmodelhub.store.tensors import Tensor, TensorRead, flat_bytes, write_tensor

if TYPE_CHECKING:
    from nbmodelhub.store.repository import Store

LOCK = "refs/archive-lock/zarr.json"
DEFAULT_MAX_CHAIN = 3

Progress = Callable[[int], None]


@dataclass
class ArchiveReport:
    """What an archive (or unpack) run did."""

    models: list[str] = field(default_factory=list)
    versions: int = 0
    tensors: int = 0
    whole: int = 0
    deltas: int = 0
    rewritten: int = 0  # tensors whose stored form changed in this run
    unchanged: int = 0  # already stored as planned
    bytes_before: int = 0  # stored bytes of these tensors before the run
    bytes_after: int = 0
    logical_bytes: int = 0  # their uncompressed size
    longest_chain: int = 0
    max_recreate_bytes: int = 0  # the most stored bytes read to recreate any one tensor (estimated)
    seconds: float = 0.0
    unpacked: bool = False

    @property
    def ratio(self) -> float:
        return self.bytes_after / self.bytes_before if self.bytes_before else 1.0


@dataclass(frozen=True)
class Selection:
    nodes: dict[str, Node]
    names: dict[str, str]  # hash → a "model@N: tensor 'name'" for messages
    related: list[tuple[str, str]]
    models: list[str]
    versions: int


def select(store: Store, models: list[str] | None) -> Selection:
    """The tensors of every snapshot of every version of ``models`` (None: all), and their relations."""
    refs = store.live_versions()
    known = sorted({m for m, _, _ in refs})
    if models is not None:
        unknown = [m for m in models if m not in known]
        if unknown:
            raise UsageError(f"no model {unknown[0]!r} here; models: {', '.join(known) or 'none'}")
    chosen = [(m, n, vid) for m, n, vid in refs if models is None or m in models]
    records = {vid: store.get_document("versions", vid, f"{m}@{n}") for m, n, vid in chosen}
    nodes: dict[str, Node] = {}
    names: dict[str, str] = {}
    related: list[tuple[str, str]] = []
    for m, n, vid in chosen:
        snaps = records[vid]["snapshots"]
        for i, snap in enumerate(snaps):
            for name, t in snap["tensors"].items():
                nodes.setdefault(t["hash"], Node(t["hash"], t["dtype"], tuple(t["shape"])))
                names.setdefault(t["hash"], f"{m}@{n}: tensor {name!r}")
            # Related: the previous snapshot of this version, or the last snapshot of each parent.
            befores = (
                [snaps[i - 1]]
                if i
                else [
                    records[p]["snapshots"][-1]
                    for p in records[vid].get("parents", [])
                    if p in records and records[p]["snapshots"]
                ]
            )
            for before in befores:
                for name, t in snap["tensors"].items():
                    other = before["tensors"].get(name)
                    if other is not None and other["hash"] != t["hash"]:
                        related.append((other["hash"], t["hash"]))
    return Selection(nodes, names, related, sorted({m for m, _, _ in chosen}), len(chosen))


# -- the lock --------------------------------------------------------------------------------------


def _lock(store: Store) -> str:
    token = uuid.uuid4().hex
    doc = {
        "time": time.time(),
        "token": token,
        "author": current_user(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    for _ in range(2):
        if store.backend.create(LOCK, group_node(doc)):
            return token
        raw = store.backend.get(LOCK)
        holder = parse_group_node(raw, "the archive lock") if raw else {}
        if raw is not None and not _holder_dead(holder):
            raise ConcurrentUpdate(
                f"another archive is running on this repository (pid {holder.get('pid')} on {holder.get('host')}, "
                f"by {holder.get('author')}): wait for it to finish"
            )
        store.backend.delete(LOCK)  # its holder died: it left every tensor readable, take over
    raise ConcurrentUpdate("could not take the archive lock: retry")


def _holder_dead(holder: dict[str, Any]) -> bool:
    from nbmodelhub.store.repository import _dead_here

    return _dead_here(holder)


def _unlock(store: Store, token: str) -> None:
    raw = store.backend.get(LOCK)
    if raw is not None and parse_group_node(raw, "the archive lock").get("token") == token:
        store.backend.delete(LOCK)


# -- archive ---------------------------------------------------------------------------------------


def run(
    store: Store,
    models: list[str] | None,
    max_chain: int | None = DEFAULT_MAX_CHAIN,
    max_recreate_bytes: int | None = None,
    unpack: bool = False,
    progress: Callable[[str, int], Any] | None = None,
) -> ArchiveReport:
    """Archive (or unpack) the snapshots of ``models`` (None: every model). See the module docstring.

    ``progress(stage, total)`` is called at the start of each stage and returns a callable taking
    increments (the API hands in a tqdm factory).
    """
    for value, what in ((max_chain, "max_chain"), (max_recreate_bytes, "max_recreate_bytes")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise UsageError(f"{what} must be a whole number ≥ 0 (or None for no bound), got {value!r}")
    if store.backend.read_only:
        raise UsageError(f"the repository at {store.location} is read-only: archive needs to rewrite it")
    start = time.perf_counter()
    bar = progress or (lambda stage, total: lambda n: None)
    token = _lock(store)
    try:
        selection = select(store, models)
        lease = store.take_lease([f"{k}/{h}" for h in selection.nodes for k in ("tensors", "archive")])
        try:
            report = ArchiveReport(
                models=selection.models, versions=selection.versions, tensors=len(selection.nodes), unpacked=unpack
            )
            report.logical_bytes = sum(n.nbytes for n in selection.nodes.values())
            report.bytes_before = sum(
                store.pool.map(lambda h: archived.stored_bytes(store.backend, h), list(selection.nodes))
            )
            if unpack:
                _unpack(store, selection, report, bar("unpack", report.logical_bytes))
            else:
                placements = plan(
                    selection.nodes,
                    selection.related,
                    lambda node: _sample(store, node, selection.names[node.hash]),
                    max_chain,
                    max_recreate_bytes,
                    bar("plan", len(selection.nodes)),
                )
                _execute(store, selection, placements, report, bar("archive", report.logical_bytes))
            report.bytes_after = sum(
                store.pool.map(lambda h: archived.stored_bytes(store.backend, h), list(selection.nodes))
            )
        finally:
            store.release(lease)
    finally:
        _unlock(store, token)
    report.seconds = time.perf_counter() - start
    return report


def _sample(store: Store, node: Node, what: str) -> np.ndarray:
    """The node's sampled elements (flat bytes), read from its first chunk in whatever form it is."""
    if node.nbytes == 0:
        return np.zeros(0, dtype=np.uint8)
    read = TensorRead("", node.dtype, node.shape, node.hash, what)
    rows = archived.Resolver(store.backend).chunk_rows(read, 0)
    elements = np.ascontiguousarray(rows).reshape(-1)
    picked = elements[sample_positions(elements.size, elements.size)]
    return flat_bytes(np.ascontiguousarray(picked))


def _dfs(placements: dict[str, Placement]) -> Iterator[tuple[str, int]]:
    """Each tensor after its base, depth-first, so a base is usually still in memory for its deltas."""
    tree = nx.DiGraph()
    tree.add_node(ROOT)
    for node, p in placements.items():
        tree.add_edge(p.base or ROOT, node)
    depth = {ROOT: -1}
    for parent, node in nx.dfs_edges(tree, ROOT):
        depth[node] = depth[parent] + 1
        yield node, depth[node]


def _execute(
    store: Store, selection: Selection, placements: dict[str, Placement], report: ArchiveReport, progress: Progress
) -> None:
    branch: list[str] = []  # the current branch of the plan, root first
    cache: dict[str, Tensor] = {}  # tensors of that branch already read: the next one's base

    def tensor(digest: str) -> Tensor:
        if digest not in cache:
            node = selection.nodes[digest]
            cache[digest] = store.read_tensor(digest, node.dtype, node.shape, selection.names[digest])
        return cache[digest]

    for digest, depth in _dfs(placements):
        for gone in branch[depth:]:
            cache.pop(gone, None)
        del branch[depth:]
        branch.append(digest)
        node, place = selection.nodes[digest], placements[digest]
        report.longest_chain = max(report.longest_chain, place.chain)
        report.max_recreate_bytes = max(report.max_recreate_bytes, place.recreate_bytes)
        if place.base is None:
            report.whole += 1
        else:
            report.deltas += 1
        want = "whole" if place.base is None else f"{place.op}-{place.base}"
        current = archived.current_encoding(store.backend, digest)
        if current is not None and current.name == want:
            report.unchanged += 1
            _drop_commit_form(store, digest)  # a run killed after the switch may have left it
            progress(node.nbytes)
            continue
        base = None if place.base is None else tensor(place.base)
        enc = archived.write_encoding(
            store.backend, store.pool, digest, tensor(digest), place.base, base, place.op, progress
        )
        _verify(store, node, enc, selection.names[digest])
        archived.make_current(store.backend, enc)
        _drop_commit_form(store, digest)
        if current is not None:
            store.backend.delete_prefix(current.path)
        report.rewritten += 1


def _verify(store: Store, node: Node, enc: archived.Encoding, what: str) -> None:
    """Read the new encoding back from storage (its chain included) and check the tensor's hash."""
    resolver = archived.Resolver(store.backend)
    resolver._forms[node.hash] = enc  # this encoding, not the current form
    store.read_tensors([(node.hash, node.dtype, node.shape, f"{what} (new archived encoding)")], resolver=resolver)


def _drop_commit_form(store: Store, digest: str) -> None:
    """Remove the commit form once an archived encoding is current: metadata first, so it is never half-there."""
    prefix = f"{archived.COMMITTED}/{digest}"
    if store.backend.exists(f"{prefix}/zarr.json"):
        store.backend.delete(f"{prefix}/zarr.json")
    # Always: a tensor with no chunks (an empty one) would otherwise leave its folder on a local disk.
    store.backend.delete_prefix(prefix)


def _unpack(store: Store, selection: Selection, report: ArchiveReport, progress: Progress) -> None:
    """Back to the commit form: write it, check it, then drop the archived form."""
    for digest, node in selection.nodes.items():
        enc = archived.current_encoding(store.backend, digest)
        if enc is None:
            progress(node.nbytes)
            continue
        if not archived.is_committed(store.backend, digest):
            tensor = store.read_tensor(digest, node.dtype, node.shape, selection.names[digest])
            write_tensor(store.backend, f"{archived.COMMITTED}/{digest}", tensor, digest, store.pool, progress)
            store.read_tensor(digest, node.dtype, node.shape, selection.names[digest])  # prefers the commit form
        else:
            progress(node.nbytes)
        store.backend.delete(f"{archived.ARCHIVE}/{digest}/zarr.json")
        store.backend.delete_prefix(f"{archived.ARCHIVE}/{digest}")
        report.rewritten += 1
        report.whole += 1


# -- gc and fsck -----------------------------------------------------------------------------------


def live_closure(store: Store, digests: Iterable[str]) -> set[str]:
    """``tensors/h`` and ``archive/h`` keys of these tensors and of every base their encodings need."""
    keys: set[str] = set()
    todo = list(digests)
    seen: set[str] = set()
    while todo:
        batch = [d for d in set(todo) if d not in seen]
        todo = []
        seen.update(batch)
        for digest, enc in zip(batch, store.pool.map(lambda d: _current_or_none(store, d), batch), strict=True):
            keys.add(f"tensors/{digest}")
            keys.add(f"archive/{digest}")
            if enc is not None and enc.base is not None:
                todo.append(enc.base)
    return keys


def _current_or_none(store: Store, digest: str) -> archived.Encoding | None:
    try:
        return archived.current_encoding(store.backend, digest)
    except Exception:  # a garbled pointer: fsck reports it; gc must not die on it
        return None


def leftovers(store: Store, live: set[str] | None, leased: set[str]) -> list[str]:
    """Prefixes of half-done archive work no reader uses: unfinished or superseded encodings, and
    commit forms whose metadata is already gone while an archived encoding is current.

    Only live tensors (``live`` holds ``archive/<hash>`` keys; None: all) that no running archive
    or commit has leased; an unreferenced archive object goes whole in ``gc``.
    """
    out: list[str] = []
    # Listed, not merely holding keys: an archive killed inside the removal of a commit form (rmtree
    # on a local disk) can leave only empty folders, which fsck counts as debris and gc must take.
    commit_forms = set(store.document_ids("tensors"))
    for digest in store.document_ids("archive"):
        key = f"archive/{digest}"
        if (live is not None and key not in live) or key in leased or f"tensors/{digest}" in leased:
            continue
        has_pointer = store.backend.get(f"{archived.ARCHIVE}/{digest}/zarr.json") is not None
        enc = _current_or_none(store, digest)
        if has_pointer and enc is None:
            continue  # garbled: leave it for a human (fsck reports it)
        for name in store.backend.list_dir(f"{archived.ARCHIVE}/{digest}/"):
            if name != "zarr.json" and (enc is None or name != enc.name):
                out.append(f"{archived.ARCHIVE}/{digest}/{name}")
        committed_debris = enc is not None and not archived.is_committed(store.backend, digest)
        if committed_debris and digest in commit_forms:
            out.append(f"{archived.COMMITTED}/{digest}")
    return out


def check(store: Store, digest: str, dtype: str, shape: tuple[int, ...], what: str, progress: Progress) -> None:
    """Verify a tensor's archived encoding (if it has one) by decoding it and checking the hash."""
    enc = archived.current_encoding(store.backend, digest)
    if enc is None:
        return
    resolver = archived.Resolver(store.backend, prefer_archive=frozenset({digest}))
    store.read_tensors([(digest, dtype, shape, f"{what} (archived)")], progress, resolver=resolver)
