"""A run's journal: one folder per run, a header and an append-only file of JSON lines.

::

    runs/<id>/run.json        the header: model, params, parents, author, host, pid, start time
    runs/<id>/journal.jsonl   one event per line: log, snapshot, resume, stop, commit, discard

Each event is written with a single unbuffered ``os.write`` on an ``O_APPEND`` descriptor, so
the kernel holds every logged point the moment ``run.log`` returns: a SIGKILL, a kernel restart
or a crash loses nothing. The process that owns a run holds an exclusive ``flock`` on its
journal for as long as it runs; the kernel drops it when the process dies, so any reader can
tell a running run from an interrupted one without trusting pids (which get reused).

For a repository in a local folder the journals live inside it (``<repo>/runs/``), beside
``objects/`` and ``refs/``, so every process on the machine sees them. For object storage
(``s3://…``) and ``memory://`` repositories an append-only file cannot live in the store: the
journals are spooled on the training machine (``$MODELHUB_RUNS_DIR``, else
``~/.cache/nbmodelhub/runs/<hash of the location>``) and the run becomes a version in the
repository when it is committed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
from zarr.storage import LocalStore

from nbmodelhub.errors import CorruptObject, ModelHubError, RefNotFound, UsageError

HEADER = "run.json"
JOURNAL = "journal.jsonl"
_ID = re.compile(r"^[0-9a-f]{4,32}$")


class RunBusy(ModelHubError):
    """The run is being written by a live process (this one or another)."""


def runs_root(store: Any, location: str) -> Path:
    """Where the journals of the repository ``store`` (a zarr store) live."""
    inner = store
    while not isinstance(inner, LocalStore) and hasattr(inner, "_store"):
        inner = inner._store  # wrapper stores (counting, caching) over a local folder
    if isinstance(inner, LocalStore):
        return Path(inner.root) / "runs"
    spool = os.environ.get("MODELHUB_RUNS_DIR") or str(Path.home() / ".cache" / "nbmodelhub" / "runs")
    return Path(spool).expanduser() / blake3.blake3(location.encode()).hexdigest()[:16]


def write_header(folder: Path, header: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=False)
    tmp = folder / f".{HEADER}.tmp"
    tmp.write_text(json.dumps(header, indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp, folder / HEADER)  # readers never see half a header


def read_header(folder: Path) -> dict[str, Any]:
    try:
        header = json.loads((folder / HEADER).read_text())
    except FileNotFoundError as exc:
        raise RefNotFound(f"run {folder.name} has no header (it was never started completely)") from exc
    except ValueError as exc:
        raise CorruptObject(f"run {folder.name}: its header {folder / HEADER} is garbled ({exc})") from exc
    if not isinstance(header, dict) or "model" not in header:
        raise CorruptObject(f"run {folder.name}: its header {folder / HEADER} is not a run header")
    return header


def run_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _ID.match(p.name) and (p / HEADER).is_file())


def find_run(root: Path, run_id: str) -> Path:
    """The folder of a run given its id or a unique prefix."""
    if not isinstance(run_id, str) or not _ID.match(run_id.strip()):
        raise UsageError(f"a run id is hexadecimal, as shown by `dlv runs`; got {run_id!r}")
    run_id = run_id.strip()
    hits = [p for p in run_folders(root) if p.name.startswith(run_id)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise UsageError(f"run id prefix {run_id} is ambiguous: {', '.join(p.name for p in hits[:5])}")
    raise RefNotFound(f"no run {run_id} in {root}: `dlv runs` lists the runs of this repository")


class Writer:
    """The owner's end of a journal: holds the lock, appends one line per event."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        path = folder / JOURNAL
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._lock()
            # A line cut short (a full disk when the last owner died) must not glue onto ours.
            size = os.fstat(self.fd).st_size
            if size:
                with open(path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        os.write(self.fd, b"\n")
        except BaseException:
            os.close(self.fd)
            raise

    def _lock(self) -> None:
        # A reader probing the lock holds it for microseconds: retry briefly before calling it busy.
        deadline = time.monotonic() + 1.0
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise RunBusy(
                        f"run {self.folder.name} is still running in another process (or another notebook); "
                        "stop that process first, or wait for it to finish"
                    ) from exc
                time.sleep(0.02)

    def write(self, line: str) -> None:
        os.write(self.fd, line.encode())

    def event(self, kind: str, **fields: Any) -> None:
        self.write(json.dumps({"k": kind, "t": round(time.time(), 3), **fields}, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # releases the lock
            self.fd = -1


def is_running(folder: Path) -> bool:
    """True while a live process owns the run (holds the journal's lock)."""
    try:
        fd = os.open(folder / JOURNAL, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops our shared lock
    return False


class Tail:
    """Reads the events appended since the last call (live views, other processes)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / JOURNAL
        self.offset = 0
        self._rest = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()  # a line still being written, or b""
        return list(_parse(lines))


def read_events(folder: Path) -> list[dict[str, Any]]:
    return Tail(folder).read()


def _parse(lines: list[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.strip():
            continue
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and "k" in event:
                yield event


def new_header(run_id: str, model: str, **fields: Any) -> dict[str, Any]:
    return {"id": run_id, "model": model, "host": socket.gethostname(), "pid": os.getpid(), **fields}
