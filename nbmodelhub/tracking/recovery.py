"""Runs as any process sees them: listed from their journals, committed or discarded after a crash.

A run whose process died (SIGKILL, kernel restart, power cut of the notebook) keeps every point
it logged and every snapshot it stored; ``open_run`` takes it over so it can be committed.
Runs committed on another machine (object-storage repositories spool journals locally) are
still listed, from the run stamp their version record carries.
"""

from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmodelhub.errors import CorruptObject, UsageError
from nbmodelhub.store.documents import decode_number
from nbmodelhub.tracking import journal
from nbmodelhub.tracking.state import Curve, RunState

if TYPE_CHECKING:
    from nbmodelhub.api import Repository
    from nbmodelhub.tracking.run import Run

STATUSES = ("running", "interrupted", "committed", "discarded")


def _iso(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return ""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class RunInfo:
    """A run seen from outside: its header, what it logged so far, how it stands."""

    id: str
    model: str
    status: str
    author: str
    host: str
    pid: int | None
    started: str
    updated: str
    params: dict[str, Any]
    parents: tuple[str, ...]
    message: str
    last_step: int | None
    points: int
    metrics: dict[str, Any]
    snapshots: tuple[int | None, ...]
    version: str | None
    curves: dict[str, Curve] = field(default_factory=dict, repr=False)
    folder: Path | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.status == "running"

    def to_dict(self, curves: bool = False) -> dict[str, Any]:
        out = {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "author": self.author,
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "updated": self.updated,
            "params": self.params,
            "parents": list(self.parents),
            "message": self.message,
            "last_step": self.last_step,
            "points": self.points,
            "metrics": self.metrics,
            "snapshots": list(self.snapshots),
            "version": self.version,
        }
        if curves:
            out["curves"] = {k: [list(xs), list(ys)] for k, (xs, ys) in self.curves.items()}
        return out

    def show(self) -> Any:
        """Live curves of this run (they keep growing while another process logs to it)."""
        from nbmodelhub.widgets.run_curves import RunCurves

        return RunCurves(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.show()._repr_mimebundle_(**kwargs)


# Journals only grow: a long-lived process (the sidebar's server polling every few seconds) reads
# each one once and then only what was appended since.
_FOLLOWED: dict[Path, tuple[journal.Tail, RunState]] = {}
_FOLLOWED_LOCK = threading.Lock()


def _followed(folder: Path) -> RunState:
    with _FOLLOWED_LOCK:
        tail, state = _FOLLOWED.get(folder) or _FOLLOWED.setdefault(folder, (journal.Tail(folder), RunState()))
        state.apply(tail.read())
        return state


def info_from_journal(folder: Path, state: RunState | None = None) -> RunInfo:
    header = journal.read_header(folder)
    state = state if state is not None else _followed(folder)
    end = state.end or {}
    return RunInfo(
        id=folder.name,
        model=str(header["model"]),
        status=state.status(folder),
        author=str(header.get("author", "")),
        host=str(header.get("host", "")),
        pid=header.get("pid"),
        started=_iso(header.get("started")),
        updated=_iso(state.updated or header.get("started")),
        params=dict(header.get("params", {})),
        parents=tuple(header.get("parent_refs", [])),
        message=str(header.get("message", "")),
        last_step=state.last_step,
        points=state.points,
        metrics=state.latest(),
        snapshots=tuple(state.snapshot_steps()),
        version=end.get("ref") if end.get("k") == "commit" else None,
        curves={k: (list(xs), list(ys)) for k, (xs, ys) in state.curves.items()},  # a snapshot: the run goes on
        folder=folder,
    )


def info_from_version(repo: Repository, version: Any, stamp: dict[str, Any]) -> RunInfo:
    curves: dict[str, Curve] = {k: ([s for s, _ in c], [v for _, v in c]) for k, c in version.curves.items()}
    return RunInfo(
        id=str(stamp.get("id", "")),
        model=version.model,
        status="committed",
        author=version.author,
        host=str(stamp.get("host", "")),
        pid=None,
        started=_iso(stamp.get("started")),
        updated=version.created,
        params=version.params,
        parents=version.parent_refs,
        message=version.message,
        last_step=max((xs[-1] for xs, _ in curves.values() if xs), default=None),
        points=max((len(xs) for xs, _ in curves.values()), default=0),
        metrics={k: decode_number(v) for k, v in version.metrics.items()},
        snapshots=version.snapshot_steps,
        version=version.ref,
        curves=curves,
    )


def list_runs(
    repo: Repository,
    active: bool | None = None,
    author: str | None = None,
    model: str | None = None,
    status: str | None = None,
) -> list[RunInfo]:
    """Runs oldest first. ``active=True``: only running ones; ``False``: only the others."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"status is one of {', '.join(STATUSES)}, got {status!r}")
    root = journal.runs_root(repo.store.backend.store, repo.location)
    found: list[RunInfo] = []
    for folder in journal.run_folders(root):
        try:
            header = journal.read_header(folder)
        except CorruptObject:
            continue  # a damaged header hides one run, not all of them
        if (model is not None and header["model"] != model) or (author is not None and header.get("author") != author):
            continue
        found.append(info_from_journal(folder))
    if active is not True and status in (None, "committed"):
        seen = {r.id for r in found}
        for version in repo.versions(model=model) if model is None or model in repo.models() else []:
            stamp = repo.store.get_document("versions", version.id, version.ref).get("run")
            mine = author is None or version.author == author
            if isinstance(stamp, dict) and stamp.get("id") not in seen and mine:
                found.append(info_from_version(repo, version, stamp))
    if active is not None:
        found = [r for r in found if r.active == active]
    if status is not None:
        found = [r for r in found if r.status == status]
    return sorted(found, key=lambda r: (r.started, r.id))


def open_run(repo: Repository, run_id: str) -> Run:
    """Take over an interrupted run (to commit or discard it); refuses one a live process owns."""
    from nbmodelhub.tracking.run import start

    return start(repo, None, resume=run_id)


def run_info(repo: Repository, run_id: str) -> RunInfo:
    root = journal.runs_root(repo.store.backend.store, repo.location)
    return info_from_journal(journal.find_run(root, run_id))
