"""evaluate: train every variant of a hyperparameter grid, stop losers early, commit the best k.

The contract with your training function (from the notebook namespace, or registered with
:func:`register_trainer`)::

    def train(model, config, report):      # model: a torch module with the version's weights
        for step in range(1, 201):         # config: your dict with this variant's values set
            loss = ...
            report(step, loss=loss)        # record a curve point; may raise StopTrial
        return {"loss": loss}              # final metrics (default: the last reported ones)

``keep top(k, m.metrics.loss, at)``: when a variant reports step ``at``, it is compared with the
variants that reached ``at`` before it; if ``k`` of them did better, ``report`` raises
:class:`StopTrial` (the runner catches it; your function may too, to clean up). Losers stop
without a barrier, so any number of workers keeps busy. The variants run on any
``concurrent.futures.Executor`` — a local process pool by default, or a ``dask.distributed``
client's ``get_executor()`` — and report through a board directory that every worker must
reach (a temporary folder by default; ``with board = "/shared/path"`` across machines).
At the end the k best finished variants are committed as versions, parent = the source version.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from nbmodelhub.dql import syntax as s
from nbmodelhub.errors import ModelHubError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from nbmodelhub.api import Repository, Version

_TRAINERS: dict[str, Callable[..., Any]] = {}
_LOWER_IS_BETTER = ("loss", "err", "error", "perplexity", "ppl", "mse", "mae", "rmse", "wer", "cer")


def register_trainer(name: str, fn: Callable[..., Any]) -> None:
    """Make ``fn(model, config, report)`` available to ``evaluate`` as ``with train = "name"``."""
    if not callable(fn):
        raise UsageError(f"a trainer is a function (model, config, report) → metrics, got {type(fn).__name__}")
    _TRAINERS[name] = fn


class StopTrial(Exception):
    """Raised by ``report`` inside a losing variant: stop training and return."""


class Board:
    """Where variants post the keep-metric at the keep step: one small file per variant."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def post(self, step: int, trial: str, value: float) -> list[float]:
        """Record ``value``; return the values other trials posted at ``step`` before this one."""
        folder = self.root / str(step)
        folder.mkdir(parents=True, exist_ok=True)
        others = []
        for f in folder.iterdir():
            if f.suffix == ".value" and f.stem != trial:
                try:
                    others.append(float(f.read_text()))
                except ValueError:
                    continue  # a half-written file: that trial has not quite posted yet
        tmp = folder / f".{trial}.{uuid.uuid4().hex}"
        tmp.write_text(repr(float(value)))
        os.replace(tmp, folder / f"{trial}.value")
        return others


@dataclass
class Reporter:
    """The ``report`` callable a training function receives."""

    trial: str
    board: str | None
    metric: str | None
    k: int
    at: int | None
    lower_is_better: bool
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    stopped_at: int | None = None

    def __call__(self, step: int, **metrics: Any) -> None:
        for name, value in metrics.items():
            number = float(value.item() if hasattr(value, "item") else value)
            self.curves.setdefault(name, []).append((int(step), number))
            self.last[name] = number
        if self.at is None or self.board is None or self.metric is None or step != self.at:
            return
        if self.metric not in self.last:
            raise UsageError(f"report(step={step}, ...) must include {self.metric}: keep ranks variants by it")
        mine = self.last[self.metric]
        others = Board(self.board).post(step, self.trial, mine)
        better = sum(1 for v in others if (v < mine if self.lower_is_better else v > mine))
        if better >= self.k or math.isnan(mine):
            self.stopped_at = step
            raise StopTrial(f"{self.trial}: {better} variants did better at step {step}")


@dataclass
class Task:
    trial: str
    label: str
    source: str
    module: Any  # a torch module, or (graph JSON, numpy state) to rebuild in the worker
    config: dict[str, Any]
    train: Callable[..., Any]
    reporter: Reporter

    def model(self) -> Any:
        if not isinstance(self.module, tuple):
            return self.module
        # fx GraphModules do not survive every pickler (dask's included): ship the graph, rebuild here.
        from nbmodelhub.dql.derive import DerivedModel
        from nbmodelhub.graph import LayerGraph

        graph_json, state = self.module
        return DerivedModel("copy", None, LayerGraph.from_json(graph_json), state).module  # type: ignore[arg-type]


@dataclass
class Trial:
    """One variant and what became of it."""

    label: str
    source: str
    config: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    stopped_at: int | None = None
    error: str | None = None
    version: Version | None = None
    state: dict[str, Any] | None = None  # trained weights (numpy), dropped once committed or discarded

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if self.version is not None:
            return "committed"
        return "stopped" if self.stopped_at is not None else "finished"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "source": self.source,
            "config": self.config,
            "metrics": self.metrics,
            "status": self.status,
            "stopped_at": self.stopped_at,
            "error": self.error,
            "version": self.version.ref if self.version is not None else None,
        }


def _share_cores(threads: int) -> None:
    """Worker start-up: split the cores between workers (torch's own pools would oversubscribe them)."""
    import torch

    torch.set_num_threads(threads)


def run_task(task: Task) -> Trial:
    """Runs in a worker: train one variant, return its metrics and weights (numpy)."""
    trial = Trial(task.label, task.source, task.config)
    try:
        model = task.model()
        result = task.train(model, task.config, task.reporter)
    except StopTrial:
        result = None
        trial.stopped_at = task.reporter.stopped_at
    except Exception as exc:  # the user's code: report it as this variant's failure
        trial.error = f"{type(exc).__name__}: {exc}"
        return trial
    final = dict(task.reporter.last)
    if isinstance(result, Mapping):
        final.update({str(k): float(v.item() if hasattr(v, "item") else v) for k, v in result.items()})
    elif result is not None:
        trial.error = f"the training function must return a dict of metrics or None, got {type(result).__name__}"
        return trial
    trial.metrics = final
    trial.curves = task.reporter.curves
    trial.state = {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}
    return trial


def _set(config: dict[str, Any], path: tuple[str, ...], value: Any, text: str) -> None:
    target = config
    for key in path[:-1]:
        nxt = target.get(key)
        if not isinstance(nxt, dict):
            nxt = target[key] = {}
        target = nxt
    target[path[-1]] = value


def _lookup(name: str, namespace: Mapping[str, Any], what: str) -> Any:
    if name in namespace:
        return namespace[name]
    if what == "training function" and name in _TRAINERS:
        return _TRAINERS[name]
    raise UsageError(f"no {what} named {name!r} in the notebook namespace" + (
        " or registered with nbmodelhub.dql.register_trainer" if what == "training function" else ""))  # fmt: skip


def _module_for(repo: Repository, version: Version, factory: Callable[..., Any] | None, config: dict[str, Any]) -> Any:
    if factory is not None:
        module = factory(config)
        repo.checkout(version, module)
        return module
    from nbmodelhub.dql.derive import DerivedModel

    graph, state = repo.graph(version), repo.load(version)
    _ = DerivedModel("copy", version, graph, state).module  # fail here, once, if it cannot be rebuilt
    return (graph.to_json(), state)


def evaluate(
    repo: Repository,
    query: s.Evaluate,
    sources: list[Version],
    namespace: Mapping[str, Any],
    executor: Executor | None,
) -> list[Trial]:
    settings = dict(query.settings)
    train = _lookup(str(settings.pop("train", "train")), namespace, "training function")
    if not callable(train):
        raise UsageError("the training function must be callable as train(model, config, report)")
    factory = _lookup(str(settings.pop("model")), namespace, "model factory") if "model" in settings else None
    board_root = settings.pop("board", None)
    name = settings.pop("name", None)
    configs: dict[str, dict[str, Any]] = {}
    for var, ref in settings.items():
        value = _lookup(str(ref), namespace, "config dict")
        if not isinstance(value, Mapping):
            raise UsageError(f"{var} = {ref!r} must name a dict in the namespace, not a {type(value).__name__}")
        configs[var] = dict(value)
    keep = query.keep
    metric = keep.metric.steps[-1][1] if keep else None
    if keep and ([v for _, v in keep.metric.steps][:1] != ["metrics"] or len(keep.metric.steps) != 2):
        raise UsageError(f"keep ranks by a metric, as in top(3, {query.var}.metrics.loss, 100)")
    lower = (keep.goal == "min") if keep and keep.goal else any(t in (metric or "").lower() for t in _LOWER_IS_BETTER)

    axes = [(ref, values) for ref, values in query.axes]
    for ref, _ in axes:
        if ref.var not in configs:
            raise UsageError(f"{ref.text()}: vary a field of a config given with `with {ref.var} = \"<dict name>\"`")
    grid = list(itertools.product(*[values for _, values in axes])) or [()]
    own_board = board_root is None
    board = tempfile.mkdtemp(prefix="nbmodelhub-evaluate-") if own_board else str(board_root)
    tasks: list[Task] = []
    for version in sources:
        for values in grid:
            config_set = copy.deepcopy(configs)
            parts = []
            for (ref, _), value in zip(axes, values, strict=True):
                _set(config_set[ref.var], tuple(v for _, v in ref.steps), value, ref.text())
                parts.append(f"{'.'.join(v for _, v in ref.steps)}={value}")
            config = next(iter(config_set.values())) if len(config_set) == 1 else config_set
            label = f"{version.ref} " + " ".join(parts) if parts else version.ref
            trial_id = f"t{len(tasks)}"
            reporter = Reporter(trial_id, board, metric, keep.k if keep else 0, keep.at if keep else None, lower)
            module = _module_for(repo, version, factory, config)
            tasks.append(Task(trial_id, label, version.ref, module, config, train, reporter))

    own = executor is None
    workers = max(1, min(len(tasks), os.cpu_count() or 1))
    pool: Executor = executor or ProcessPoolExecutor(
        max_workers=workers, initializer=_share_cores, initargs=(max(1, (os.cpu_count() or 1) // workers),)
    )
    trials: list[Trial] = []
    try:
        futures = {pool.submit(run_task, t): t for t in tasks}
        with tqdm(total=len(futures), desc="evaluate", unit="variant", leave=False) as bar:
            for future in as_completed(futures):
                try:
                    trials.append(future.result())
                except Exception as exc:  # the worker itself died or could not run the task
                    task = futures[future]
                    trials.append(Trial(task.label, task.source, task.config, error=f"{type(exc).__name__}: {exc}"))
                bar.update(1)
    finally:
        if own:
            pool.shutdown(wait=True)
        if own_board:
            shutil.rmtree(board, ignore_errors=True)
    order = {t.label: i for i, t in enumerate(tasks)}
    trials.sort(key=lambda t: order[t.label])
    failed = [t for t in trials if t.error]
    if len(failed) == len(trials):
        raise ModelHubError(f"every variant failed; the first: {failed[0].label}: {failed[0].error}")
    _commit_best(repo, trials, sources, metric, lower, keep.k if keep else len(trials), name, query)
    return trials


def _commit_best(
    repo: Repository,
    trials: list[Trial],
    sources: list[Version],
    metric: str | None,
    lower: bool,
    k: int,
    name: str | None,
    query: s.Evaluate,
) -> None:
    finished = [t for t in trials if t.status == "finished"]
    if metric is not None:
        missing = [t for t in finished if metric not in t.metrics]
        if missing:
            raise ModelHubError(f"{missing[0].label} finished without a {metric!r} metric: nothing was committed")
        finished.sort(key=lambda t: t.metrics[metric] if lower else -t.metrics[metric])
    from nbmodelhub.adapters import Weights, np_adapter

    by_ref = {v.ref: v for v in sources}
    for trial in finished[:k]:
        source = by_ref[trial.source]
        assert trial.state is not None
        tensors, ties = np_adapter.from_arrays(trial.state)
        weights = Weights(tensors, ties, "torch", "evaluate", graph=repo.graph(source))
        metrics: dict[str, Any] = dict(trial.metrics)
        for curve, points in trial.curves.items():
            if curve in metrics and points:
                metrics[curve] = [(s_, v) for s_, v in points[:-1]] + [(points[-1][0], metrics[curve])]
        trial.version = repo.commit(
            weights,
            name=name or source.model,
            message=f"evaluate {trial.label}",
            params=trial.config,
            metrics=metrics,
            parents=[source.id],
        )
    for trial in trials:
        trial.state = None
