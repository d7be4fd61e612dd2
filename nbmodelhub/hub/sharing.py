"""The hub verbs behind ``Repository.publish/pull/search/card/import_model``.

A hub is just another repository at a URL (a folder, ``s3://``, ``gs://``, ``az://``, or a
read-only ``http(s)://`` server), so every verb here opens it as a :class:`Repository` and moves
objects with :mod:`nbmodelhub.hub.transfer`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbmodelhub.errors import ReadOnlyRepository, UsageError
from nbmodelhub.hub import cards, catalog, importer, remotes
from nbmodelhub.hub.transfer import TransferReport, transfer
from nbmodelhub.store.backend import default_location, redact
from nbmodelhub.store.documents import check_name

if TYPE_CHECKING:
    from nbmodelhub.api import Repository, Version


def open_hub(repo: Repository, hub: str | os.PathLike[str] | None, writable: bool) -> Repository:
    from nbmodelhub.api import Repository

    url = remotes.resolve(repo.store, hub)
    if _same_place(url, repo.location):
        raise UsageError(f"the hub {redact(url)} is this repository: give another hub")
    return Repository(url, read_only=not writable)


def _same_place(url: str, location: str) -> bool:
    if "://" in url or "://" in location:
        return url.rstrip("/") == location.rstrip("/")
    return Path(url).resolve() == Path(location).resolve()


def publish(
    repo: Repository,
    ref: str | Version,
    hub: str | os.PathLike[str] | None = None,
    as_name: str | None = None,
    card: Mapping[str, str] | None = None,
) -> TransferReport:
    version = repo.get(ref)
    target = check_name(as_name) if as_name is not None else version.model
    fields = cards.check_fields(card or {})
    with open_hub(repo, hub, writable=True) as hub_repo:
        where = hub_repo.location
        if hub_repo.store.backend.read_only:
            raise ReadOnlyRepository(
                f"this hub is read-only for you: {where} is served over HTTP, which can only be read; "
                "publish to the storage behind it (a folder, s3://, gs://, az://)"
            )
        try:
            report = transfer(
                repo.store,
                hub_repo.store,
                version.id,
                lambda model: target if model == version.model else model,
                f"publish {version.ref}",
            )
            # Every published model has a card: the local one, updated with what was given here,
            # else what the hub has, else the version's message.
            written = cards.write_fields(repo.store, version.model, fields) if fields else None
            local = written if written is not None else cards.read_fields(repo.store, version.model)
            if local:
                cards.write_fields(hub_repo.store, target, local)
            elif not cards.read_fields(hub_repo.store, target):
                cards.write_fields(hub_repo.store, target, {"description": version.message or target})
        except ReadOnlyRepository as exc:
            raise ReadOnlyRepository(f"this hub is read-only for you: {exc}") from exc
    return report


def pull(
    repo: Repository, hub_ref: str, hub: str | os.PathLike[str] | None = None, as_name: str | None = None
) -> TransferReport:
    if not isinstance(hub_ref, str) or not hub_ref.strip():
        raise UsageError("pull takes a version on the hub, as in resnet@2 or origin/resnet:prod")
    named, ref = remotes.split_hub_ref(repo.store, hub_ref.strip())
    if named is not None and hub is not None and named != hub:
        raise UsageError(f"{hub_ref} names remote {named} but --hub says {hub}: give one of them")
    with open_hub(repo, hub or named, writable=False) as hub_repo:
        version = hub_repo.get(ref)
        target = check_name(as_name) if as_name is not None else version.model
        report = transfer(
            hub_repo.store,
            repo.store,
            version.id,
            lambda model: target if model == version.model else model,
            f"pull {version.ref}",
        )
        if not cards.read_fields(repo.store, target):
            hub_card = cards.read_fields(hub_repo.store, version.model)
            if hub_card:
                cards.write_fields(repo.store, target, hub_card)
    return report


def search(
    repo: Repository, text: str = "", hub: str | os.PathLike[str] | None = None, latest: bool = False
) -> list[Any]:
    if isinstance(text, str) and text.strip().lower().startswith("select"):
        return _dql(repo, text, hub)
    if hub is None:
        return catalog.search(repo.store, text, latest)
    with open_hub(repo, hub, writable=False) as hub_repo:
        return catalog.search(hub_repo.store, text, latest)


def _dql(repo: Repository, text: str, hub: str | os.PathLike[str] | None) -> list[Any]:
    """A DQL select runs on a hub as on any repository, through the query language's verb."""
    with contextlib.ExitStack() as stack:
        target = repo if hub is None else stack.enter_context(open_hub(repo, hub, writable=False))
        query = getattr(target, "query", None)
        if query is None:
            raise UsageError(
                "a DQL select needs the query language, which this install lacks: "
                "search with words and filters instead (name=resnet* acc>0.9)"
            )
        return list(query(text))


def card(repo: Repository, ref: str | Version, hub: str | os.PathLike[str] | None = None) -> cards.ModelCard:
    if hub is not None:
        with open_hub(repo, hub, writable=False) as hub_repo:
            return card(hub_repo, ref)
    version = repo.get(ref)
    record = repo.store.get_document("versions", version.id, version.ref)
    return cards.build(repo.store, version.model, version.number, version.id, record, list(version.tags))


def downloads_dir(repo: Repository) -> Path:
    """Downloads live beside the repository when it is a folder (``$MODELHUB_PATH/downloads``)."""
    for place in (repo.location, default_location()):
        if "://" not in place:
            return Path(place).expanduser() / "downloads"
    return Path(os.path.expanduser("~/.cache/nbmodelhub/downloads"))


def import_model(
    repo: Repository,
    source: str | os.PathLike[str],
    name: str,
    message: str | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Version:
    check_name(name)
    imported = importer.read(source, downloads_dir(repo))
    version = repo.commit(
        imported.weights,
        name=name,
        message=message if message is not None else f"import {imported.origin}",
        params=params,
        metrics=metrics,
        files=imported.files,
    )
    if imported.card and not cards.read_fields(repo.store, name):
        cards.write_fields(repo.store, name, imported.card)
    return version
