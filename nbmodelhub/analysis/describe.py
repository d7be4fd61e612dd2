"""Describe a version: its layers with parameter counts, weight statistics and histograms.

Statistics stream over the zarr chunks (``Store.iter_tensor``): pass one gathers moments, range,
zeros and norms per tensor; pass two bins each layer's values on edges spanning the layer's range.
Memory stays at a few chunks per worker whatever the model's size.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from nbmodelhub.analysis.weights import Histogram, Moments, histogram, make_edges, moments, value_range
from nbmodelhub.errors import CorruptObject, UsageError
from nbmodelhub.graph import LayerGraph
from nbmodelhub.store.tensors import STORAGE_DTYPES

if TYPE_CHECKING:
    from nbmodelhub.api import Repository, Version
    from nbmodelhub.store.repository import Store

Edges = Sequence[float] | np.ndarray | Mapping[str, Sequence[float] | np.ndarray]
T = TypeVar("T")
R = TypeVar("R")

# Tensors of a stored snapshot: name → {"hash", "dtype", "shape"}.
TensorRecords = Mapping[str, Mapping[str, Any]]


def _parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="nbmodelhub-stats") as pool:
        return list(pool.map(fn, items))


def _chunks(store: Store, tensors: TensorRecords, name: str, where: str) -> tuple[Iterable[np.ndarray], str]:
    t = tensors[name]
    dtype = str(t["dtype"])
    shape = tuple(int(s) for s in t["shape"])
    return store.iter_tensor(str(t["hash"]), dtype, shape, f"{where}: tensor {name!r}"), dtype


def _overlapped(chunks: Iterable[np.ndarray], depth: int = 2) -> Iterator[np.ndarray]:
    """Drain ``chunks`` on a helper thread, ``depth`` ahead, so the stream's own work (decoding,
    hash checking) runs while the consumer computes. Errors, the final hash check's included,
    reach the consumer in order."""
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():  # the consumer may have left: never block on a full queue for good
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for rows in chunks:
                if not put(("rows", rows)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))

    worker = threading.Thread(target=produce, name="nbmodelhub-stream", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join()


def _unverified_range(store: Store, record: Mapping[str, Any]) -> tuple[float, float] | None:
    """Finite min and max, decoding chunks in parallel without the hash check.

    Only used to place bin edges: the counting pass that follows reads the same object through
    ``Store.iter_tensor``, which checks the hash, so altered bytes are still reported.
    """
    dtype = str(record["dtype"])
    shape = tuple(int(s) for s in record["shape"])
    found = store.map_chunks(str(record["hash"]), dtype, shape, "a tensor", lambda rows: value_range([rows], dtype))
    spans = [s for s in found if s is not None]
    if not spans:
        return None
    return min(s[0] for s in spans), max(s[1] for s in spans)


def _count(shape: Iterable[int]) -> int:
    return math.prod(int(s) for s in shape)


def _itemsize(dtype: str) -> int:
    return int(np.dtype(STORAGE_DTYPES[dtype]).itemsize)


def tensor_layers(graph: LayerGraph, names: Iterable[str]) -> dict[str, str]:
    """Each tensor's layer: the graph layer owning it, else the name without its last part."""
    owners: dict[str, str] = {}
    for node_id, d in graph.graph.nodes(data=True):
        for name, rec in d["params"].items():
            if rec.get("tied_to") is None:
                owners.setdefault(name, node_id)
    return {n: owners.get(n) or n.rpartition(".")[0] or "(top)" for n in names}


def describe_layers(
    store: Store,
    where: str,
    tensors: TensorRecords,
    graph: LayerGraph,
    bins: int = 64,
    stats: bool = True,
) -> list[dict[str, Any]]:
    """Per layer with parameters, in execution order: type, counts, per-tensor and layer statistics."""
    layer_of = tensor_layers(graph, tensors)
    order = {n: i for i, n in enumerate(graph.graph.nodes)}
    names_by_layer: dict[str, list[str]] = {}
    for name in tensors:
        names_by_layer.setdefault(layer_of[name], []).append(name)
    layer_ids = sorted(names_by_layer, key=lambda lid: (order.get(lid, len(order)), lid))

    per_tensor: dict[str, Moments] = {}
    if stats:
        names = sorted(tensors, key=lambda n: -_count(tensors[n]["shape"]))

        def first_pass(name: str) -> Moments:
            chunks, dtype = _chunks(store, tensors, name, where)
            return moments(chunks, dtype)

        per_tensor = dict(zip(names, _parallel(first_pass, names), strict=True))

    layers: list[dict[str, Any]] = []
    layer_moments: dict[str, Moments] = {}
    for lid in layer_ids:
        node = graph.graph.nodes[lid] if lid in graph.graph else None
        entry: dict[str, Any] = {
            "layer": lid,
            "type": node["type"] if node is not None else None,
            "group": node["group"] if node is not None else lid.rpartition(".")[0],
            "parameters": 0,
            "bytes": 0,
            "tensors": {},
        }
        combined = Moments()
        for name in names_by_layer[lid]:
            t = tensors[name]
            local = name[len(lid) + 1 :] if name.startswith(lid + ".") else name.rpartition(".")[2] or name
            count = _count(t["shape"])
            entry["parameters"] += count
            entry["bytes"] += count * _itemsize(str(t["dtype"]))
            info: dict[str, Any] = {"name": name, "dtype": t["dtype"], "shape": list(t["shape"])}
            if stats:
                info.update(per_tensor[name].to_dict())
                combined = combined.merge(per_tensor[name])
            entry["tensors"][local] = info
        if stats:
            entry["stats"] = combined.to_dict()
            layer_moments[lid] = combined
        layers.append(entry)

    if stats and bins:
        edges = {
            lid: make_edges(m.min if m.count else None, m.max if m.count else None, bins)
            for lid, m in layer_moments.items()
        }
        jobs = [(lid, name) for lid in layer_ids for name in names_by_layer[lid]]

        def second_pass(job: tuple[str, str]) -> Histogram:
            lid, name = job
            chunks, dtype = _chunks(store, tensors, name, where)
            return histogram(chunks, dtype, edges[lid])

        totals: dict[str, Histogram] = {lid: Histogram(edges[lid]) for lid in layer_ids}
        for (lid, _), h in zip(jobs, _parallel(second_pass, jobs), strict=True):
            totals[lid].counts += h.counts
            totals[lid].nan += h.nan
        for entry in layers:
            entry["histogram"] = totals[entry["layer"]].to_dict()
    return layers


def check_edges(edges: Edges | None) -> None:
    """Refuse bad bin edges before any data is read (one clear line, not a numpy traceback)."""
    if edges is None:
        return
    items = edges.items() if isinstance(edges, Mapping) else [("", edges)]
    for name, e in items:
        try:
            Histogram(np.asarray(e, dtype=np.float64))
        except (ValueError, TypeError) as exc:
            where = f" for {name!r}" if name else ""
            raise UsageError(f"bad bin edges{where}: {exc}") from exc


def version_edges(
    repo: Repository,
    a: str | Version,
    b: str | Version,
    names: Iterable[str] | None = None,
    bins: int = 64,
) -> dict[str, list[float]]:
    """Shared bin edges for two versions' tensors: pass them as ``edges=`` to ``repo.histograms``
    of each version and the two histograms overlay bin for bin. ``names`` default to the tensor
    names both versions have."""
    va, vb = repo.get(a), repo.get(b)
    chosen = [n for n in va.tensors if n in vb.tensors] if names is None else list(names)
    sides = [
        (v.ref, {n: {"hash": t.hash, "dtype": t.dtype, "shape": list(t.shape)} for n, t in v.tensors.items()}, v.ties)
        for v in (va, vb)
    ]
    unknown = [n for n in chosen if not any(ties.get(n, n) in tensors for _, tensors, ties in sides)]
    if unknown:
        raise UsageError(f"neither {va.ref} nor {vb.ref} has a tensor {unknown[0]!r}")
    return shared_edges(repo.store, sides, chosen, bins)


def resolve_edges(edges: Edges | None, name: str) -> np.ndarray | None:
    if edges is None:
        return None
    if isinstance(edges, Mapping):
        chosen = edges.get(name)
        return None if chosen is None else np.asarray(chosen, dtype=np.float64)
    return np.asarray(edges, dtype=np.float64)


def histograms(
    store: Store,
    where: str,
    tensors: TensorRecords,
    ties: Mapping[str, str],
    names: Sequence[str],
    bins: int = 64,
    edges: Edges | None = None,
) -> dict[str, dict[str, Any]]:
    """Per tensor ``{"edges", "counts"}``; without given edges, a first pass finds each range."""

    def one(name: str) -> dict[str, Any]:
        source = ties.get(name, name)
        given = resolve_edges(edges, name)
        if given is None:
            try:
                span = _unverified_range(store, tensors[source])
            except (CorruptObject, RuntimeError, ValueError, TypeError):
                # Damaged: let the verified pass below name the tensor and version in its error.
                span = None
            given = make_edges(span[0] if span else None, span[1] if span else None, bins)
        chunks, dtype = _chunks(store, tensors, source, where)
        return histogram(_overlapped(chunks), dtype, given).to_dict()

    if len(names) == 1:  # one big tensor: its chunks are decoded in parallel instead
        return {names[0]: one(names[0])}
    return dict(zip(names, _parallel(one, list(names)), strict=True))


def shared_edges(
    store: Store,
    sides: Sequence[tuple[str, TensorRecords, Mapping[str, str]]],
    names: Sequence[str],
    bins: int = 64,
) -> dict[str, list[float]]:
    """Bin edges per tensor name spanning its range in every side that has it, so histograms overlay."""
    jobs = [(i, n) for n in names for i, (_, tensors, ties) in enumerate(sides) if ties.get(n, n) in tensors]

    def one(job: tuple[int, str]) -> tuple[float, float] | None:
        i, name = job
        where, tensors, ties = sides[i]
        chunks, dtype = _chunks(store, tensors, ties.get(name, name), where)
        return value_range(chunks, dtype)

    spans: dict[str, tuple[float, float]] = {}
    for (_, name), span in zip(jobs, _parallel(one, jobs), strict=True):
        if span is None:
            continue
        lo, hi = spans.get(name, (math.inf, -math.inf))
        spans[name] = (min(lo, span[0]), max(hi, span[1]))
    out: dict[str, list[float]] = {}
    for name in names:
        span_or_none = spans.get(name)
        lo_hi = span_or_none if span_or_none is not None else (None, None)
        out[name] = make_edges(lo_hi[0], lo_hi[1], bins).tolist()
    return out


def forward_footprint(module: Any, example_input: Any) -> dict[str, Any]:
    """Activation memory (bytes of every leaf layer's outputs in one forward) and its time.

    The activation figure is what a training step keeps for backward, the usual estimate; the
    time is of one forward without gradients, after one warm-up run.
    """
    import torch

    total = 0

    def count(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return int(value.numel() * value.element_size())
        if isinstance(value, (list, tuple)):
            return sum(count(v) for v in value)
        if isinstance(value, Mapping):
            return sum(count(v) for v in value.values())
        return 0

    def hook(_m: Any, _i: Any, output: Any) -> None:
        nonlocal total
        total += count(output)

    def run() -> Any:
        if isinstance(example_input, Mapping):
            return module(**example_input)
        if isinstance(example_input, tuple):
            return module(*example_input)
        return module(example_input)

    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        with torch.no_grad():
            run()  # warm-up: lazy initialisation and allocator growth are not the model's cost
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            leaves = [m for m in module.modules() if not list(m.children())] or [module]
            handles = [m.register_forward_hook(hook) for m in leaves]
            try:
                run()
            finally:
                for h in handles:
                    h.remove()
    finally:
        module.train(was_training)
    return {"activation_bytes": total, "forward_seconds": seconds}
