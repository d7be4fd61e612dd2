"""The catalog: a disposable index of every visible version, so listing and querying skip the refs walk.

Listing 10,000 versions the slow way means one directory listing per model and one record read
per version. The catalog keeps, in one key of the repository (``catalog/index.json.zst``), what
``Repository.versions()`` and DQL need of each version: its ref, id, tags and record (the last
snapshot's tensors only). It is never the source of truth (DESIGN.md principle 5): missing,
damaged or from another format, it is rebuilt from the refs and records.

Staying fresh without walking the refs: every ref change first writes a tiny *change event*
(``refs/events/<day>/<slot>/<time>-<token>``, written by ``Refs`` before the ref itself). A
refresh lists only the event slots since its mark and re-reads the refs those events name. Events
are written *before* their ref, so an event whose ref is not there yet is kept pending and looked
at again on later refreshes (for ``PENDING_SECONDS``; a writer that died in between made no
version). Slots are re-listed ``SKEW_SECONDS`` back, so a writer whose clock lags a little is not
missed. Many processes may refresh and save at once: a save replaces the whole index atomically,
and an older index that wins the race only means the next reader replays a few more events.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zstandard

from nbmodelhub.errors import CorruptObject, DiskFull, ReadOnlyRepository
from nbmodelhub.store.backend import Backend
from nbmodelhub.store.documents import group_node, parse_group_node

if TYPE_CHECKING:  # pragma: no cover
    from nbmodelhub.store.repository import Store

FORMAT = 1
INDEX_KEY = "catalog/index.json.zst"
EVENTS = "refs/events/"
SLOT_SECONDS = 10
SKEW_SECONDS = 60.0
PENDING_SECONDS = 600.0


_KNOWN_SLOTS: set[tuple[str, str]] = set()


def _slot_of(t: float) -> tuple[int, int]:
    seconds = int(t)
    return seconds // 86400, (seconds % 86400) // SLOT_SECONDS


def note_change(backend: Backend, model: str, kind: str, **info: Any) -> tuple[str, dict[str, Any]]:
    """Record that a ref of ``model`` is about to change (``kind``: version, deleted, tag).

    Returns the event's key and document, so the writing process need not read them back."""
    now = time.time()
    day, slot = _slot_of(now)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}"
    doc = {"model": model, "kind": kind, "time": now, **info}
    slot_key = f"{EVENTS}{day}/{slot:04d}/"
    if (backend.location, slot_key) not in _KNOWN_SLOTS:
        # Group nodes keep the hierarchy browsable by any zarr client; once per slot and process.
        for group in (EVENTS, f"{EVENTS}{day}/", slot_key):
            backend.create(f"{group}zarr.json", group_node({}))
        _KNOWN_SLOTS.add((backend.location, slot_key))
    backend.set(f"{slot_key}{name}/zarr.json", group_node(doc))
    return f"{slot_key}{name}", doc


@dataclass(frozen=True)
class Entry:
    """One visible version as the catalog holds it."""

    model: str
    number: int
    id: str
    record: dict[str, Any]  # the version record with only its last snapshot's tensors


def _slim(record: dict[str, Any]) -> dict[str, Any]:
    snaps = record.get("snapshots") or []
    slim = dict(record)
    slim["snapshots"] = [{"step": s.get("step"), "tensors": {}, "ties": {}} for s in snaps[:-1]] + snaps[-1:]
    return slim


class Catalog:
    """Per-process view of the catalog; ``refresh`` is cheap when little changed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.backend = store.backend
        self._models: dict[str, dict[str, Any]] = {}
        self._seen: dict[str, float] = {}  # event key → its time, for events inside the skew window
        self._pending: dict[str, dict[str, Any]] = {}  # event key → event, ref not yet visible
        self._mark = 0.0  # events before this time (less the skew) are all applied
        self._loaded = False
        self._by_id: dict[str, tuple[str, int]] | None = None

    # -- reading ---------------------------------------------------------------------------------
    def entries(self, model: str | None = None, fresh: bool = True) -> list[Entry]:
        """Visible versions, oldest first per model; ``fresh=False`` skips the refresh (the caller just did it)."""
        if fresh:
            self.refresh()
        out = []
        models = [model] if model is not None else sorted(self._models)
        for m in models:
            info = self._models.get(m)
            if info is None:
                continue
            hidden = set(info["deleted"])
            for n in sorted(info["versions"], key=int):
                v = info["versions"][n]
                if int(n) not in hidden and v["record"] is not None:
                    out.append(Entry(m, int(n), v["id"], v["record"]))
        return out

    def models(self, fresh: bool = True) -> list[str]:
        if fresh:
            self.refresh()
        return sorted(m for m, info in self._models.items() if set(map(int, info["versions"])) - set(info["deleted"]))

    def tags(self, model: str, fresh: bool = True) -> dict[str, int]:
        if fresh:
            self.refresh()
        return dict(self._models.get(model, {}).get("tags", {}))

    def ref_of(self, version_id: str) -> tuple[str, int] | None:
        """The (model, number) naming ``version_id`` (deleted versions included) as the catalog last saw it."""
        if not self._loaded:
            self.refresh()
        if self._by_id is None:
            self._by_id = {
                v["id"]: (m, int(n)) for m, info in self._models.items() for n, v in info["versions"].items()
            }
        return self._by_id.get(version_id)

    def add(self, model: str, number: int, version_id: str, record: dict[str, Any]) -> None:
        """Index a version this process just committed, so its change event needs no ref or record read."""
        if not self._loaded:
            return  # the first read loads the index and replays the event like any other
        info = self._models.setdefault(model, {"versions": {}, "deleted": [], "tags": {}})
        # as a reader would see it: the stored document is JSON
        info["versions"][str(number)] = {"id": version_id, "record": _slim(json.loads(json.dumps(record)))}
        self._by_id = None

    # -- keeping fresh -----------------------------------------------------------------------------
    def refresh(self) -> None:
        if not self._loaded:
            self._loaded = True
            if not self._load():
                self.rebuild()
                return
        changed = self._apply(self._new_events())
        if changed:
            self._save()

    def rebuild(self) -> None:
        """Forget everything and index every visible version again from the refs and records."""
        # Recent events first, then the refs: an event always precedes its ref, so whatever the
        # walk misses is either pending among these events or announced by a later one.
        self._mark, self._seen, self._pending = time.time(), {}, {}
        recent = self._new_events()
        refs = self.store.refs
        models: dict[str, dict[str, Any]] = {}
        for model in refs.models():
            numbers = refs.numbers(model, include_deleted=True)
            hidden = refs.deleted(model)
            info: dict[str, Any] = {"versions": {}, "deleted": sorted(hidden), "tags": refs.tags(model)}
            ids = refs.version_ids(model, numbers)
            self.store.prefetch_documents("versions", [vid for n, vid in ids.items() if n not in hidden])
            for n, vid in ids.items():
                # A deleted version keeps only its id (for naming parents): gc may have taken its record.
                info["versions"][str(n)] = {"id": vid, "record": {}} if n in hidden else self._entry(model, n, vid)
            models[model] = info
        self._models = models
        self._by_id = None
        self._apply(recent)
        self._save()

    def _entry(self, model: str, number: int, version_id: str) -> dict[str, Any]:
        try:
            record = self.store.get_document("versions", version_id, f"{model}@{number}")
        except CorruptObject:
            # A deleted version's record is gc's to take, but its number ref stays, so a rebuild or the
            # replay of its old "version" event still meets it: keep its id (to name parents). Any
            # other damaged record must not hide every other version: it is left out of listings
            # (fsck names it; `discard` after a repair brings it back).
            return {"id": version_id, "record": {} if number in self.store.refs.deleted(model) else None}
        return {"id": version_id, "record": _slim(record)}

    def _new_events(self) -> dict[str, dict[str, Any]]:
        """Events not applied yet: keys → documents (pending ones included)."""
        since = self._mark - SKEW_SECONDS
        first_day, first_slot = _slot_of(max(since, 0.0))
        keys: list[str] = []
        for day_text in self.backend.list_dir(EVENTS):
            if not day_text.isdigit() or int(day_text) < first_day:
                continue
            day = int(day_text)
            for slot_text in self.backend.list_dir(f"{EVENTS}{day_text}/"):
                if not slot_text.isdigit() or (day == first_day and int(slot_text) < first_slot):
                    continue
                prefix = f"{EVENTS}{day_text}/{slot_text}/"
                keys += [prefix + n for n in self.backend.list_dir(prefix) if n != "zarr.json"]
        fresh = [k for k in keys if k not in self._seen and k not in self._pending]
        docs: dict[str, dict[str, Any]] = dict(self._pending)
        written = self.store.refs.written_events  # this process's own events: known without a read
        docs.update({k: written.pop(k) for k in fresh if k in written})
        fresh = [k for k in fresh if k not in docs]
        for key, raw in zip(fresh, self.backend.get_many([f"{k}/zarr.json" for k in fresh]), strict=True):
            if raw is None:
                continue
            try:
                docs[key] = parse_group_node(raw, "a catalog change event")
            except CorruptObject:
                continue
        return docs

    def _apply(self, events: dict[str, dict[str, Any]]) -> bool:
        if not events:
            return False
        refs = self.store.refs
        self._prefetch(events)
        now = time.time()
        changed = False
        replayed = set(self._pending)
        self._pending = {}
        for key, event in sorted(events.items()):
            model, kind = str(event.get("model", "")), event.get("kind")
            settled = True
            info = self._models.setdefault(model, {"versions": {}, "deleted": [], "tags": {}})
            if kind == "version":
                number = int(event.get("number", 0))
                if str(number) not in info["versions"]:
                    ids = refs.version_ids(model, [number])
                    if number in ids:
                        info["versions"][str(number)] = self._entry(model, number, ids[number])
                        self._by_id = None
                        changed = True
                    else:
                        settled = False
            elif kind == "deleted":
                number = int(event.get("number", 0))
                if number not in info["deleted"]:
                    if number in refs.deleted(model):
                        info["deleted"] = sorted([*info["deleted"], number])
                        changed = True
                    else:
                        settled = False
            elif kind == "tag":
                tags = refs.tags(model)
                changed |= tags != info["tags"]
                info["tags"] = tags
                settled = event.get("tag") in tags
            when = float(event.get("time", now))
            if not settled and now - when < PENDING_SECONDS:
                self._pending[key] = event
            else:
                self._seen[key] = when
        # Only events inside the skew window can still be listed again; forget the older ones.
        self._mark = max([self._mark, *self._seen.values()])
        horizon = self._mark - 2 * SKEW_SECONDS
        self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        return changed or any(k not in replayed for k in events)

    def _prefetch(self, events: dict[str, dict[str, Any]]) -> None:
        """Read the refs and records of new versions in batches, not two round trips per event."""
        wanted: dict[str, list[int]] = {}
        for event in events.values():
            model, number = str(event.get("model", "")), event.get("number")
            known = self._models.get(model, {}).get("versions", {})
            if event.get("kind") == "version" and isinstance(number, int) and str(number) not in known:
                wanted.setdefault(model, []).append(number)
        ids = [vid for model, numbers in wanted.items() for vid in self.store.refs.version_ids(model, numbers).values()]
        self.store.prefetch_documents("versions", ids)

    # -- persistence -------------------------------------------------------------------------------
    def _load(self) -> bool:
        raw = self.backend.get(INDEX_KEY)
        if raw is None:
            return False
        try:
            doc = json.loads(zstandard.ZstdDecompressor().decompress(raw))
            if doc.get("format") != FORMAT:
                return False
            self._models = doc["models"]
            self._seen = {str(k): float(v) for k, v in doc["seen"].items()}
            self._pending = dict(doc["pending"])
            self._mark = float(doc["mark"])
        except (ValueError, KeyError, TypeError, zstandard.ZstdError):
            return False  # a damaged index is rebuilt, never trusted
        self._by_id = None
        return True

    def _save(self) -> None:
        if self.backend.read_only:
            return
        doc = {"format": FORMAT, "mark": self._mark, "seen": self._seen, "pending": self._pending,
               "models": self._models}  # fmt: skip
        data = zstandard.ZstdCompressor(level=1).compress(json.dumps(doc, separators=(",", ":")).encode())
        try:
            self.backend.set(INDEX_KEY, data)
        except (ReadOnlyRepository, DiskFull):
            # The index only saves time: a read-only mount or a full disk must not fail `list`;
            # the next reader replays the events or rebuilds, as after a crash.
            pass

    def discard(self) -> None:
        """Delete the saved index too, so every process rebuilds it (after a repair changed records)."""
        if not self.backend.read_only:
            self.backend.delete(INDEX_KEY)
        self.forget()

    def forget(self, models: Iterable[str] = ()) -> None:
        """Drop what this process holds (or only some models), so the next read replays or rebuilds."""
        models = list(models)
        if not models:
            self._loaded = False
            self._models = {}
        for m in models:
            self._models.pop(m, None)
        self._by_id = None
