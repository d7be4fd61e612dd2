"""Which repositories the sidebar offers, and the open ``Repository`` behind each.

Three sources, in this order: the default repository (``$MODELHUB_PATH``, else ``~/.modelhub``),
the ones configured for the server (``c.ModelHubServer.repositories = {"team": "s3://…"}``), and
the ones notebooks opened with ``%dlv init``: those are remembered in a small file in Jupyter's
runtime folder, which the kernels and the server share (:func:`remember`).

Each repository is opened once and kept: its caches of refs and version records (immutable, so
never stale) are what make listing a big repository fast after the first look.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbmodelhub as mh
from nbmodelhub.errors import ModelHubError, RefNotFound, UsageError
from nbmodelhub.store.backend import default_location

RECENT_FILE = "nbmodelhub-repositories.json"
_KEEP = 20  # remembered repositories; the oldest drop off


def _recent_path() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir()) / RECENT_FILE


def _normal(location: str) -> str:
    """One spelling per folder, so the same repository is not listed twice."""
    if "://" in location and not location.startswith("file://"):
        return location
    return str(Path(location.removeprefix("file://")).expanduser().resolve())


def remembered() -> list[str]:
    """Locations notebooks opened, most recent first."""
    try:
        items = json.loads(_recent_path().read_text())
    except (OSError, ValueError):
        return []
    return [x for x in items if isinstance(x, str)] if isinstance(items, list) else []


def remember(location: str) -> None:
    """Record that a notebook opened ``location``, so the sidebar offers it (``%dlv init`` calls this)."""
    if location.startswith("memory://"):
        return  # lives only inside the kernel's process: the server could not see it
    location = _normal(location)
    items = [location] + [x for x in remembered() if x != location]
    path = _recent_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(items[:_KEEP]))
        os.replace(tmp, path)  # readers never see half a file
    except OSError:
        pass  # a read-only runtime folder only costs the sidebar this shortcut


@dataclass(frozen=True)
class Entry:
    """A repository the sidebar offers: ``name`` is what the picker shows, ``location`` its id."""

    name: str
    location: str
    source: str  # "default", "configured", "notebook" or "added"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.location, "source": self.source}


class Repositories:
    """The repositories on offer and one open ``Repository`` per location, shared by all requests."""

    def __init__(self, configured: dict[str, str] | None = None, read_only: bool = True) -> None:
        self.configured = dict(configured or {})
        self.read_only = read_only
        self._added: list[str] = []
        self._open: dict[str, mh.Repository] = {}
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        out = [Entry("default", _normal(default_location()), "default")]
        out += [Entry(name, _normal(loc), "configured") for name, loc in self.configured.items()]
        out += [Entry(_short(loc), loc, "notebook") for loc in remembered()]
        out += [Entry(_short(loc), loc, "added") for loc in self._added]
        seen: set[str] = set()
        unique = []
        for e in out:
            if e.location not in seen:
                seen.add(e.location)
                unique.append(e)
        return unique

    def add(self, location: str) -> Entry:
        """Offer one more repository (the picker's "open…"); it must already exist."""
        if not isinstance(location, str) or not location.strip():
            raise UsageError("give the repository's folder path or URL, e.g. /data/models or s3://bucket/models")
        location = _normal(location.strip())
        self._repository(location)  # refuses a folder that is not a repository
        if location not in [e.location for e in self.entries()]:
            self._added.append(location)
        return next(e for e in self.entries() if e.location == location)

    def get(self, location: str | None) -> mh.Repository:
        """The open repository at ``location`` (default: the default one); only offered ones open."""
        if not location:
            location = self.entries()[0].location
        known = {e.location for e in self.entries()}
        if location not in known:
            normal = _normal(location)
            if normal not in known:
                raise RefNotFound(
                    f"the sidebar does not offer a repository at {location}: open it with `%dlv init {location}` "
                    "in a notebook, or add it with the picker's “open…”"
                )
            location = normal
        return self._repository(location)

    def _repository(self, location: str) -> mh.Repository:
        with self._lock:
            repo = self._open.get(location)
            if repo is None:
                # Read-only unless the server allows changes: a GET can then never create or alter anything.
                repo = mh.open(location, read_only=self.read_only)
                repo.models()  # opening is lazy; fail here with the store's own message
                self._open[location] = repo
            return repo

    def close(self) -> None:
        with self._lock:
            for repo in self._open.values():
                try:
                    repo.close()
                except ModelHubError:
                    pass
            self._open.clear()


def _short(location: str) -> str:
    text = location.rstrip("/")
    return text.rsplit("/", 1)[-1] or text
