"""A training run: params, per-step metrics and weight snapshots, committed as one version.

    with mh.run("resnet", params={"lr": 0.1}, parent="resnet@2") as run:
        for step in range(1000):
            ...
            run.log(step, loss=loss, acc=acc)
            if step % 100 == 0:
                run.snapshot(model, step)

Every ``log`` is one line appended to the run's journal (see journal.py); every ``snapshot``
writes its tensors into the store at once (content-addressed, so whatever did not change since
the previous snapshot is not written again) and journals their hashes. Leaving the ``with``
block normally commits the version; an exception, a KeyboardInterrupt or a dead process leaves
an *interrupted* run that ``mh.run(..., resume=ID)`` continues or ``repo.commit_run(ID)`` commits.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from nbmodelhub import adapters
from nbmodelhub.errors import ConcurrentUpdate, CorruptObject, UsageError
from nbmodelhub.store.documents import check_metrics, check_name, check_params, group_node
from nbmodelhub.store.refs import current_user
from nbmodelhub.tracking import journal
from nbmodelhub.tracking.state import RunState

if TYPE_CHECKING:
    from nbmodelhub.api import Repository, Version

_dumps = json.JSONEncoder(separators=(",", ":")).encode
# Open runs are kept alive here (a run nobody references still owns its journal) until they end.
_OPEN: set[Run] = set()
LEASE_WAIT = 15 * 60.0


class Run:
    """A run in progress, owned by this process. Start one with :func:`nbmodelhub.run`."""

    def __init__(
        self, repo: Repository, folder: Path, header: dict[str, Any], writer: journal.Writer, state: RunState
    ) -> None:
        self.repo = repo
        self.folder = folder
        self.header = header
        self.state = state
        self.model: Any = None  # a module snapshotted at commit, if given
        self._writer: journal.Writer | None = writer
        self._names: set[str] = set(state.curves)
        self._owns_repo = False
        self._views: list[Any] = []
        _OPEN.add(self)

    # -- who and what ----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self.header["id"])

    @property
    def name(self) -> str:
        return str(self.header["model"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.header.get("params", {}))

    @property
    def author(self) -> str:
        return str(self.header.get("author", ""))

    @property
    def step(self) -> int | None:
        """The last logged step (where a resumed loop carries on from)."""
        return self.state.last_step

    @property
    def curves(self) -> dict[str, tuple[list[int], list[float]]]:
        return {k: (list(xs), list(ys)) for k, (xs, ys) in self.state.curves.items()}

    @property
    def status(self) -> str:
        return self.state.status(self.folder, owned=self._writer is not None)

    @property
    def version(self) -> Version | None:
        """The committed version, once there is one."""
        end = self.state.end
        if end is None or end.get("k") != "commit":
            return None
        return self.repo.get(str(end["version"]))

    def __repr__(self) -> str:
        last = f", step {self.step}" if self.step is not None else ""
        return f"<Run {self.id} {self.name} {self.status}{last}>"

    # -- recording -------------------------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Record metrics at a training step: ``run.log(step, loss=0.31, acc=0.9)``.

        Values are numbers (Python, numpy or 0-d torch tensors; NaN and infinity are kept). The
        point is on disk when this returns.
        """
        writer = self._writer
        if writer is None:
            raise UsageError(f"run {self.id} is {self.status}: start a new run (or resume it) to log more")
        if type(step) is not int:
            step = _step(step)
        if not metrics:
            raise UsageError("run.log needs at least one metric, as in run.log(step, loss=0.5)")
        for key, value in metrics.items():
            if type(value) is not float:
                metrics[key] = _number(key, value)
            if key not in self._names:
                _metric_name(key)
                self._names.add(key)
        now = time.time()
        writer.write(f'{{"k":"log","s":{step},"t":{now:.3f},"m":{_dumps(metrics)}}}\n')
        self.state.add(step, metrics, now)

    def snapshot(self, model: Any, step: int | None = None) -> None:
        """Store the weights of ``model`` (a module, state dict or checkpoint path) at ``step``.

        ``step`` defaults to the last logged step. Tensors unchanged since an earlier snapshot
        (or present anywhere in the repository) are not written again.
        """
        writer = self._require_open("snapshot")
        if step is None:
            step = self.state.last_step
        elif type(step) is not int:
            step = _step(step)
        weights = adapters.extract(model)
        store = self.repo.store
        hashes = store.hash_tensors(weights.tensors)
        previous = self.state.last_snapshot()
        known = {t["hash"] for t in previous["tensors"].values()} if previous else set()
        self._lease(set(hashes.values()))
        todo = {h: weights.tensors[n] for n, h in hashes.items() if h not in known}
        missing = store.missing_tensors(todo)
        total = sum(todo[d].nbytes for d in missing)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"snapshot {self.name}", delay=1.0, leave=False) as bar:
            for digest in missing:
                store.write_tensor(digest, todo[digest], bar.update)
        graph_id = self.repo._graph(weights, None)
        event = {
            "k": "snapshot",
            "t": round(time.time(), 3),
            "s": step,
            "tensors": {
                n: {"hash": hashes[n], "dtype": t.dtype, "shape": list(t.shape)} for n, t in weights.tensors.items()
            },
            "ties": dict(weights.ties),
            "graph": graph_id,
            "framework": weights.framework,
            "source": weights.source,
        }
        writer.write(json.dumps(event, separators=(",", ":")) + "\n")
        self.state.snapshots[step] = event
        self._lease(set())  # now the graph too

    def restore(self, module: Any) -> int | None:
        """Load the last snapshot into ``module`` (strict); returns its step. For resumed runs."""
        snap = self.state.last_snapshot()
        if snap is None:
            raise UsageError(f"run {self.id} has no snapshot yet: there are no weights to restore")
        tensors, ties = snap["tensors"], snap.get("ties", {})
        adapters.torch_adapter.require_torch()
        items = [(t["hash"], t["dtype"], tuple(t["shape"]), f"run {self.id}: tensor {n!r}") for n, t in tensors.items()]
        loaded = dict(zip(tensors, self.repo.store.read_tensors(items), strict=True))
        state = {n: adapters.convert(t, "torch") for n, t in loaded.items()}
        state.update({alias: state[target] for alias, target in ties.items()})
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise UsageError(f"run {self.id}'s snapshot does not fit this module: {' '.join(lines[1:3])}") from exc
        return snap.get("s")

    # -- ending ------------------------------------------------------------------------------------
    def commit(self, message: str | None = None) -> Version:
        """Commit the run as the next version of its model: params, curves, every snapshot."""
        self._require_open("commit")
        try:
            if self.model is not None:
                last = self.state.last_snapshot()
                if last is None or last.get("s") != self.state.last_step:
                    self.snapshot(self.model, self.state.last_step)
            version = self._commit(message)
        except BaseException as exc:
            self.stop(f"commit failed: {type(exc).__name__}")
            raise
        return version

    def _commit(self, message: str | None) -> Version:
        from nbmodelhub.api import _now

        if not self.state.snapshots:
            raise UsageError(
                f"run {self.id} has no snapshot, so no weights to commit: call run.snapshot(model) first "
                f"(the run stays recoverable: mh.run(resume={self.id!r}))"
            )
        done = self._already_committed()
        if done is not None:
            return done
        steps = self.state.snapshot_steps()
        snaps = [self.state.snapshots[s] for s in steps]
        last = snaps[-1]
        metrics_doc, curves_doc = check_metrics(
            {k: list(zip(xs, ys, strict=True)) for k, (xs, ys) in self.state.curves.items()}
        )
        store = self.repo.store
        graph = last.get("graph")
        if graph and not store.backend.exists(f"objects/graphs/{graph}/zarr.json"):
            graph = None  # collected by a gc: the version falls back to a graph from tensor names
        record = {
            "kind": "version",
            "model": self.name,
            "message": message if message is not None else self.header.get("message") or f"run {self.id}",
            "author": self.author,
            "created": _now(),
            "parents": list(self.header.get("parents", [])),
            "params": self.params,
            "metrics": metrics_doc,
            "curves": curves_doc,
            "snapshots": [{"step": s.get("s"), "tensors": s["tensors"], "ties": s.get("ties", {})} for s in snaps],
            "files": [],
            "graph": graph,
            "framework": last.get("framework", "numpy"),
            "source": last.get("source"),
            "run": {"id": self.id, "started": self.header.get("started"), "host": self.header.get("host")},
            "nonce": uuid.uuid4().hex,
        }
        missing = store.missing_tensors({t["hash"] for s in snaps for t in s["tensors"].values()})
        if missing:
            raise CorruptObject(
                f"run {self.id}: {len(missing)} snapshot tensor(s) are gone from the repository "
                f"(a gc ran more than a day after the run stopped?): {missing[0][:12]}…"
            )
        version_id, number = self.repo._add_version(self.name, record)
        version = self.repo._version(self.name, number, version_id)
        self._end("commit", version=version_id, ref=version.ref)
        return version

    def _already_committed(self) -> Version | None:
        """A commit that died after its version became visible but before its journal line."""
        for version in self.repo.versions(model=self.name) if self.name in self.repo.models() else []:
            run = self.repo.store.get_document("versions", version.id, version.ref).get("run") or {}
            if run.get("id") == self.id:
                self._end("commit", version=version.id, ref=version.ref)
                return version
        return None

    def discard(self) -> None:
        """Give the run up: nothing is committed and gc may reclaim its snapshots."""
        self._require_open("discard")
        self._end("discard")

    def stop(self, reason: str = "stopped") -> None:
        """Stop recording without committing; the run stays interrupted and recoverable."""
        if self._writer is None:
            return
        self._writer.event("stop", reason=reason)
        self._close()

    def _end(self, kind: str, **fields: Any) -> None:
        self.repo.store.backend.delete(_lease_key(self.id))
        assert self._writer is not None
        self._writer.event(kind, **fields)
        self.state.apply([{"k": kind, "t": time.time(), **fields}])
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        _OPEN.discard(self)
        for view in self._views:
            try:
                view.pump()  # the final state; a view whose frontend is gone must not fail the commit
            except Exception:
                pass
        if self._owns_repo:
            self.repo.close()

    def _require_open(self, what: str) -> journal.Writer:
        if self._writer is None:
            raise UsageError(
                f"cannot {what}: run {self.id} is {self.status} (resume it with mh.run(resume={self.id!r}))"
            )
        return self._writer

    def _lease(self, extra: set[str]) -> None:
        """Keep a concurrent gc away from every object this run's snapshots use.

        One lease per run, rewritten with a fresh time at each snapshot. Unlike a commit's lease
        it names no process: a run whose process died is still waiting to be committed.
        """
        objects = {f"tensors/{t['hash']}" for s in self.state.snapshots.values() for t in s["tensors"].values()}
        objects |= {f"graphs/{s['graph']}" for s in self.state.snapshots.values() if s.get("graph")}
        objects |= {f"tensors/{h}" for h in extra}
        doc = {"objects": sorted(objects), "time": time.time(), "author": self.author, "run": self.id}
        store = self.repo.store
        store.backend.set(f"{_lease_key(self.id)}", group_node(doc))
        deadline = time.monotonic() + LEASE_WAIT
        while store._gc_lock_held():
            if time.monotonic() > deadline:
                raise ConcurrentUpdate("a gc has held the repository for too long: retry, or `dlv gc --break-lock`")
            time.sleep(0.1)

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._writer is None:
            return
        if exc_type is None:
            self.commit()
        else:
            self.stop(exc_type.__name__)

    # -- views -------------------------------------------------------------------------------------
    def show(self) -> Any:
        """The live curves widget: grows as ``log`` is called."""
        from nbmodelhub.widgets.run_curves import RunCurves

        return RunCurves(self)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.show()._repr_mimebundle_(**kwargs)


def _lease_key(run_id: str) -> str:
    return f"refs/leases/run-{run_id}/zarr.json"


def _step(step: Any) -> int:
    if hasattr(step, "item") and callable(step.item) and getattr(step, "ndim", 0) == 0:
        step = step.item()
    if isinstance(step, bool) or not isinstance(step, int):
        raise UsageError(f"a step is a whole number (the training step), got {step!r}")
    return step


def _number(key: str, value: Any) -> float | int:
    if type(value) is int:
        return value
    if hasattr(value, "item") and callable(value.item):
        if getattr(value, "ndim", 0) != 0 and getattr(value, "numel", lambda: 1)() != 1:
            raise UsageError(f"metric {key} must be one number, got an array of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"metric {key} must be a number, got {value!r}")
    return value


def _metric_name(key: str) -> None:
    if not key or key.startswith("_"):
        raise UsageError(f"metric names are words like loss or val_acc, got {key!r}")


def start(
    repo: Repository,
    name: str | None,
    params: dict[str, Any] | None = None,
    parent: str | Version | None = None,
    message: str = "",
    author: str | None = None,
    model: Any = None,
    resume: str | None = None,
) -> Run:
    if repo.store.backend.read_only:
        raise UsageError(f"the repository at {repo.location} is read-only: runs cannot be recorded")
    root = journal.runs_root(repo.store.backend.store, repo.location)
    if resume is not None:
        run = _resume(repo, root, resume, name, params)
    else:
        if name is None:
            raise UsageError("a run needs a model name: mh.run('resnet', params={...})")
        check_name(name)
        if not isinstance(message, str):
            raise UsageError("message must be a string")
        params_doc = check_params(params)
        parents = repo._parent_ids(name, None if parent is None else [parent])
        run_id = uuid.uuid4().hex[:12]
        header = journal.new_header(
            run_id,
            name,
            params=params_doc,
            parents=parents,
            parent_refs=[repo._ref_of(p) for p in parents],
            message=message,
            author=author or current_user(),
            started=time.time(),
        )
        folder = root / run_id
        journal.write_header(folder, header)
        run = Run(repo, folder, header, journal.Writer(folder), RunState())
    run.model = model
    return run


def _resume(repo: Repository, root: Path, run_id: str, name: str | None, params: dict[str, Any] | None) -> Run:
    from nbmodelhub.tracking.state import replay

    folder = journal.find_run(root, run_id)
    header = journal.read_header(folder)
    if name is not None and name != header["model"]:
        raise UsageError(f"run {folder.name} records model {header['model']!r}, not {name!r}")
    if params is not None and check_params(params) != header.get("params", {}):
        raise UsageError(f"run {folder.name} was started with other params; resume it without params=")
    writer = journal.Writer(folder)
    state = replay(folder)
    if state.end is not None:
        writer.close()
        if state.end.get("k") == "commit":
            raise UsageError(
                f"run {folder.name} was committed as {state.end.get('ref')}: start a new run with "
                f"parent={state.end.get('ref')!r}"
            )
        raise UsageError(f"run {folder.name} was discarded")
    writer.event("resume", pid=os.getpid(), host=socket.gethostname())
    run = Run(repo, folder, header, writer, state)
    if state.snapshots:
        run._lease(set())
    return run


@atexit.register
def _stop_open_runs() -> None:
    """An interpreter leaving with runs open (a script that never committed) marks them interrupted."""
    for run in list(_OPEN):
        try:
            run.stop("process exit")
        except Exception:
            pass
