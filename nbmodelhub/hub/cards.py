"""Model cards: what a model is for, written by people, joined with what the store knows.

The written part (description, intended use, limitations, license) belongs to a model and is
kept as an append-only series of small documents, like tags, so concurrent edits never clobber
each other and the newest wins::

    refs/models/<name>/card/<seq>/zarr.json     {"description": …, "intended_use": …, …}

The rest of a card (metrics, params, lineage, size) is read from the version itself, so a card
can never disagree with the version it describes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbmodelhub.errors import UsageError
from nbmodelhub.store.documents import decode_number, group_node, parse_group_node
from nbmodelhub.store.refs import MODELS, current_user
from nbmodelhub.store.repository import Store

FIELDS = ("description", "intended_use", "limitations", "license")


def _numbers(names: list[str]) -> list[int]:
    return sorted(int(n) for n in names if n.isdigit())


def read_fields(store: Store, model: str) -> dict[str, str]:
    """The newest written card of ``model`` ({} if it has none)."""
    seqs = _numbers(store.backend.list_dir(f"{MODELS}{model}/card/"))
    if not seqs:
        return {}
    raw = store.backend.get(f"{MODELS}{model}/card/{seqs[-1]}/zarr.json")
    if raw is None:
        return {}
    doc = parse_group_node(raw, f"the card of {model}")
    return {k: str(doc[k]) for k in FIELDS if isinstance(doc.get(k), str) and doc[k]}


def check_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise UsageError(f"unknown card field {unknown[0]!r}: a card has {', '.join(FIELDS)}")
    out = {}
    for key, value in fields.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise UsageError(f"card field {key} must be text, got {type(value).__name__}")
        out[key] = value.strip()
    return out


def write_fields(store: Store, model: str, fields: Mapping[str, str]) -> dict[str, str]:
    """Merge ``fields`` into the model's card (an empty string clears a field); return the result."""
    merged = {**read_fields(store, model), **check_fields(fields)}
    merged = {k: v for k, v in merged.items() if v}
    if merged == read_fields(store, model):
        return merged
    base = f"{MODELS}{model}/card/"
    store.backend.create(f"{MODELS}{model}/zarr.json", group_node({}))
    store.backend.create(f"{base}zarr.json", group_node({}))
    while True:
        seqs = _numbers(store.backend.list_dir(base))
        seq = (seqs[-1] if seqs else 0) + 1
        doc = {**merged, "author": current_user(), "time": time.time(), "token": uuid.uuid4().hex}
        if store.backend.create(f"{base}{seq}/zarr.json", group_node(doc)):
            return merged


@dataclass(frozen=True)
class ModelCard:
    """A version's card: the model's written card plus the version's own facts."""

    ref: str
    model: str
    version_id: str
    description: str = ""
    intended_use: str = ""
    limitations: str = ""
    license: str = ""
    message: str = ""
    author: str = ""
    created: str = ""
    framework: str = ""
    parameters: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: list[str] = field(default_factory=list)  # ancestors, nearest first
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "model": self.model,
            "id": self.version_id,
            "description": self.description,
            "intended_use": self.intended_use,
            "limitations": self.limitations,
            "license": self.license,
            "message": self.message,
            "author": self.author,
            "created": self.created,
            "framework": self.framework,
            "parameters": self.parameters,
            "params": self.params,
            "metrics": self.metrics,
            "lineage": self.lineage,
            "tags": self.tags,
        }

    def text(self) -> str:
        """The words a search matches against."""
        return "\n".join([self.description, self.intended_use, self.limitations, self.license])

    def to_markdown(self) -> str:
        lines = [f"# {self.model}", "", f"`{self.ref}` · {self.version_id[:10]} · {self.author} · {self.created}", ""]
        if self.description:
            lines += [self.description, ""]
        for title, text in (("Intended use", self.intended_use), ("Limitations", self.limitations)):
            if text:
                lines += [f"## {title}", "", text, ""]
        if self.metrics:
            lines += ["## Metrics", "", "| metric | value |", "| --- | --- |"]
            lines += [f"| {k} | {v} |" for k, v in sorted(self.metrics.items())] + [""]
        if self.params:
            lines += ["## Hyperparameters", "", "| param | value |", "| --- | --- |"]
            lines += [f"| {k} | {v} |" for k, v in sorted(self.params.items())] + [""]
        lines += ["## Lineage", "", " ← ".join([self.ref, *self.lineage]) if self.lineage else "no parents", ""]
        facts = [f"{self.parameters:,} parameters", self.framework]
        if self.license:
            facts.append(f"license: {self.license}")
        lines += [" · ".join(f for f in facts if f)]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def build(
    store: Store,
    model: str,
    number: int,
    version_id: str,
    record: Mapping[str, Any],
    tags: list[str],
    written: Mapping[str, str] | None = None,
) -> ModelCard:
    """``written``: the model's card fields when the caller already read them (a catalog of many versions)."""
    if written is None:
        written = read_fields(store, model)
    last = record["snapshots"][-1]["tensors"] if record.get("snapshots") else {}
    parameters = 0
    for t in last.values():
        count = 1
        for d in t["shape"]:
            count *= int(d)
        parameters += count
    return ModelCard(
        ref=f"{model}@{number}",
        model=model,
        version_id=version_id,
        description=written.get("description", ""),
        intended_use=written.get("intended_use", ""),
        limitations=written.get("limitations", ""),
        license=written.get("license", ""),
        message=str(record.get("message", "")),
        author=str(record.get("author", "")),
        created=str(record.get("created", "")),
        framework=str(record.get("framework", "")),
        parameters=parameters,
        params=dict(record.get("params", {})),
        metrics={k: decode_number(v) for k, v in record.get("metrics", {}).items()},
        lineage=_ancestors(store, record),
        tags=sorted(tags),
    )


def _ancestors(store: Store, record: Mapping[str, Any]) -> list[str]:
    """Refs of the version's ancestors, nearest first (first parent line, then the rest)."""
    out: list[str] = []
    seen: set[str] = set()
    frontier = list(record.get("parents", []))
    while frontier:
        vid = frontier.pop(0)
        if vid in seen:
            continue
        seen.add(vid)
        ref = store.refs.ref_of(vid)
        out.append(f"{ref[0]}@{ref[1]}" if ref else vid[:12])
        if ref is not None:
            frontier += list(store.get_document("versions", vid, out[-1]).get("parents", []))
    return out
