"""The verbs of nbmodelhub. Magics, the ``dlv`` command and the sidebar are thin layers over this.

import nbmodelhub as mh
repo = mh.open()                         # $MODELHUB_PATH, else ~/.modelhub
v = repo.commit(model, name="resnet", message="wider conv1", params={"lr": 0.01})
repo.load("resnet@1", framework="torch", keys=["fc.weight"])
"""

from __future__ import annotations

import datetime as _dt
import difflib
import fnmatch
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm
from zarr.abc.store import Store as ZarrStore

from nbmodelhub import adapters
from nbmodelhub.analysis.version_diff import VersionDiff
from nbmodelhub.errors import CorruptObject, RefNotFound, UsageError
from nbmodelhub.graph import LayerGraph, graph_from_module, graph_from_tensors
from nbmodelhub.store.archive import DEFAULT_MAX_CHAIN, ArchiveReport
from nbmodelhub.store.catalog import Catalog
from nbmodelhub.store.documents import check_file_name, check_metrics, check_name, check_params, decode_number
from nbmodelhub.store.evaluations import Evaluation
from nbmodelhub.store.planes import planes_for
from nbmodelhub.store.refs import current_user
from nbmodelhub.store.repository import FsckReport, GcReport, Store
from nbmodelhub.store.tensors import STORAGE_DTYPES, Tensor

if TYPE_CHECKING:
    from nbmodelhub.hub.cards import ModelCard
    from nbmodelhub.hub.transfer import TransferReport
    from nbmodelhub.tracking import Run, RunInfo

_HEX = re.compile(r"^[0-9a-f]{4,64}$")


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    mtime: float
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mtime": self.mtime, "hash": self.hash}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    hash: str

    @property
    def count(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.count * int(np.dtype(STORAGE_DTYPES[self.dtype]).itemsize)


@dataclass(frozen=True)
class Version:
    """One committed state of a model. Immutable; ``ref`` (``name@N``) names it."""

    id: str
    model: str
    number: int
    message: str
    author: str
    created: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    curves: dict[str, list[tuple[int, Any]]]
    parents: tuple[str, ...]
    snapshot_steps: tuple[int | None, ...]
    tensors: dict[str, TensorInfo]
    ties: dict[str, str]
    files: tuple[FileEntry, ...]
    graph: str | None
    framework: str
    source: str | None
    tags: tuple[str, ...] = ()
    parent_refs: tuple[str, ...] = field(default=())

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.number}"

    @property
    def parameter_count(self) -> int:
        return sum(t.count for t in self.tensors.values())

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    @property
    def step(self) -> int | None:
        return self.snapshot_steps[-1] if self.snapshot_steps else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "id": self.id,
            "model": self.model,
            "number": self.number,
            "message": self.message,
            "author": self.author,
            "created": self.created,
            "params": self.params,
            "metrics": self.metrics,
            "parents": list(self.parent_refs or self.parents),
            "parent_ids": list(self.parents),
            "snapshots": list(self.snapshot_steps),
            "tensors": len(self.tensors),
            "parameters": self.parameter_count,
            "bytes": self.nbytes,
            "tags": list(self.tags),
            "files": [f.name for f in self.files],
            "framework": self.framework,
            "source": self.source,
        }

    def __repr__(self) -> str:
        return f"<Version {self.ref} {self.id[:10]} {self.message!r}>"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Repository:
    """A model version store. Open one with :func:`open`."""

    def __init__(self, location: str | os.PathLike[str] | ZarrStore | None = None, read_only: bool = False) -> None:
        self.store = Store(location, read_only=read_only)
        self.catalog = Catalog(self.store)
        self._graphs: dict[Any, str] = {}
        self._graph_docs: dict[str, dict[str, Any]] = {}  # id → layer graph, to write again (add_version)

    def __repr__(self) -> str:
        return f"<nbmodelhub Repository {self.location}>"

    @property
    def location(self) -> str:
        return self.store.location

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- references ----------------------------------------------------------------------------
    def get(self, ref: str | Version) -> Version:
        """Resolve ``name``, ``name@N``, ``name:tag`` or an id prefix to a version."""
        if isinstance(ref, Version):
            return ref
        if not isinstance(ref, str) or not ref.strip():
            raise UsageError(f"a version reference is a string like name, name@3 or name:tag, got {ref!r}")
        ref = ref.strip()
        refs = self.store.refs
        if "@" in ref:
            model, _, number_text = ref.partition("@")
            # isdigit() alone lets '²' through (int() refuses it) and '٣' (int() reads it as 3): ASCII only.
            if not (number_text.isascii() and number_text.isdigit()):
                raise UsageError(f"bad reference {ref!r}: after '@' comes a version number, as in {model}@2")
            number = int(number_text)
            self._known_model(model, ref)
            if number in refs.deleted(model):
                raise RefNotFound(f"{ref} was deleted (its data goes at the next gc)")
            return self._by_number(model, number, ref)
        if ":" in ref:
            model, _, tag = ref.partition(":")
            self._known_model(model, ref)
            tags = refs.tags(model)
            if tag not in tags:
                close = difflib.get_close_matches(tag, list(tags), n=3)
                hint = (
                    f"; did you mean {', '.join(f'{model}:{t}' for t in close)}?"
                    if close
                    else (f"; its tags are {', '.join(sorted(tags))}" if tags else "; it has no tags")
                )
                raise RefNotFound(f"no tag {tag!r} on {model}{hint}")
            return self.get(f"{model}@{tags[tag]}")
        if ref in refs.models():
            latest = refs.latest(ref)
            if latest is not None:
                return self._version(ref, *latest)
            broken = [msg for (model, _), msg in refs.broken.items() if model == ref]
            if broken:
                raise CorruptObject(broken[0])
            raise RefNotFound(f"every version of {ref} was deleted")
        if _HEX.match(ref):
            hits = [r for r in refs.all_versions() if r.version_id.startswith(ref)]
            if len(hits) == 1:
                return self._version(hits[0].model, hits[0].number, hits[0].version_id)
            if len(hits) > 1:
                raise UsageError(
                    f"id prefix {ref} is ambiguous: {', '.join(f'{h.model}@{h.number}' for h in hits[:5])}"
                )
        raise self._not_found(ref)

    def _by_number(self, model: str, number: int, ref: str) -> Version:
        refs = self.store.refs
        ids = refs.version_ids(model, [number])
        if number not in ids:
            if (model, number) in refs.broken:
                raise CorruptObject(refs.broken[(model, number)])
            raise self._not_found(ref)
        return self._version(model, number, ids[number])

    def _known_model(self, model: str, ref: str) -> None:
        if model not in self.store.refs.models():
            raise self._not_found(ref)

    def _not_found(self, ref: str) -> RefNotFound:
        refs = self.store.refs
        candidates: list[str] = []
        for model in refs.models():
            candidates.append(model)
            candidates += [f"{model}@{n}" for n in refs.numbers(model)]
            candidates += [f"{model}:{t}" for t in refs.tags(model)]
        close = difflib.get_close_matches(ref, candidates, n=3, cutoff=0.5)
        if close:
            return RefNotFound(f"no version {ref!r}; closest: {', '.join(close)}")
        if not candidates:
            return RefNotFound(f"no version {ref!r}: the repository at {self.location} is empty")
        return RefNotFound(f"no version {ref!r}; models here: {', '.join(refs.models()[:10])}")

    def _record(self, version_id: str, where: str) -> dict[str, Any]:
        return self.store.get_document("versions", version_id, where)

    def _version(
        self, model: str, number: int, version_id: str, tags: Mapping[int, list[str]] | None = None
    ) -> Version:
        record = self._record(version_id, f"{model}@{number}")
        if tags is None:
            tags = _invert(self.store.refs.tags(model))
        return self._from_record(model, number, version_id, record, tags)

    def _from_record(
        self,
        model: str,
        number: int,
        version_id: str,
        record: Mapping[str, Any],
        tags: Mapping[int, list[str]],
        ref_of: Callable[[str], str] | None = None,
    ) -> Version:
        ref_of = ref_of or self._ref_of
        last = record["snapshots"][-1] if record["snapshots"] else {"tensors": {}, "ties": {}}
        return Version(
            id=version_id,
            model=model,
            number=number,
            message=record.get("message", ""),
            author=record.get("author", ""),
            created=record.get("created", ""),
            params=dict(record.get("params", {})),
            metrics={k: decode_number(v) for k, v in record.get("metrics", {}).items()},
            curves={k: [(int(s), decode_number(v)) for s, v in c] for k, c in record.get("curves", {}).items()},
            parents=tuple(record.get("parents", [])),
            snapshot_steps=tuple(s.get("step") for s in record["snapshots"]),
            tensors={n: TensorInfo(n, t["dtype"], tuple(t["shape"]), t["hash"]) for n, t in last["tensors"].items()},
            ties=dict(last.get("ties", {})),
            files=tuple(FileEntry(f["name"], f["size"], f["mtime"], f["hash"]) for f in record.get("files", [])),
            graph=record.get("graph"),
            framework=record.get("framework", "numpy"),
            source=record.get("source"),
            tags=tuple(sorted(tags.get(number, []))),
            parent_refs=tuple(ref_of(p) for p in record.get("parents", [])),
        )

    def _ref_of(self, version_id: str) -> str:
        # Known refs first, then the catalog's id map; walking every ref (O(versions)) is the last resort.
        refs = self.store.refs
        found = refs.known(version_id) or self.catalog.ref_of(version_id) or refs.ref_of(version_id)
        return f"{found[0]}@{found[1]}" if found else version_id[:12]

    # -- listing -------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return self.catalog.models()

    def versions(self, model: str | None = None, message: str | None = None, last: int | None = None) -> list[Version]:
        """Versions oldest first; filter by model, by a substring of the message, keep the ``last`` N."""
        if model is not None:
            self._known_model(model, model)
        out = self.versions_of(self.catalog.entries(model))  # refreshes the catalog once
        if message is not None:
            out = [v for v in out if message.lower() in v.message.lower()]
        out.sort(key=lambda v: (v.created, v.model, v.number))
        if last is not None:
            if last < 0:
                raise UsageError("last must be a positive number of versions")
            out = out[-last:] if last else []
        return out

    def numbers(self, model: str) -> list[int]:
        """The visible version numbers of ``model``, oldest first, from its refs alone (no record is read),
        so a page of a 10,000-version model costs only the versions on the page (the sidebar pages this)."""
        self._known_model(model, model)
        return self.store.refs.numbers(model)

    def page(self, model: str, numbers: Sequence[int]) -> list[Version]:
        """The versions ``model@n`` for these ``numbers`` (from :meth:`numbers`), in that order, reading
        only their refs and records: one page of a long listing costs the page, not the model."""
        self._known_model(model, model)
        refs = self.store.refs
        tags = _invert(refs.tags(model))
        # A version's parent is most often the one before it: resolving it here keeps naming the
        # parents of a page from walking every ref of the repository.
        wanted = sorted(set(numbers) | {n - 1 for n in numbers if n > 1})
        ids = refs.version_ids(model, wanted)
        return [self._version(model, n, ids[n], tags) for n in numbers if n in ids]

    def state(self) -> str:
        """A short token that changes whenever any version is committed, deleted or tagged (the sidebar
        polls it to refresh). Reads directory listings and tags, never version records."""
        import hashlib

        refs = self.store.refs
        parts = []
        for m in refs.models():
            # numbers are contiguous, so the highest stands for them all (and costs no listing)
            parts.append([m, refs.highest(m), sorted(refs.deleted(m)), refs.tags(m)])
        return hashlib.sha1(repr(parts).encode()).hexdigest()[:16]

    def versions_of(self, entries: Iterable[Any]) -> list[Version]:
        """Versions from catalog entries (``nbmodelhub.store.catalog.Entry``), without reading records."""
        tags: dict[str, dict[int, list[str]]] = {}

        def ref_of(version_id: str) -> str:
            found = self.catalog.ref_of(version_id)
            return f"{found[0]}@{found[1]}" if found else self._ref_of(version_id)

        out = []
        for e in entries:
            if e.model not in tags:
                tags[e.model] = _invert(self.catalog.tags(e.model, fresh=False))
            out.append(self._from_record(e.model, e.number, e.id, e.record, tags[e.model], ref_of))
        return out

    def log(self, name: str) -> list[Version]:
        """The lineage of a model: its versions newest first, then their ancestors in other models."""
        check_name(name)
        own = sorted(self.versions(model=name), key=lambda v: v.number, reverse=True)
        seen = {v.id for v in own}
        by_id = {r.version_id: r for r in self.store.refs.all_versions()}
        ancestors: list[Version] = []
        frontier = [p for v in own for p in v.parents]
        while frontier:
            pid = frontier.pop(0)
            if pid in seen or pid not in by_id:
                continue
            seen.add(pid)
            r = by_id[pid]
            parent = self._version(r.model, r.number, pid)
            ancestors.append(parent)
            frontier += list(parent.parents)
        return own + ancestors

    # -- querying ------------------------------------------------------------------------------
    def query(self, text: str, namespace: Mapping[str, Any] | None = None, executor: Any = None) -> Any:
        """Run a DQL query (select, slice, construct, evaluate); see :mod:`nbmodelhub.dql`.

        ``namespace`` holds the variables ``evaluate`` names (config dicts, training functions);
        ``executor`` is any ``concurrent.futures.Executor`` for ``evaluate`` (default: local processes).
        Returns a :class:`nbmodelhub.dql.QueryResult`.
        """
        from nbmodelhub import dql

        return dql.run(self, text, namespace, executor)

    # -- committing ----------------------------------------------------------------------------
    def commit(
        self,
        obj: Any,
        name: str,
        message: str = "",
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        files: Iterable[str | os.PathLike[str] | tuple[Path, str]] | None = None,
        parents: Sequence[str | Version] | None = None,
        step: int | None = None,
        snapshots: Mapping[int, Any] | None = None,
        author: str | None = None,
        example_input: Any = None,
    ) -> Version:
        """Commit ``obj`` as the next version of ``name``.

        ``obj`` is an ``nn.Module``, a state dict (torch tensors or numpy arrays) or a path to a
        ``.safetensors``/``.pt`` file; it is the version's weights at training ``step``.
        ``snapshots`` adds earlier checkpoints ``{step: obj}``. ``parents`` defaults to the
        model's latest version; give refs of other models for a fine-tune. ``files`` are attached
        with whatever was staged by :meth:`add`.
        """
        check_name(name)
        if not isinstance(message, str):
            raise UsageError("message must be a string")
        params_doc = check_params(params)
        metrics_doc, curves_doc = check_metrics(metrics)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise UsageError(f"step must be an integer, got {step!r}")
        author = author or current_user()
        parent_ids = self._parent_ids(name, parents)

        checkpoints: list[tuple[int | None, adapters.Weights]] = []
        for s, o in sorted((snapshots or {}).items()):
            if isinstance(s, bool) or not isinstance(s, int):
                raise UsageError(f"snapshot steps must be integers, got {s!r}")
            checkpoints.append((s, adapters.extract(o)))
        main = adapters.extract(obj)
        checkpoints.append((step, main))
        attached = [(path, name_, path.read_bytes()) for path, name_ in _expand(files or [])]
        staged = self.store.staged(author)

        hashes = [self.store.hash_tensors(w.tensors) for _, w in checkpoints]
        wanted = {f"tensors/{h}" for hs in hashes for h in hs.values()}
        wanted |= {f"files/{self.store.file_hash(data)}" for _, _, data in attached}
        # Lease first, then write: a gc running now either sees the lease or makes us wait.
        lease = self.store.take_lease(wanted)
        try:
            self._write_missing(checkpoints, hashes, name)
            graph_id = self._graph(main, example_input)
            entries = [self._store_file(path, name_, data) for path, name_, data in attached]
            record = {
                "kind": "version",
                "model": name,
                "message": message,
                "author": author,
                "created": _now(),
                "parents": parent_ids,
                "params": params_doc,
                "metrics": metrics_doc,
                "curves": curves_doc,
                "snapshots": [
                    {
                        "step": s,
                        "tensors": {
                            n: {"hash": hs[n], "dtype": t.dtype, "shape": list(t.shape)} for n, t in w.tensors.items()
                        },
                        "ties": w.ties,
                    }
                    for (s, w), hs in zip(checkpoints, hashes, strict=True)
                ],
                "files": [f.to_dict() for f in _merge_files(staged.values(), entries)],
                "graph": graph_id,
                "framework": main.framework,
                "source": main.source,
                "nonce": uuid.uuid4().hex,
            }
            version_id, number = self._add_version(name, record)
            self.catalog.add(name, number, version_id, record)
        finally:
            self.store.release(lease)
        self.store.unstage(author, staged)
        return self._version(name, number, version_id)

    def _parent_ids(self, name: str, parents: Sequence[str | Version] | None) -> list[str]:
        if parents is None:
            latest = self.store.refs.latest(name) if name in self.store.refs.models() else None
            return [latest[1]] if latest else []
        if isinstance(parents, (str, Version)):
            parents = [parents]
        return [self.get(p).id for p in parents]

    def _write_missing(
        self, checkpoints: list[tuple[int | None, adapters.Weights]], hashes: list[dict[str, str]], name: str
    ) -> None:
        todo: dict[str, Tensor] = {}
        for (_, w), hs in zip(checkpoints, hashes, strict=True):
            for n, t in w.tensors.items():
                todo.setdefault(hs[n], t)
        missing = self.store.missing_tensors(todo)
        total = sum(todo[d].nbytes for d in missing)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"commit {name}", delay=1.0, leave=False) as bar:
            for digest in missing:
                self.store.write_tensor(digest, todo[digest], bar.update)

    def _graph(self, weights: adapters.Weights, example_input: Any) -> str:
        """Store the layer graph (traced from a module where possible) and return its id."""
        shapes = tuple((n, t.dtype, t.shape) for n, t in weights.tensors.items())
        # The module's repr names every layer with its settings: two models of one class and the same
        # parameter shapes can still differ in parameter-free layers (a max pool vs an avg pool).
        key = (repr(weights.module) if weights.module is not None else None, shapes, example_input is None)
        cached = self._graphs.get(key) if weights.graph is None else None
        if cached is not None:
            return cached
        if weights.graph is not None:
            graph = weights.graph
        elif weights.module is not None:
            graph = graph_from_module(weights.module, example_input)
        else:
            graph = graph_from_tensors({n: (t.dtype, t.shape) for n, t in weights.tensors.items()})
        doc = graph.to_json()
        graph_id = self.store.put_document("graphs", doc)
        # Tracing a big model takes seconds; a training loop commits the same architecture again and again.
        self._graphs[key] = graph_id
        self._graph_docs[graph_id] = doc
        return graph_id

    def _add_version(self, model: str, record: Mapping[str, Any]) -> tuple[str, int]:
        """Store.add_version, rewriting the layer graph if this process made it (a gc may have taken it)."""
        graph = self._graph_docs.get(record.get("graph") or "")
        return self.store.add_version(model, record, [("graphs", graph)] if graph is not None else [])

    def _store_file(self, path: Path, name: str, data: bytes | None = None) -> FileEntry:
        data = path.read_bytes() if data is None else data
        return FileEntry(name, len(data), path.stat().st_mtime, self.store.put_file(data))

    # -- files -----------------------------------------------------------------------------------
    def add(
        self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], author: str | None = None
    ) -> list[FileEntry]:
        """Stage files or folders (recursively) for the next commit by this author."""
        author = author or current_user()
        # Every path is checked before any file is stored: a bad last path must not leave the others' objects.
        found = list(_expand(paths))
        entries = [self._store_file(path, name) for path, name in found]
        for entry in entries:
            self.store.stage(entry.to_dict(), author)
        return entries

    def staged(self, author: str | None = None) -> list[FileEntry]:
        entries = self.store.staged(author or current_user()).values()
        return sorted((FileEntry(e["name"], e["size"], e["mtime"], e["hash"]) for e in entries), key=lambda f: f.name)

    def files(self, ref: str | Version, include: str | None = None, sortby: str = "name") -> list[FileEntry]:
        keys = {"name": lambda f: f.name, "mod": lambda f: f.mtime, "size": lambda f: f.size}
        if sortby not in keys:
            raise UsageError(f"sortby must be one of {', '.join(keys)}, got {sortby!r}")
        entries = list(self.get(ref).files)
        if include:
            entries = [
                f for f in entries if fnmatch.fnmatch(f.name, include) or fnmatch.fnmatch(Path(f.name).name, include)
            ]
        return sorted(entries, key=keys[sortby])

    def pull_files(
        self, ref: str | Version, dest: str | os.PathLike[str], names: Iterable[str] | None = None
    ) -> list[Path]:
        """Copy a version's files into ``dest`` (never outside it), keeping their mtimes."""
        version = self.get(ref)
        entries = {f.name: f for f in version.files}
        wanted = list(entries) if names is None else list(names)
        unknown = [n for n in wanted if n not in entries]
        if unknown:
            raise UsageError(
                f"{version.ref} has no file {unknown[0]!r}; it has: {', '.join(sorted(entries)) or 'none'}"
            )
        root = Path(dest).expanduser().resolve()
        written = []
        for name in wanted:
            entry = entries[name]
            try:  # a record from a hub or a damaged repository may name anything: check before touching a path
                check_file_name(name)
            except UsageError as exc:
                raise CorruptObject(f"{version.ref}: {exc}: it could escape {root}; refusing to write it") from None
            target = (root / name).resolve()
            if not target.is_relative_to(root):
                raise CorruptObject(f"{version.ref}: file name {name!r} would escape {root}; refusing to write it")
            data = self.store.get_file(entry.hash, entry.size, f"{version.ref}: file {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.utime(target, (entry.mtime, entry.mtime))
            written.append(target)
        return written

    # -- loading -------------------------------------------------------------------------------
    def load(
        self,
        ref: str | Version,
        framework: str = "numpy",
        snapshot: int | None = None,
        keys: Iterable[str] | str | None = None,
        precision: str | None = None,
    ) -> dict[str, Any]:
        """The version's tensors as numpy arrays or torch tensors; ties share one object.

        ``snapshot`` picks a training step (default: the last); ``keys`` (names or globs) loads
        only those tensors and reads nothing else. ``precision="bf16"`` (or ``"fp16"``) is an
        approximate read: floats keep their dtype but are truncated to that many mantissa bits,
        and archived tensors read only their high-order byte planes (about half the bytes).
        """
        if framework not in adapters.FRAMEWORKS:
            raise UsageError(f"unknown framework {framework!r}: use one of {', '.join(adapters.FRAMEWORKS)}")
        version = self.get(ref)
        if framework == "torch":
            adapters.torch_adapter.require_torch()  # import torch before the progress bar's clock starts
        snap = self._snapshot(version, snapshot)
        tensors: dict[str, Any] = snap["tensors"]
        ties: dict[str, str] = snap.get("ties", {})
        names = self._select(version, list(tensors) + list(ties), keys)
        sources = sorted({ties.get(n, n) for n in names}, key=list(tensors).index)
        total = sum(TensorInfo(n, tensors[n]["dtype"], tuple(tensors[n]["shape"]), "").nbytes for n in sources)
        loaded: dict[str, Any] = {}
        items = [
            (tensors[n]["hash"], tensors[n]["dtype"], tuple(tensors[n]["shape"]), f"{version.ref}: tensor {n!r}")
            for n in sources
        ]
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"load {version.ref}", delay=1.0, leave=False) as bar:
            for n, tensor in zip(sources, self.store.read_tensors(items, bar.update, precision=precision), strict=True):
                loaded[n] = adapters.convert(tensor, framework)
        return {n: loaded[ties.get(n, n)] for n in names}

    def _snapshot(self, version: Version, step: int | None) -> dict[str, Any]:
        record = self._record(version.id, version.ref)
        if step is None:
            return dict(record["snapshots"][-1])
        for snap in record["snapshots"]:
            if snap.get("step") == step:
                return dict(snap)
        steps = [s.get("step") for s in record["snapshots"]]
        raise UsageError(f"{version.ref} has no snapshot at step {step}; its steps are {steps}")

    @staticmethod
    def _select(version: Version, names: list[str], keys: Iterable[str] | str | None) -> list[str]:
        if keys is None:
            return names
        if isinstance(keys, str):
            keys = [keys]
        chosen: list[str] = []
        for key in keys:
            hits = [n for n in names if n == key] or [n for n in names if fnmatch.fnmatchcase(n, key)]
            if not hits:
                close = difflib.get_close_matches(key, names, n=3)
                hint = f"; closest: {', '.join(close)}" if close else ""
                raise UsageError(f"{version.ref} has no tensor {key!r}{hint}")
            chosen += [h for h in hits if h not in chosen]
        return chosen

    def checkout(self, ref: str | Version, module: Any, snapshot: int | None = None) -> Version:
        """Load a version's weights into ``module`` (strict: names and shapes must match)."""
        version = self.get(ref)
        state = self.load(version, framework="torch", snapshot=snapshot)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise UsageError(f"{version.ref} does not fit this module: {' '.join(lines[1:3]) or lines[0]}") from exc
        return version

    # -- changing refs ---------------------------------------------------------------------------
    def copy(self, ref: str | Version, new_name: str, message: str | None = None) -> Version:
        """A new model whose first version shares every object of ``ref`` (nothing is copied)."""
        check_name(new_name)
        source = self.get(ref)
        record = dict(self._record(source.id, source.ref))
        record.update(
            model=new_name,
            message=message if message is not None else f"copy of {source.ref}",
            author=current_user(),
            created=_now(),
            parents=[source.id],
            nonce=uuid.uuid4().hex,
        )
        version_id, number = self._add_version(new_name, record)
        return self._version(new_name, number, version_id)

    def tag(self, ref: str | Version, tag: str, force: bool = False) -> Version:
        version = self.get(ref)
        self.store.refs.set_tag(version.model, tag, version.number, force=force)
        return self.get(f"{version.model}@{version.number}")

    def delete(self, ref: str | Version) -> Version:
        """Hide a version; ``gc`` reclaims whatever only it used."""
        version = self.get(ref)
        self.store.refs.delete(version.model, version.number)
        return version

    def archive(
        self,
        model: str | Sequence[str] | None = None,
        max_chain: int | None = DEFAULT_MAX_CHAIN,
        max_recreate_bytes: int | None = None,
        unpack: bool = False,
    ) -> ArchiveReport:
        """Re-encode every snapshot of ``model`` (None: all models) into the compact PAS form.

        Floats are split into byte planes and tensors stored whole or as lossless deltas of a
        related tensor, by a plan that minimises bytes while reading any tensor takes at most
        ``max_chain`` deltas and ``max_recreate_bytes`` stored bytes. Crash-safe and reversible
        (``unpack=True`` restores the commit form); every reader sees the same bits either way.
        """
        models = [model] if isinstance(model, str) else (None if model is None else list(model))
        bars: list[Any] = []

        def stage(name: str, total: int) -> Callable[[int], Any]:
            for old in bars:
                old.close()
            unit = {"plan": "tensor"}.get(name, "B")
            bars.append(tqdm(total=total, unit=unit, unit_scale=unit == "B", desc=name, delay=1.0, leave=False))
            return bars[-1].update

        try:
            return self.store.archive(models, max_chain, max_recreate_bytes, unpack, stage)
        finally:
            for bar in bars:
                bar.close()

    def gc(self, break_lock: bool = False) -> GcReport:
        return self.store.gc(break_lock=break_lock)

    def fsck(self, repair_from: str | os.PathLike[str] | bool | None = None) -> FsckReport:
        """Re-hash every object every version uses; ``report.problems`` names each damaged one.

        ``repair_from`` (a remote's name, a hub URL or folder; True: the default remote) fetches
        each damaged or missing object again from that hub, checks it against its hash, and puts
        it back; ``report.repaired`` / ``report.unrepaired`` say what was and was not restored.
        """
        with tqdm(unit="B", unit_scale=True, desc="fsck", delay=1.0, leave=False) as bar:
            if repair_from is None or repair_from is False:
                return self.store.fsck(bar.update)
            from nbmodelhub.hub import sharing

            with sharing.open_hub(self, None if repair_from is True else repair_from, writable=False) as hub:
                report = self.store.fsck(bar.update, repair_from=hub.store)
            if report.repaired:
                self.catalog.discard()  # it may have left a damaged record out: index them again
            return report

    def graph(self, ref: str | Version) -> LayerGraph:
        """The version's layer graph."""
        version = self.get(ref)
        if version.graph is None:
            return graph_from_tensors({n: (t.dtype, t.shape) for n, t in version.tensors.items()})
        return LayerGraph.from_json(self.store.get_document("graphs", version.graph, f"{version.ref}: layer graph"))

    # -- summaries ---------------------------------------------------------------------------------
    def describe(
        self,
        ref: str | Version,
        bins: int = 64,
        module: Any = None,
        example_input: Any = None,
        snapshot: int | None = None,
        stats: bool = True,
    ) -> dict[str, Any]:
        """A version's layers with parameter counts, weight statistics and histograms, its footprint.

        Statistics (mean, std, min, max, sparsity, L2 norm) and per-layer histograms of ``bins``
        bins stream over the stored chunks; ``stats=False`` skips reading weights. With ``module``
        the version is checked out into it; with an ``example_input`` too, one forward measures
        activation memory and time.
        """
        from nbmodelhub.analysis.describe import describe_layers, forward_footprint

        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 0:
            raise UsageError(f"bins must be a whole number ≥ 0 (0: no histograms), got {bins!r}")
        if example_input is not None and module is None:
            raise UsageError("example_input needs module=: the forward pass runs the version in your module")
        version = self.get(ref)
        snap = self._snapshot(version, snapshot)
        infos = [TensorInfo(n, t["dtype"], tuple(t["shape"]), t["hash"]) for n, t in snap["tensors"].items()]
        graph = self.graph(version)
        footprint: dict[str, Any] = {
            "parameters": sum(i.count for i in infos),
            "parameter_bytes": sum(i.nbytes for i in infos),
            "activation_bytes": None,
            "forward_seconds": None,
        }
        if module is not None:
            self.checkout(version, module, snapshot=snapshot)
            if example_input is not None:
                footprint.update(forward_footprint(module, example_input))
        return {
            "version": version.to_dict(),
            "snapshot": snap.get("step"),
            "parameters": footprint["parameters"],
            "bytes": footprint["parameter_bytes"],
            "ties": dict(snap.get("ties", {})),
            "graph": graph.summary(),
            "layers": describe_layers(self.store, version.ref, snap["tensors"], graph, bins=bins, stats=stats),
            "footprint": footprint,
            "metrics": version.metrics,
            "curves": {k: [list(p) for p in c] for k, c in version.curves.items()},
            "files": [f.to_dict() for f in version.files],
            "evaluations": [e.to_dict() for e in self.evaluations(version)],
        }

    def histograms(
        self,
        ref: str | Version,
        names: Iterable[str] | str | None = None,
        bins: int = 64,
        edges: Any = None,
        snapshot: int | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Per tensor ``{"edges": [...], "counts": [...]}``, streamed over the stored chunks.

        ``names`` are tensor names or globs (default: all). ``edges`` (one list for every tensor,
        or a dict name → list) fixes the bins, so two versions overlay: get shared ones from
        :func:`nbmodelhub.analysis.version_edges`. Without edges each tensor gets ``bins`` bins
        over its own range (one extra pass to find it).
        """
        from nbmodelhub.analysis.describe import check_edges, histograms

        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise UsageError(f"bins must be a whole number ≥ 1, got {bins!r}")
        check_edges(edges)
        version = self.get(ref)
        snap = self._snapshot(version, snapshot)
        tensors, ties = snap["tensors"], snap.get("ties", {})
        chosen = list(tensors) if names is None else self._select(version, list(tensors) + list(ties), names)
        return histograms(self.store, version.ref, tensors, ties, chosen, bins=bins, edges=edges)

    def eval(
        self,
        ref: str | Version,
        fn: Callable[[Any, Any], Mapping[str, Any]],
        module: Any = None,
        data: Any = None,
        snapshot: int | None = None,
        progressive: bool = False,
        precision: str = "bf16",
    ) -> Evaluation:
        """Run ``fn(model, data)`` on a version and record the metrics it returns as an evaluation.

        ``progressive=True``: ``fn`` returns per-example scores (examples × classes, or a dict
        with ``scores`` and ``labels``); the version is scored on its high-order byte planes
        (``precision``) first and the low-order planes are read only if some example's top class
        is not decided. Recorded: bytes read against a full read, the share decided early, the
        agreement with the full-precision answer, and accuracy when labels are given.

        ``model`` is ``module`` with the version checked out into it, else the version's torch
        state dict. ``fn`` returns a dict of metric name → number (or a curve of (step, value)
        pairs). The version itself is not touched; the evaluation is stored beside it and shows
        in :meth:`evaluations`, :meth:`describe` and :meth:`diff`. If ``fn`` fails, nothing is
        recorded.
        """
        import time

        from nbmodelhub.errors import ModelHubError
        from nbmodelhub.store import evaluations

        if not callable(fn):
            raise UsageError(f"fn must be a function (model, data) → dict of metrics, got {type(fn).__name__}")
        if self.store.backend.read_only:
            raise UsageError(f"the repository at {self.location} is read-only: evaluations cannot be recorded")
        version = self.get(ref)
        target: Any = None
        if progressive:
            adapters.torch_adapter.require_torch()
            planes_for("float32", precision)  # an unknown precision fails here, before any work
        elif module is not None:
            self.checkout(version, module, snapshot=snapshot)
            target = module
        else:
            target = self.load(version, framework="torch", snapshot=snapshot)
        name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
        start = time.perf_counter()
        try:
            result = (
                self._progressive(version, fn, module, data, snapshot, precision) if progressive else fn(target, data)
            )
        except Exception as exc:
            raise ModelHubError(
                f"evaluating {version.ref} failed: {name} raised {type(exc).__name__}: {exc} (nothing was recorded)"
            ) from exc
        seconds = time.perf_counter() - start
        if not isinstance(result, Mapping) or not result:
            raise ModelHubError(
                f"evaluating {version.ref}: {name} must return a dict of metric name → number, "
                f"got {type(result).__name__ if result is not None else 'None'} (nothing was recorded)"
            )
        try:
            metrics_doc, curves_doc = check_metrics(result)
        except UsageError as exc:
            raise ModelHubError(f"evaluating {version.ref}: {name} returned {exc} (nothing was recorded)") from exc
        doc = {
            "kind": "evaluation",
            "version": version.id,
            "model": version.model,
            "number": version.number,
            "metrics": metrics_doc,
            "curves": curves_doc,
            "function": f"{name} (progressive, {precision})" if progressive else name,
            "data": evaluations.describe_data(data),
            "snapshot": snapshot,
            "author": current_user(),
            "created": _now(),
            "seconds": seconds,
            "nonce": uuid.uuid4().hex,
        }
        digest = evaluations.record(self.store, version.model, version.number, doc)
        return evaluations.from_document(digest, version.ref, doc)

    def _progressive(
        self,
        version: Version,
        fn: Callable[[Any, Any], Any],
        module: Any,
        data: Any,
        snapshot: int | None,
        precision: str,
    ) -> dict[str, Any]:
        from nbmodelhub.analysis import progressive

        snap = self._snapshot(version, snapshot)
        tensors, ties = snap["tensors"], snap.get("ties", {})
        names = list(tensors)
        items = [
            (tensors[n]["hash"], tensors[n]["dtype"], tuple(tensors[n]["shape"]), f"{version.ref}: tensor {n!r}")
            for n in names
        ]
        return progressive.evaluate(self.store, items, names, ties, fn, module, data, precision)

    def evaluations(self, ref: str | Version) -> list[Evaluation]:
        """The evaluations recorded for a version, oldest first."""
        from nbmodelhub.store import evaluations

        version = self.get(ref)
        return evaluations.load(self.store, version.model, version.number, version.id)

    def diff(
        self,
        a: str | Version,
        b: str | Version,
        all_params: bool = False,
        snapshot_a: int | None = None,
        snapshot_b: int | None = None,
    ) -> VersionDiff:
        """What changed from ``a`` to ``b``: layers, tensors (with change metrics), params, metrics.

        Works across models (a fine-tune against its base) and between snapshots (``snapshot_a``,
        ``snapshot_b``: training steps; default the last). Tensors are paired through the layer
        match; identical content is decided by hash without reading data.
        """
        from nbmodelhub.analysis.version_diff import Side, diff_versions

        def side(version: Version, step: int | None) -> Side:
            snap = self._snapshot(version, step)
            return Side(
                ref=version.ref,
                step=snap.get("step"),
                tensors=snap["tensors"],
                ties=snap.get("ties", {}),
                graph=self.graph(version),
                params=version.params,
                metrics=version.metrics,
                curves=version.curves,
                evaluations=[e.to_dict() for e in self.evaluations(version)],
            )

        return diff_versions(self.store, side(self.get(a), snapshot_a), side(self.get(b), snapshot_b), all_params)

    # -- training runs (nbmodelhub/tracking) -------------------------------------------------------
    def run(
        self,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        parent: str | Version | None = None,
        message: str = "",
        author: str | None = None,
        model: Any = None,
        resume: str | None = None,
    ) -> Run:
        """Start recording a training run of ``name`` (see :func:`nbmodelhub.run`)."""
        from nbmodelhub.tracking import start

        return start(self, name, dict(params) if params is not None else None, parent, message, author, model, resume)

    def runs(
        self, active: bool | None = None, author: str | None = None, model: str | None = None, status: str | None = None
    ) -> list[RunInfo]:
        """Runs oldest first, from every process writing here: running, interrupted, committed."""
        from nbmodelhub.tracking import list_runs

        return list_runs(self, active=active, author=author, model=model, status=status)

    def commit_run(self, run_id: str, message: str | None = None) -> Version:
        """Commit an interrupted run (its process died) with everything it logged and stored."""
        from nbmodelhub.tracking import open_run

        return open_run(self, run_id).commit(message)

    def discard_run(self, run_id: str) -> None:
        """Give up an interrupted run; gc may then reclaim its snapshots."""
        from nbmodelhub.tracking import open_run

        open_run(self, run_id).discard()

    # -- sharing: hubs, cards, import (nbmodelhub.hub) -------------------------------------------------
    def remotes(self) -> dict[str, str]:
        """Named hubs of this repository: name → URL."""
        from nbmodelhub.hub import remotes

        return remotes.remotes(self.store)

    def add_remote(self, name: str, url: str | os.PathLike[str], force: bool = False) -> str:
        """Name a hub (``origin`` is the default one); returns the URL as stored."""
        from nbmodelhub.hub import remotes

        return remotes.add_remote(self.store, name, url, force=force)

    def remove_remote(self, name: str) -> str:
        from nbmodelhub.hub import remotes

        return remotes.remove_remote(self.store, name)

    def publish(
        self,
        ref: str | Version,
        hub: str | os.PathLike[str] | None = None,
        as_name: str | None = None,
        card: Mapping[str, str] | None = None,
    ) -> TransferReport:
        """Copy a version and its ancestors to a hub (a remote's name or a URL; default: origin).

        Only objects the hub lacks are sent, in parallel, each verified against its hash; an
        interrupted publish resumes where it stopped. ``card`` sets fields of the model's card
        (description, intended_use, limitations, license) here and on the hub.
        """
        from nbmodelhub.hub import sharing

        return sharing.publish(self, ref, hub, as_name, card)

    def pull(
        self, hub_ref: str, hub: str | os.PathLike[str] | None = None, as_name: str | None = None
    ) -> TransferReport:
        """Copy a hub's version (``resnet@2``, ``origin/resnet:prod``) and its ancestors here, ids kept."""
        from nbmodelhub.hub import sharing

        return sharing.pull(self, hub_ref, hub, as_name)

    def search(
        self, text: str = "", hub: str | os.PathLike[str] | None = None, latest: bool = False
    ) -> list[ModelCard]:
        """Cards of the versions matching ``text`` here, or on ``hub`` (see :mod:`nbmodelhub.hub.catalog`)."""
        from nbmodelhub.hub import sharing

        return sharing.search(self, text, hub, latest)

    def card(self, ref: str | Version, hub: str | os.PathLike[str] | None = None) -> ModelCard:
        """A version's model card: its model's written card plus its metrics, params and lineage."""
        from nbmodelhub.hub import sharing

        return sharing.card(self, ref, hub)

    def set_card(self, model: str, **fields: str) -> dict[str, str]:
        """Write fields of a model's card (description, intended_use, limitations, license)."""
        from nbmodelhub.hub import cards

        self._known_model(check_name(model), model)
        return cards.write_fields(self.store, model, fields)

    def import_model(
        self,
        source: str | os.PathLike[str],
        name: str,
        message: str | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> Version:
        """Commit a model from another hub's files: a Hugging Face folder or ``hf://org/name``,
        an ONNX, safetensors or ``.pt``/``.bin`` file, or an ``https://`` URL of one. The original
        files are kept as the version's files."""
        from nbmodelhub.hub import sharing

        return sharing.import_model(self, source, name, message, params, metrics)


def run(
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    parent: str | Version | None = None,
    repo: Repository | None = None,
    message: str = "",
    author: str | None = None,
    model: Any = None,
    resume: str | None = None,
) -> Run:
    """Record a training run: ``with mh.run("resnet", params={...}) as run: run.log(step, loss=…)``.

    ``parent`` defaults to the model's latest version; ``model`` (a module) is snapshotted at the
    last step when the run commits; ``resume`` continues an interrupted run by id. Without
    ``repo`` the default repository (:func:`open`) is used.
    """
    own = repo is None
    repository = open() if repo is None else repo
    try:
        started = repository.run(name, params, parent, message, author, model, resume)
    except BaseException:
        if own:
            repository.close()
        raise
    started._owns_repo = own
    return started


def _invert(tags: Mapping[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for tag, number in tags.items():
        out.setdefault(number, []).append(tag)
    return out


def _expand(paths: str | os.PathLike[str] | Iterable[Any]) -> Iterator[tuple[Path, str]]:
    """Files under each path, with the names they are stored by (relative, '/'-separated).

    A ``(path, name)`` pair stores one file under the name given (the importer keeps a model
    folder's files by their names inside it).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for raw in paths:
        if isinstance(raw, tuple):
            source, stored_as = raw
            if not Path(source).is_file():
                raise UsageError(f"no such file: {source}")
            yield Path(source), check_file_name(stored_as)
            continue
        path = Path(raw).expanduser()
        if not path.exists():
            raise UsageError(f"no such file or folder: {path}")
        # Names come from the path as written (absolute, not resolved): a symlink's name is where it sits,
        # and resolving it could land outside the base and fail.
        absolute = Path(os.path.abspath(path))
        base = absolute.parent
        cwd = Path.cwd()
        if absolute.is_relative_to(cwd):
            base = cwd
        if not path.is_dir():
            yield path, check_file_name(absolute.relative_to(base).as_posix())
            continue
        inside = path.resolve()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            # A symlink in a folder leading out of it (to ~/.ssh, say) would attach, and publish, a file the
            # user never chose: only an explicitly named file may live elsewhere.
            if not file.resolve().is_relative_to(inside):
                raise UsageError(
                    f"{file} is a symlink to {file.resolve()}, outside {path}: add that file itself if you mean it"
                )
            yield file, check_file_name(Path(os.path.abspath(file)).relative_to(base).as_posix())


def _merge_files(staged: Iterable[Mapping[str, Any]], attached: list[FileEntry]) -> list[FileEntry]:
    merged = {e["name"]: FileEntry(e["name"], e["size"], e["mtime"], e["hash"]) for e in staged}
    merged.update({f.name: f for f in attached})
    return sorted(merged.values(), key=lambda f: f.name)


def open(location: str | os.PathLike[str] | ZarrStore | None = None, read_only: bool = False) -> Repository:
    """Open (creating if needed) the repository at a path or URL; default ``$MODELHUB_PATH`` or ``~/.modelhub``."""
    return Repository(location, read_only=read_only)
