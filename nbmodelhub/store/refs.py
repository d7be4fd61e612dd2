"""Refs: the only mutable state, kept as an append-only set of tiny documents.

Every change creates a new key with an atomic create-if-absent, which both local disks (O_EXCL)
and object storage (If-None-Match) provide; nothing is ever overwritten, so a concurrent writer
can lose a race but never a version:

    refs/models/<name>/versions/<N>       → {"version": <id>}  — version N of the model
    refs/models/<name>/deleted/<N>        → tombstone: version N is hidden; gc reclaims it
    refs/models/<name>/tags/<tag>/<seq>   → {"number": N}; the highest seq is the tag's target
    refs/events/<day>/<slot>/<event>      → a change about to happen, for the catalog (catalog.py)

Numbers are allocated by trying to create ``versions/<max+1>`` and retrying on a lost race, so they
are contiguous from 1. The highest is found without listing the folder (which costs O(versions) per
commit): ``versions/zarr.json`` carries a hint, ``{"highest": N}``, rewritten after each allocation,
and the truth is found by probing upward from it. The hint is only ever low (it is written after
the ref it names), so a stale or lost one costs a few probes, never a wrong number.
Refs are immutable once created, so they are cached per process.
"""

from __future__ import annotations

import getpass
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from nbmodelhub.errors import ConcurrentUpdate, CorruptObject, UsageError
from nbmodelhub.store.backend import Backend
from nbmodelhub.store.catalog import note_change
from nbmodelhub.store.documents import check_name, group_node, parse_group_node

MODELS = "refs/models/"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER", "unknown")


@dataclass(frozen=True)
class VersionRef:
    model: str
    number: int
    version_id: str


def _numbers(names: list[str]) -> list[int]:
    # ASCII only: a stray folder named '²' passes isdigit() but not int().
    return sorted(int(n) for n in names if n.isascii() and n.isdigit())


class Refs:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._ids: dict[tuple[str, int], str] = {}
        self._refs: dict[str, tuple[str, int]] = {}
        self._highest: dict[str, int] = {}
        self._ensured: set[str] = set()
        # Change events this process wrote, until its catalog applies them (saves reading them back).
        self.written_events: dict[str, dict[str, Any]] = {}
        # Garbled refs are skipped (one bad ref must not hide every other version) and reported here.
        self.broken: dict[tuple[str, int], str] = {}

    # -- reading -------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return [m for m in self.backend.list_dir(MODELS) if m != "zarr.json"]

    def numbers(self, model: str, include_deleted: bool = False) -> list[int]:
        numbers = _numbers(self.backend.list_dir(f"{MODELS}{model}/versions/"))
        if include_deleted:
            return numbers
        hidden = self.deleted(model)
        return [n for n in numbers if n not in hidden]

    def deleted(self, model: str) -> set[int]:
        return set(_numbers(self.backend.list_dir(f"{MODELS}{model}/deleted/")))

    def version_ids(self, model: str, numbers: list[int]) -> dict[int, str]:
        missing = [n for n in numbers if (model, n) not in self._ids]
        if missing:
            keys = [f"{MODELS}{model}/versions/{n}/zarr.json" for n in missing]
            for n, raw in zip(missing, self.backend.get_many(keys), strict=True):
                if raw is None:
                    continue
                try:
                    attrs = parse_group_node(raw, f"ref {model}@{n}")
                    version_id = attrs["version"]
                    if not isinstance(version_id, str):
                        raise CorruptObject(f"ref {model}@{n} is garbled: run `dlv fsck`")
                except (CorruptObject, KeyError) as exc:
                    garbled = f"ref {model}@{n} is garbled: run `dlv fsck`"
                    self.broken[(model, n)] = str(exc) if isinstance(exc, CorruptObject) else garbled
                    continue
                self.broken.pop((model, n), None)
                self._ids[(model, n)] = version_id
                self._refs[version_id] = (model, n)
        return {n: self._ids[(model, n)] for n in numbers if (model, n) in self._ids}

    def highest(self, model: str) -> int:
        """The highest number ever allocated to ``model`` (deleted versions included; 0 if none)."""
        start = max(self._highest.get(model, 0), self._hint(model))
        if start == 0:
            numbers = _numbers(self.backend.list_dir(f"{MODELS}{model}/versions/"))
            start = numbers[-1] if numbers else 0
        number = start
        while self.backend.exists(f"{MODELS}{model}/versions/{number + 1}/zarr.json"):
            number += 1
        self._highest[model] = number
        return number

    def _hint(self, model: str) -> int:
        raw = self.backend.get(f"{MODELS}{model}/versions/zarr.json")
        try:
            hint = parse_group_node(raw, f"refs of {model}").get("highest", 0) if raw is not None else 0
        except CorruptObject:
            return 0  # only a hint: the listing finds the truth
        return hint if isinstance(hint, int) and hint > 0 else 0

    def latest(self, model: str) -> tuple[int, str] | None:
        """The newest visible version. A number whose ref is missing or unreadable is passed over."""
        hidden = self.deleted(model)
        number = self.highest(model)
        while number > 0:
            # newest first, a few refs per read: the newest visible one is almost always the first
            batch = [n for n in range(number, max(number - 8, 0), -1) if n not in hidden]
            ids = self.version_ids(model, batch)
            for n in batch:
                if n in ids:
                    return n, ids[n]
                if (model, n) in self.broken:
                    return None
            number -= 8
        return None

    def known(self, version_id: str) -> tuple[str, int] | None:
        """The (model, number) of ``version_id`` if this process has read or written its ref (no I/O)."""
        return self._refs.get(version_id)

    def ref_of(self, version_id: str) -> tuple[str, int] | None:
        """The (model, number) that names ``version_id``, if any ref does."""
        if version_id not in self._refs:
            self.all_versions(include_deleted=True)
        return self._refs.get(version_id)

    def all_versions(self, include_deleted: bool = False) -> list[VersionRef]:
        out = []
        for model in self.models():
            numbers = self.numbers(model, include_deleted)
            for n, vid in self.version_ids(model, numbers).items():
                out.append(VersionRef(model, n, vid))
        return out

    def tags(self, model: str) -> dict[str, int]:
        tags: dict[str, int] = {}
        for tag in self.backend.list_dir(f"{MODELS}{model}/tags/"):
            if tag == "zarr.json":
                continue
            seqs = _numbers(self.backend.list_dir(f"{MODELS}{model}/tags/{tag}/"))
            # The highest seq whose ref is there: a move killed (or still running) after making its
            # folder but before its ref landed must leave the tag where it was, not drop it.
            for seq in reversed(seqs):
                raw = self.backend.get(f"{MODELS}{model}/tags/{tag}/{seq}/zarr.json")
                if raw is not None:
                    tags[tag] = int(parse_group_node(raw, f"tag {model}:{tag}")["number"])
                    break
        return tags

    # -- writing -------------------------------------------------------------------------------
    def _ensure_model(self, model: str) -> None:
        if model in self._ensured:
            return  # groups are never removed: once made, made for good
        for sub in ("", "versions/", "deleted/", "tags/"):
            self.backend.create(f"{MODELS}{model}/{sub}zarr.json", group_node({}))
        self._ensured.add(model)

    def _noted(self, event: tuple[str, dict[str, Any]]) -> None:
        if len(self.written_events) >= 10_000:
            self.written_events.clear()  # a process that never lists: its catalog will read them instead
        self.written_events[event[0]] = event[1]

    def _create(self, key: str, attributes: dict[str, Any]) -> bool:
        doc = {**attributes, "token": uuid.uuid4().hex, "author": current_user(), "time": time.time()}
        return self.backend.create(key, group_node(doc))

    def allocate(self, model: str, version_id: str, attempts: int = 1000) -> int:
        """Give ``version_id`` the next free number of ``model`` (compare-and-swap loop)."""
        check_name(model)
        self._ensure_model(model)
        number = self.highest(model) + 1
        for _ in range(attempts):
            self._noted(note_change(self.backend, model, "version", number=number))
            if self._create(f"{MODELS}{model}/versions/{number}/zarr.json", {"version": version_id}):
                self._ids[(model, number)] = version_id
                self._refs[version_id] = (model, number)
                self._highest[model] = max(self._highest.get(model, 0), number)
                # Rewritten, not created: racing writers may leave it a little low, which probing absorbs.
                self.backend.set(f"{MODELS}{model}/versions/zarr.json", group_node({"highest": number}))
                return number
            number += 1  # lost the race for this number: the winner holds it for good
        raise ConcurrentUpdate(f"could not number a new version of {model}: too many concurrent writers, retry")

    def delete(self, model: str, number: int) -> None:
        self._noted(note_change(self.backend, model, "deleted", number=number))
        self._create(f"{MODELS}{model}/deleted/{number}/zarr.json", {"number": number})

    def set_tag(self, model: str, tag: str, number: int, force: bool = False) -> None:
        check_name(tag, "tag name")
        self._ensure_model(model)
        current = self.tags(model)
        if tag in current and current[tag] != number and not force:
            raise UsageError(f"tag {model}:{tag} already points at {model}@{current[tag]}: pass --force to move it")
        if current.get(tag) == number:
            return
        self.backend.create(f"{MODELS}{model}/tags/{tag}/zarr.json", group_node({}))
        while True:
            seqs = _numbers(self.backend.list_dir(f"{MODELS}{model}/tags/{tag}/"))
            seq = (seqs[-1] if seqs else 0) + 1
            self._noted(note_change(self.backend, model, "tag", tag=tag))
            if self._create(f"{MODELS}{model}/tags/{tag}/{seq}/zarr.json", {"number": number}):
                return
