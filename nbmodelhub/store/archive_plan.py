"""The storage plan: for every tensor, store it whole or as a delta of which related tensor.

Tensors are nodes; a virtual root has an edge to each (store it whole), and each pair of related
tensors (the same name in consecutive snapshots of a version, or in a version and its parent) has
edges both ways (store one as a delta of the other). Edge weights are the bytes the encoding would
take, estimated by compressing a sample of the tensor's elements (the same positions in every
tensor of a shape, so deltas of samples are deltas of the real thing). The cheapest way to store
everything is then a minimum spanning arborescence from the root (Edmonds' algorithm, networkx).

That tree can chain deltas deep, and reading a tensor means reading its whole chain. A repair
pass walks the tree from the root and re-attaches any tensor whose chain breaks a bound (length,
or bytes to read) to the cheapest related tensor that keeps it within bounds, else stores it whole.
After ModelHub's parameter archival store (Miao et al., ICDE 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np

from nbmodelhub.store import delta, planes
from nbmodelhub.store.tensors import STORAGE_DTYPES

ROOT = "<root>"
SAMPLE_BLOCKS = 8
SAMPLE_BLOCK_ELEMENTS = 4096


@dataclass(frozen=True)
class Node:
    hash: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def itemsize(self) -> int:
        return int(np.dtype(STORAGE_DTYPES[self.dtype]).itemsize)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


@dataclass(frozen=True)
class Placement:
    """How one tensor is to be stored, and what reading it will cost."""

    base: str | None
    op: str | None
    bytes: int  # estimated stored bytes of this encoding
    chain: int  # deltas between it and a whole tensor (0: whole)
    recreate_bytes: int  # estimated stored bytes read to recreate it (its chain's encodings)


def sample_positions(elements: int, chunk_rows_elements: int) -> np.ndarray:
    """Element indices to sample: a few contiguous blocks spread over the first chunk."""
    span = min(elements, chunk_rows_elements)
    if span <= SAMPLE_BLOCKS * SAMPLE_BLOCK_ELEMENTS:
        return np.arange(span)
    starts = np.linspace(0, span - SAMPLE_BLOCK_ELEMENTS, SAMPLE_BLOCKS).astype(np.int64)
    return (starts[:, None] + np.arange(SAMPLE_BLOCK_ELEMENTS)[None, :]).reshape(-1)


def _size(sample_planes: list[np.ndarray]) -> int:
    return sum(planes.compressed_size(p) for p in sample_planes)


def plan(
    nodes: dict[str, Node],
    related: Iterable[tuple[str, str]],
    sample: Callable[[Node], np.ndarray],
    max_chain: int | None,
    max_recreate_bytes: int | None,
    progress: Callable[[int], None] = lambda _: None,
) -> dict[str, Placement]:
    """A placement for every node. ``sample(node)`` gives the node's sampled elements as flat bytes."""
    splits: dict[str, list[np.ndarray]] = {}
    scale: dict[str, float] = {}
    graph = nx.DiGraph()
    for digest, node in nodes.items():
        raw = sample(node)
        splits[digest] = planes.split(raw, node.itemsize) if raw.size else []
        scale[digest] = node.nbytes / raw.size if raw.size else 1.0
        graph.add_edge(ROOT, digest, weight=_scaled(_size(splits[digest]), scale[digest]), op=None)
        progress(1)
    ops: dict[tuple[str, str], str] = {}
    for a, b in related:
        if a == b or (a, b) in ops or a not in nodes or b not in nodes:
            continue
        na, nb = nodes[a], nodes[b]
        if (na.dtype, na.shape) != (nb.dtype, nb.shape) or not splits[a]:
            continue
        for base, x in ((a, b), (b, a)):
            best = min(
                (_size([delta.encode(p, q, op) for p, q in zip(splits[x], splits[base], strict=True)]), op)
                for op in delta.OPS
            )
            ops[(base, x)] = best[1]
            graph.add_edge(base, x, weight=_scaled(best[0], scale[x]), op=best[1])
    # Related tensors form small groups (one parameter across snapshots): one arborescence each.
    tree = nx.DiGraph()
    tree.add_node(ROOT)
    for group in nx.weakly_connected_components(graph.subgraph(nodes)):
        if len(group) == 1:
            tree.add_edge(ROOT, next(iter(group)))
            continue
        sub = graph.subgraph([ROOT, *group])
        tree.add_edges_from(nx.minimum_spanning_arborescence(sub, attr="weight").edges)
    return _repair(tree, graph, max_chain, max_recreate_bytes)


def _scaled(size: int, factor: float) -> int:
    return max(1, round(size * factor))


def _repair(tree: nx.DiGraph, graph: nx.DiGraph, max_chain: int | None, max_bytes: int | None) -> dict[str, Placement]:
    chain_limit = math.inf if max_chain is None else max_chain
    bytes_limit = math.inf if max_bytes is None else max_bytes
    placed: dict[str, Placement] = {}
    for parent, node in nx.bfs_edges(tree, ROOT):
        options = [(ROOT, graph.edges[ROOT, node])]
        if parent != ROOT:
            options.insert(0, (parent, graph.edges[parent, node]))
        fits = _fits(placed, options[0], chain_limit, bytes_limit)
        if fits is None:
            # Keep it a delta if some related tensor already placed leaves it within bounds.
            candidates = [(u, graph.edges[u, node]) for u in graph.predecessors(node) if u in placed]
            fitting = [p for p in (_fits(placed, c, chain_limit, bytes_limit) for c in candidates) if p is not None]
            whole = graph.edges[ROOT, node]["weight"]
            fitting.append(Placement(None, None, whole, 0, whole))
            fits = min(fitting, key=lambda p: (p.bytes, p.chain))
        placed[node] = fits
    return placed


def _fits(
    placed: dict[str, Placement], option: tuple[str, dict[str, object]], chain_limit: float, bytes_limit: float
) -> Placement | None:
    base, edge = option
    cost = int(edge["weight"])  # type: ignore[call-overload]
    if base == ROOT:
        return Placement(None, None, cost, 0, cost)
    above = placed[base]
    chain, recreate = above.chain + 1, above.recreate_bytes + cost
    if chain > chain_limit or recreate > bytes_limit:
        return None
    return Placement(base, str(edge["op"]), cost, chain, recreate)
