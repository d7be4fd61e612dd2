"""Named hubs (``dlv remote add origin s3://team-models/hub``), kept inside the repository.

Like git's remotes they belong to the repository, not to the machine, so a repository on shared
storage carries its hubs with it. Each is one small document under ``refs/remotes/<name>/``; a
remote holds a URL only — never credentials, which come from the storage's standard mechanisms.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nbmodelhub.errors import UsageError
from nbmodelhub.store.backend import redact
from nbmodelhub.store.documents import check_name, group_node, parse_group_node
from nbmodelhub.store.repository import Store

REMOTES = "refs/remotes/"
_USERINFO = re.compile(r"^[a-z0-9+.-]+://[^/@]*@", re.I)


def normalize_url(url: str | os.PathLike[str]) -> str:
    """A hub URL as stored: local folders absolute, object-storage URLs as given."""
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url.strip():
        raise UsageError("a hub URL is a folder path or a URL such as s3://bucket/prefix")
    url = url.strip()
    if _USERINFO.match(url):
        raise UsageError(
            f"{redact(url)}: keep credentials out of hub URLs; set them the storage's usual way "
            "(AWS_*/GOOGLE_*/AZURE_* variables or your cloud profile)"
        )
    if url.startswith("file://"):
        url = url[len("file://") :]
    if "://" in url:
        return url
    return str(Path(os.path.expanduser(url)).resolve())


def remotes(store: Store) -> dict[str, str]:
    names = [n for n in store.backend.list_dir(REMOTES) if n != "zarr.json"]
    raws = store.backend.get_many([f"{REMOTES}{n}/zarr.json" for n in names])
    out = {}
    for name, raw in zip(names, raws, strict=True):
        if raw is not None:
            out[name] = str(parse_group_node(raw, f"remote {name}")["url"])
    return out


def add_remote(store: Store, name: str, url: str | os.PathLike[str], force: bool = False) -> str:
    check_name(name, "remote name")
    url = normalize_url(url)
    current = remotes(store)
    if name in current and current[name] != url and not force:
        raise UsageError(f"remote {name} already points at {current[name]}: remove it first, or pass --force")
    store.backend.create(f"{REMOTES}zarr.json", group_node({}))
    store.backend.set(f"{REMOTES}{name}/zarr.json", group_node({"url": url}))
    return url


def remove_remote(store: Store, name: str) -> str:
    current = remotes(store)
    if name not in current:
        known = ", ".join(sorted(current)) or "none"
        raise UsageError(f"no remote {name!r}; remotes: {known}")
    store.backend.delete(f"{REMOTES}{name}/zarr.json")
    return current[name]


def resolve(store: Store, hub: str | os.PathLike[str] | None) -> str:
    """A hub argument (a remote's name, a URL or a folder; None: the default remote) as a URL."""
    known = remotes(store)
    if hub is None:
        if "origin" in known:
            return known["origin"]
        if len(known) == 1:
            return next(iter(known.values()))
        if not known:
            raise UsageError("no hub given: pass --hub URL, or name one with `dlv remote add origin URL`")
        raise UsageError(f"several remotes ({', '.join(sorted(known))}) and none is origin: pass --hub NAME")
    if isinstance(hub, str) and hub in known:
        return known[hub]
    return normalize_url(hub)


def split_hub_ref(store: Store, text: str) -> tuple[str | None, str]:
    """``origin/resnet@2`` → ("origin", "resnet@2"); a plain ref has no hub part."""
    head, sep, tail = text.partition("/")
    if sep and head in remotes(store):
        return head, tail
    return None, text
