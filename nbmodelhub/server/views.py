"""What each sidebar endpoint returns, as plain JSON built from a ``Repository``.

The version, diff and lineage views get exactly the data the notebook widgets are built from
(``nbmodelhub.widgets``), so a version looks the same in the sidebar as under ``%dlv desc``.
The widget modules are imported on first use: listing never pays for them.
"""

from __future__ import annotations

import math
from typing import Any

from nbmodelhub.api import Repository, Version
from nbmodelhub.errors import UsageError

MAX_PAGE = 1000
_SORTS = ("number", "created", "message", "author", "model")
# Full listings (for search and for sorts other than by number) are kept per repository until it
# changes, so paging through them costs one listing, not one per page.
_LISTINGS: dict[tuple[int, str | None], tuple[str, list[Version]]] = {}


def state(repo: Repository) -> dict[str, Any]:
    return {"state": repo.state()}


def models(repo: Repository) -> dict[str, Any]:
    """Every model with its version count, latest version, tags and how many runs it has going."""
    running: dict[str, int] = {}
    for run in _active_runs(repo):
        running[run.model] = running.get(run.model, 0) + 1
    out = []
    for name in sorted(repo.models()):
        numbers = repo.numbers(name)
        if not numbers:
            continue
        # By number: naming the model alone would list its versions again (slow at 10,000 versions).
        # A number whose ref is still being written has no version yet: the one before it is the latest.
        latest = (repo.page(name, numbers[-4:]) or [repo.get(name)])[-1]
        out.append(
            {
                "name": name,
                "versions": len(numbers),
                "latest": latest.number,
                "created": latest.created,
                "message": latest.message,
                "tags": _tags_of(repo, name),
                "running": running.get(name, 0),
            }
        )
    return {"models": out, "state": repo.state()}


def _tags_of(repo: Repository, model: str) -> dict[str, int]:
    # Version.tags names only one version's tags; the model's whole tag map is in its refs (cheap to read).
    return dict(sorted(repo.store.refs.tags(model).items()))


def versions(
    repo: Repository, model: str | None, query: str, sort: str, order: str, offset: int, limit: int
) -> dict[str, Any]:
    """One page of versions: of one model or all, filtered by ``query`` (ref, message, author, tag),
    sorted by number, created, message, author, model, ``metric:<name>`` or ``param:<name>``."""
    from nbmodelhub.widgets.version_table import table_data

    if order not in ("asc", "desc"):
        raise UsageError(f"order must be asc or desc, got {order!r}")
    if sort not in _SORTS and not sort.startswith(("metric:", "param:")):
        raise UsageError(f"sort by one of {', '.join(_SORTS)}, metric:<name> or param:<name>; got {sort!r}")
    query = query.strip().lower()
    if model is not None and not query and sort == "number":
        # The common case (a model's newest versions first) reads only the records on the page.
        numbers = repo.numbers(model)
        if order == "desc":
            numbers = numbers[::-1]
        page = repo.page(model, numbers[offset : offset + limit])
        total = len(numbers)
    else:
        everything = _listing(repo, model)
        if query:
            everything = [v for v in everything if _matches(v, query)]
        everything = sorted(everything, key=_sort_key(sort), reverse=order == "desc")
        page, total = everything[offset : offset + limit], len(everything)
    return {"total": total, "offset": offset, "limit": limit, "rows": table_data(page)["rows"]}


def _listing(repo: Repository, model: str | None) -> list[Version]:
    key = (id(repo), model)
    token = repo.state()
    cached = _LISTINGS.get(key)
    if cached is None or cached[0] != token:
        cached = (token, repo.versions(model=model))
        _LISTINGS[key] = cached
    return cached[1]


def _matches(v: Version, query: str) -> bool:
    return any(query in text.lower() for text in (v.ref, v.message, v.author, *v.tags, v.id[: len(query)]))


def _sort_key(sort: str) -> Any:
    if sort.startswith(("metric:", "param:")):
        kind, _, name = sort.partition(":")

        def by_value(v: Version) -> tuple[int, Any]:
            value = (v.metrics if kind == "metric" else v.params).get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
                return (1, value)
            return (0, 0)  # versions without the value sort first ascending, last descending

        return by_value
    if sort == "number":
        return lambda v: (v.model, v.number)
    return lambda v: (getattr(v, sort), v.model, v.number)


def version(repo: Repository, ref: str) -> dict[str, Any]:
    """A version's metadata: the record, its files, metric curves, evaluations and the commands that show it."""
    v = repo.get(ref)
    out = v.to_dict()
    out["files"] = [f.to_dict() for f in v.files]
    out["curves"] = {k: [list(p) for p in c] for k, c in v.curves.items()}
    out["evaluations"] = [e.to_dict() for e in repo.evaluations(v)]
    out["step"] = v.step
    return out


def graph(repo: Repository, ref: str, stats: bool = True) -> dict[str, Any]:
    """The architecture view's data, as ``ArchitectureGraph.of`` builds it (statistics read the weights once)."""
    from nbmodelhub.widgets.architecture import graph_data

    v = repo.get(ref)
    layers = repo.describe(v, bins=48)["layers"] if stats else None
    return graph_data(repo.graph(v), layers=layers, title=v.ref)


def histograms(repo: Repository, ref: str, other: str | None, bins: int) -> dict[str, Any]:
    from nbmodelhub.widgets.histograms import histogram_data

    return histogram_data(repo, [ref, other] if other else [ref], bins=bins)


def diff(repo: Repository, a: str, b: str) -> dict[str, Any]:
    from nbmodelhub.widgets.version_diff import diff_data

    return diff_data(repo, a, b)


def lineage(repo: Repository, model: str) -> dict[str, Any]:
    from nbmodelhub.widgets.lineage import lineage_data

    return lineage_data(repo, model)  # an unknown model raises RefNotFound with the closest names


def runs(repo: Repository, active: bool) -> dict[str, Any]:
    found = _active_runs(repo) if active else repo.runs()
    return {"runs": [r.to_dict(curves=False) for r in found]}


def _active_runs(repo: Repository) -> list[Any]:
    return list(repo.runs(active=True))
