"""Evaluations: metrics measured on a version after it was committed, kept beside it.

A version record is immutable and content-addressed, so an evaluation cannot be written into it.
Instead each evaluation is its own content-addressed document, and an append-only ref ties it to
the version, exactly as version numbers are tied to version records::

    objects/evals/<blake3>/zarr.json                         the evaluation (group attributes)
    refs/models/<model>/evals/<N>/<token>/zarr.json          {"eval": <id>}: one evaluation of <model>@<N>

The document is written first, then the ref (created with an atomic create-if-absent under a
fresh random token, so concurrent evaluations of one version never collide). A crash between the
two leaves an unreferenced document that ``gc`` removes; ``gc`` keeps the documents referenced by
live versions' eval refs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbmodelhub.store.backend import Backend
from nbmodelhub.store.documents import content_id, decode_number, group_node, parse_group_node
from nbmodelhub.store.refs import MODELS, current_user

if TYPE_CHECKING:
    from nbmodelhub.store.repository import Store

KIND = "evals"


@dataclass(frozen=True)
class Evaluation:
    """One recorded evaluation of a version: the metrics a user function returned, and how."""

    id: str
    ref: str
    version: str  # the version id it evaluates
    metrics: dict[str, Any]
    curves: dict[str, list[tuple[int, Any]]]
    function: str
    data: str | None
    snapshot: int | None
    author: str
    created: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "version": self.version,
            "metrics": dict(self.metrics),
            "curves": {k: [list(p) for p in c] for k, c in self.curves.items()},
            "function": self.function,
            "data": self.data,
            "snapshot": self.snapshot,
            "author": self.author,
            "created": self.created,
            "seconds": self.seconds,
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in list(self.metrics.items())[:4])
        return f"<Evaluation of {self.ref} by {self.function}: {shown}>"


def describe_data(data: Any) -> str | None:
    """A short label for the data an evaluation ran on (its type and size), never the data itself."""
    if data is None:
        return None
    label = type(data).__name__
    shape = getattr(data, "shape", None)
    if isinstance(shape, tuple):
        return f"{label}{list(shape)}"
    try:
        return f"{label} of {len(data)}"
    except Exception:
        return label


def _refs_prefix(model: str, number: int) -> str:
    return f"{MODELS}{model}/evals/{number}/"


def eval_ids(backend: Backend, model: str, number: int) -> list[str]:
    """Ids of the evaluations recorded for ``model@number`` (unordered, possibly repeated)."""
    prefix = _refs_prefix(model, number)
    tokens = [t for t in backend.list_dir(prefix) if t != "zarr.json"]
    raws = backend.get_many([f"{prefix}{t}/zarr.json" for t in tokens])
    out = []
    for token, raw in zip(tokens, raws, strict=True):
        if raw is None:
            continue  # a ref folder without its node: nothing was recorded
        out.append(str(parse_group_node(raw, f"evaluation ref {model}@{number}/{token}")["eval"]))
    return out


def live_objects(backend: Backend, model: str, number: int) -> set[str]:
    """``evals/<id>`` keys a live version keeps alive (for gc)."""
    return {f"{KIND}/{e}" for e in eval_ids(backend, model, number)}


def record(store: Store, model: str, number: int, doc: dict[str, Any]) -> str:
    """Write an evaluation document and the ref that attaches it to ``model@number``; return its id."""
    digest = content_id(doc)
    lease = store.take_lease({f"{KIND}/{digest}"})  # a gc between the two writes must not take the document
    try:
        backend = store.backend
        backend.create(f"objects/{KIND}/zarr.json", group_node({}))  # repositories made before evals existed
        backend.create(f"objects/{KIND}/{digest}/zarr.json", group_node(doc))
        for group in (f"{MODELS}{model}/evals/", _refs_prefix(model, number)):
            backend.create(f"{group}zarr.json", group_node({}))
        ref = {"eval": digest, "token": uuid.uuid4().hex, "author": current_user()}
        backend.create(f"{_refs_prefix(model, number)}{ref['token']}/zarr.json", group_node(ref))
    finally:
        store.release(lease)
    return digest


def load(store: Store, model: str, number: int, version_id: str) -> list[Evaluation]:
    """The evaluations of ``model@number``, oldest first (documents are verified against their ids)."""
    where = f"{model}@{number}"
    out: dict[str, Evaluation] = {}
    for digest in eval_ids(store.backend, model, number):
        if digest in out:
            continue
        doc = store.get_document(KIND, digest, f"{where}: evaluation")
        if doc.get("version") != version_id:
            continue  # a stale ref (cannot happen through the API; never show another version's numbers)
        out[digest] = from_document(digest, where, doc)
    return sorted(out.values(), key=lambda e: (e.created, e.id))


def from_document(digest: str, ref: str, doc: dict[str, Any]) -> Evaluation:
    return Evaluation(
        id=digest,
        ref=ref,
        version=str(doc["version"]),
        metrics={k: decode_number(v) for k, v in doc.get("metrics", {}).items()},
        curves={k: [(int(s), decode_number(v)) for s, v in c] for k, c in doc.get("curves", {}).items()},
        function=str(doc.get("function", "")),
        data=doc.get("data"),
        snapshot=doc.get("snapshot"),
        author=str(doc.get("author", "")),
        created=str(doc.get("created", "")),
        seconds=float(doc.get("seconds", 0.0)),
    )
