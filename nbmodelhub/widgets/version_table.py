"""VersionTable (``%dlv list``): versions as a sortable, filterable table; pick two rows → their diff.

The view sets ``picked = [refA, refB]``; this side answers by computing the diff's plain data into
``diff``, which the view draws below the table. Params and metrics become columns (a metric curve
shows its final value).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import traitlets

from nbmodelhub.api import Repository, Version
from nbmodelhub.errors import ModelHubError
from nbmodelhub.widgets.base import ModelHubWidget, esm

# The static HTML table stops here (the live view virtualises any number of rows).
_FALLBACK_ROWS = 200


def _cell(value: Any) -> Any:
    """A params/metrics value as a table cell: numbers stay numbers (sortable), the rest is text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _keys(dicts: Iterable[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def table_data(versions: Sequence[Version]) -> dict[str, Any]:
    """Rows (one per version) and the params and metrics column names, in first-seen order."""
    rows = []
    for v in versions:
        rows.append(
            {
                "ref": v.ref,
                "id": v.id,
                "model": v.model,
                "number": v.number,
                "message": v.message,
                "author": v.author,
                "created": v.created,
                "tags": list(v.tags),
                "parents": list(v.parent_refs or v.parents),
                "params": {k: _cell(x) for k, x in v.params.items()},
                "metrics": {k: _cell(x) for k, x in v.metrics.items()},
                "parameters": v.parameter_count,
                "step": v.step,
            }
        )
    return {
        "rows": rows,
        "params": _keys(v.params for v in versions),
        "metrics": _keys(v.metrics for v in versions),
    }


class VersionTable(ModelHubWidget):
    """Versions with their params and metrics as columns; pick two rows to see their diff below."""

    _esm = esm("version_table")
    picked = traitlets.List(traitlets.Unicode()).tag(sync=True)
    diff = traitlets.Dict().tag(sync=True)

    def __init__(self, repo: Repository, versions: Iterable[Version], **kwargs: Any) -> None:
        self.repo = repo
        self.versions: list[Version] = list(versions)
        super().__init__(data=table_data(self.versions), **kwargs)

    @classmethod
    def of(cls, repo: Repository, model: str | None = None) -> VersionTable:
        """Every version in the repository, or of one model, oldest first."""
        return cls(repo, repo.versions(model=model))

    def __repr__(self) -> str:
        return f"<VersionTable {len(self.versions)} versions>"

    def pick(self, a: str | Version, b: str | Version) -> dict[str, Any]:
        """Pick two versions (as clicking their rows does); returns the diff data the view shows."""
        self.picked = [self.repo.get(a).ref, self.repo.get(b).ref]
        return self.diff

    @traitlets.observe("picked")
    def _on_picked(self, change: dict[str, Any]) -> None:
        refs = list(change["new"])
        if len(refs) != 2:
            self.diff = {}
            return
        from nbmodelhub.widgets.version_diff import diff_data

        try:
            data = dict(diff_data(self.repo, refs[0], refs[1]))
        except ModelHubError as exc:
            # The view shows the one line in place of the diff; the table itself stays usable.
            data = {"error": str(exc)}
        data["picked"] = refs
        self.diff = data

    def fallback(self) -> dict[str, str]:
        data = self.data
        params, metrics = data.get("params", []), data.get("metrics", [])
        head = ["version", "message", "tags", *params, *metrics, "parameters", "created"]
        e = html.escape
        th = "".join(f'<th style="text-align:left;padding:2px 8px">{e(h)}</th>' for h in head)
        body = []
        rows = data.get("rows", [])
        for r in rows[:_FALLBACK_ROWS]:
            cells = [r["ref"], r["message"], ", ".join(r["tags"])]
            cells += [_show(r["params"].get(k)) for k in params]
            cells += [_show(r["metrics"].get(k)) for k in metrics]
            cells += [f"{r['parameters']:,}", r["created"][:19].replace("T", " ")]
            body.append("<tr>" + "".join(f'<td style="padding:2px 8px">{e(str(c))}</td>' for c in cells) + "</tr>")
        more = (
            f"<p>… and {len(rows) - _FALLBACK_ROWS} more versions (the live table shows them all).</p>"
            if len(rows) > _FALLBACK_ROWS else ""
        )
        if not rows:
            return {"text/html": "<p>No versions.</p>"}
        return {
            "text/html": f'<table class="nbmh-versions"><thead><tr>{th}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>{more}"
        }


def _show(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

