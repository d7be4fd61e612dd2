"""``fsck --repair``: fetch damaged or missing objects again from another repository (a hub).

Objects are named by their content hash, so the hub's copy of an object either is exactly the right
one or fails its hash: nothing from the hub is written before it passes the same check a load does.
Every write replaces one key atomically (a local write goes to a temporary file, then renames; an
object-store PUT is atomic), and a repaired key only ever receives correct bytes for the same hash,
so a repair killed midway leaves each object as good as before or better — never worse. A good
object is never deleted: the only thing removed is the pointer to a damaged archived encoding, and
only once the commit form it was archived from is back and checked.

Refs are not content-addressed. A garbled ``model@N`` is restored only when the hub's ``model@N``
names a version whose record this repository holds under the same model name and no other ref here
names: then it can only have been that version. Anything else is reported, not guessed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nbmodelhub.errors import CorruptObject
from nbmodelhub.store import archive as pas
from nbmodelhub.store import archived
from nbmodelhub.store.documents import content_id, group_node, parse_group_node
from nbmodelhub.store.refs import MODELS, current_user
from nbmodelhub.store.tensors import Tensor, read_metadata, write_tensor

if TYPE_CHECKING:
    from nbmodelhub.store.repository import Store

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Damage:
    """One damaged or missing object (or ref), as fsck found it; ``what`` names it for messages."""

    kind: str  # tensors, files, graphs, versions, refs
    digest: str  # the object's hash; for a ref, "model@N"
    what: str
    dtype: str = "uint8"
    shape: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.digest}"


class _HubLacks(Exception):
    """The hub cannot give this object; the message says why."""


def repair(
    store: Store, source: Store, damaged: list[Damage], progress: Progress
) -> tuple[list[str], dict[str, str]]:
    """Restore what ``source`` has of ``damaged`` into ``store``: what was repaired, and by
    ``Damage.key`` what was not and why."""
    unique = list({d.key: d for d in damaged}.values())
    repaired: list[str] = []
    failed: dict[str, str] = {}
    hub = source.location
    # A concurrent gc must not take a half-restored commit form for archive debris.
    lease = store.take_lease(d.key for d in unique if d.kind != "refs")
    try:
        for d in unique:
            try:
                done = _REPAIRS[d.kind](store, source, d, progress)
            except _HubLacks as exc:
                failed[d.key] = f"{d.what}: not repaired: {exc}"
            except CorruptObject as exc:
                failed[d.key] = f"{d.what}: not repaired: the copy at {hub} is damaged too ({exc})"
            else:
                repaired.append(f"{d.what}: {done} from {hub}")
    finally:
        store.release(lease)
    return repaired, failed


def _tensor(store: Store, source: Store, d: Damage, progress: Progress) -> str:
    path = f"objects/{d.kind}/{d.digest}"
    if d.kind == "tensors":
        if not source.has_tensor(d.digest):
            raise _HubLacks(f"{source.location} has no copy of tensor {d.digest[:12]}")
        tensor = source.read_tensor(d.digest, d.dtype, d.shape, f"{d.what} at {source.location}")
    else:
        if read_metadata(source.backend, path) is None:
            raise _HubLacks(f"{source.location} has no copy of file {d.digest[:12]}")
        data = source.get_file(d.digest, d.shape[0], f"{d.what} at {source.location}")
        tensor = Tensor("uint8", np.frombuffer(data, dtype=np.uint8))
    # read_tensor/get_file checked the hash above: only the right bytes reach the write.
    write_tensor(store.backend, path, tensor, d.digest, store.pool, progress)
    if d.kind == "tensors" and _drop_damaged_encoding(store, d):
        return f"restored tensor {d.digest[:12]} (its damaged archived form dropped; `dlv archive` re-packs it)"
    return f"restored {d.kind[:-1]} {d.digest[:12]}"


def _drop_damaged_encoding(store: Store, d: Damage) -> bool:
    """Unpoint a damaged archived encoding now that the commit form is back; gc reclaims it."""
    pointer = f"{archived.ARCHIVE}/{d.digest}/zarr.json"
    if store.backend.get(pointer) is None:
        return False
    store.read_tensor(d.digest, d.dtype, d.shape, d.what)  # the commit form is back and whole
    try:
        pas.check(store, d.digest, d.dtype, d.shape, d.what, lambda _: None)
        return False
    except CorruptObject:
        store.backend.delete(pointer)
        return True


def _document(store: Store, source: Store, d: Damage, progress: Progress) -> str:
    key = f"objects/{d.kind}/{d.digest}/zarr.json"
    raw = source.backend.get(key)
    if raw is None:
        raise _HubLacks(f"{source.location} has no copy of {d.kind[:-1]} record {d.digest[:12]}")
    if content_id(parse_group_node(raw, f"{d.what} at {source.location}")) != d.digest:
        raise CorruptObject(f"its {d.kind[:-1]} record {d.digest[:12]} does not match its hash")
    store.backend.set(key, raw)
    store.forget_document(d.digest)
    return f"restored {d.kind[:-1]} record {d.digest[:12]}"


def _ref(store: Store, source: Store, d: Damage, progress: Progress) -> str:
    model, _, text = d.digest.rpartition("@")
    number = int(text)
    version_id = source.refs.version_ids(model, [number]).get(number)
    if version_id is None:
        raise _HubLacks(f"{source.location} has no ref {d.digest} to compare with")
    raw = store.backend.get(f"objects/versions/{version_id}/zarr.json")
    record = None if raw is None else parse_group_node(raw, f"version record {version_id[:12]}")
    named = store.refs.ref_of(version_id)
    if record is None or record.get("model") != model or named is not None:
        raise _HubLacks(
            f"{source.location}'s {d.digest} is a different version from any this repository could have had there"
        )
    doc = {
        "version": version_id,
        "token": uuid.uuid4().hex,
        "author": current_user(),
        "time": time.time(),
        "repaired_from": source.location,
    }
    store.backend.set(f"{MODELS}{model}/versions/{number}/zarr.json", group_node(doc))
    store.refs.broken.pop((model, number), None)
    return f"restored ref (version {version_id[:12]})"


_REPAIRS: dict[str, Callable[[Store, Store, Damage, Progress], str]] = {
    "tensors": _tensor,
    "files": _tensor,
    "graphs": _document,
    "versions": _document,
    "refs": _ref,
}
