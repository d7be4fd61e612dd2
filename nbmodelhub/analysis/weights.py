"""Streaming statistics over a tensor's chunks: bounded memory, float64 accumulators.

Everything here consumes an iterator of chunks (numpy arrays in the tensor's *storage* dtype, as
``Store.iter_tensor`` yields them) and never holds more than one chunk plus its temporaries, so a
10 GB embedding is summarised in the memory of one 8 MB chunk. Pure numpy: no zarr, no framework.

Sums are accumulated in float64 and chunk moments are merged with Chan et al.'s pairwise update,
so a standard deviation stays exact-ish even when the mean dwarfs it (layer-norm gains near 1).
Non-finite values (a diverged run) are counted apart and left out of moments, ranges and bins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

_FLOAT_VIEWS = {"float32", "float64"}


def as_float(rows: np.ndarray, dtype: str) -> np.ndarray:
    """A chunk as floats: float32/float64 as they are, half precision widened, integers to float64.

    ``dtype`` is the logical dtype; bfloat16 arrives as its uint16 bit patterns (zarr has no
    bfloat16), whose float32 value is the same bits shifted into the high half.
    """
    if dtype in _FLOAT_VIEWS:
        return rows
    if dtype == "float16":
        return rows.astype(np.float32)
    if dtype == "bfloat16":
        return (rows.astype(np.uint32) << 16).view(np.float32)
    return rows.astype(np.float64)


def _bits(rows: np.ndarray) -> np.ndarray:
    """The raw bit patterns of a chunk, so "changed" means any bit changed (also -0.0 vs 0.0, NaNs)."""
    flat = np.ascontiguousarray(rows).reshape(-1)
    size = flat.dtype.itemsize
    return flat.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[size])


def _finite_only(x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``x`` without NaN and ±inf (only scanned when min/max say there are any), and their counts."""
    if x.size == 0:
        return x, 0, 0
    lo, hi = x.min(), x.max()
    if math.isfinite(lo) and math.isfinite(hi):
        return x, 0, 0
    nan = np.isnan(x)
    inf = np.isinf(x)
    return x[~(nan | inf)], int(nan.sum()), int(inf.sum())


@dataclass
class Moments:
    """Running count, mean, M2, range, zeros and non-finite counts of a stream of values."""

    total: int = 0  # every element, finite or not
    count: int = 0  # finite elements (what mean, std, min, max, l2 are over)
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    zeros: int = 0
    nan: int = 0
    inf: int = 0

    def update(self, values: np.ndarray) -> None:
        x = values.reshape(-1)
        n_all = int(x.size)
        if n_all == 0:
            return
        self.total += n_all
        self.zeros += n_all - int(np.count_nonzero(x))
        x, nan, inf = _finite_only(x)
        self.nan += nan
        self.inf += inf
        n = int(x.size)
        if n == 0:
            return
        x64 = x.astype(np.float64, copy=False)
        mean = float(x64.sum()) / n
        d = x64 - mean
        self._merge(n, mean, float(np.dot(d, d)), float(x.min()), float(x.max()))

    def _merge(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * n / total
        self.mean += delta * n / total
        self.count = total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def merge(self, other: Moments) -> Moments:
        """Combine with the moments of another stream (e.g. a layer's tensors into the layer's)."""
        out = Moments(self.total, self.count, self.mean, self.m2, self.min, self.max, self.zeros, self.nan, self.inf)
        out.total += other.total
        out.zeros += other.zeros
        out.nan += other.nan
        out.inf += other.inf
        if other.count:
            out._merge(other.count, other.mean, other.m2, other.min, other.max)
        return out

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else math.nan

    @property
    def l2(self) -> float:
        # Σx² = M2 + n·mean², exact up to rounding and free of a second pass.
        return math.sqrt(max(0.0, self.m2 + self.count * self.mean * self.mean))

    def to_dict(self) -> dict[str, Any]:
        empty = self.count == 0
        return {
            "count": self.total,
            "mean": None if empty else self.mean,
            "std": None if empty else self.std,
            "min": None if empty else self.min,
            "max": None if empty else self.max,
            "sparsity": self.zeros / self.total if self.total else 0.0,
            "l2": self.l2,
            "nan": self.nan,
            "inf": self.inf,
        }


def moments(chunks: Iterable[np.ndarray], dtype: str) -> Moments:
    m = Moments()
    for rows in chunks:
        m.update(as_float(rows, dtype))
    return m


def value_range(chunks: Iterable[np.ndarray], dtype: str) -> tuple[float, float] | None:
    """Finite min and max of a stream, or None if it holds no finite value."""
    lo, hi = math.inf, -math.inf
    for rows in chunks:
        x = as_float(rows, dtype).reshape(-1)
        if x.size == 0:
            continue
        xmin, xmax = float(x.min()), float(x.max())
        if not (math.isfinite(xmin) and math.isfinite(xmax)):
            x, _, _ = _finite_only(x)
            if x.size == 0:
                continue
            xmin, xmax = float(x.min()), float(x.max())
        lo, hi = min(lo, xmin), max(hi, xmax)
    return None if lo > hi else (lo, hi)


def make_edges(lo: float | None, hi: float | None, bins: int) -> np.ndarray:
    """``bins`` equal-width bins over [lo, hi]; a constant tensor gets numpy's ±0.5 around its value."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if lo is None or hi is None:
        lo, hi = 0.0, 1.0
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


class Histogram:
    """Counts of a stream of values on fixed bin edges (numpy's convention: last bin closed).

    Equal-width edges (the usual case) are binned arithmetically, ``floor((x - lo) · n / (hi - lo))``,
    in float32 for float32 and narrower weights, which is several times faster than numpy's
    ``histogram``; a value within a float32 rounding error of an edge may land in the neighbouring
    bin. Other edges fall back to a binary search. Values outside the edges are counted in
    ``below``/``above``, NaN in ``nan``; none of these are in ``counts``.
    """

    def __init__(self, edges: Iterable[float] | np.ndarray) -> None:
        e = np.asarray(edges, dtype=np.float64).reshape(-1)
        if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise ValueError("bin edges must be at least two finite, strictly increasing numbers")
        self.edges = e
        self.bins = int(e.size - 1)
        self.counts = np.zeros(self.bins, dtype=np.int64)
        self.below = 0
        self.above = 0
        self.nan = 0
        self.uniform = bool(np.allclose(e, np.linspace(e[0], e[-1], e.size), rtol=0, atol=1e-12 * (e[-1] - e[0])))

    def update(self, values: np.ndarray) -> None:
        x = values.reshape(-1)
        if x.size == 0:
            return
        lo, hi = float(self.edges[0]), float(self.edges[-1])
        xmin, xmax = float(x.min()), float(x.max())
        if math.isnan(xmin) or math.isnan(xmax):
            nan = np.isnan(x)
            self.nan += int(nan.sum())
            x = x[~nan]
            if x.size == 0:
                return
            xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo or xmax > hi:
            below, above = x < lo, x > hi
            self.below += int(below.sum())
            self.above += int(above.sum())
            x = x[~(below | above)]
            if x.size == 0:
                return
        if self.uniform:
            work = np.float32 if x.dtype in (np.float32, np.float16) else np.float64
            f = np.subtract(x, work(lo), dtype=work)
            np.multiply(f, work(self.bins / (hi - lo)), out=f)
            idx = f.astype(np.intp)
            np.clip(idx, 0, self.bins - 1, out=idx)
        else:
            idx = np.searchsorted(self.edges, x, side="right") - 1
            np.clip(idx, 0, self.bins - 1, out=idx)
        self.counts += np.bincount(idx, minlength=self.bins)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"edges": self.edges.tolist(), "counts": self.counts.tolist()}
        if self.below or self.above:
            out["below"], out["above"] = self.below, self.above
        if self.nan:
            out["nan"] = self.nan
        return out


def histogram(chunks: Iterable[np.ndarray], dtype: str, edges: Iterable[float] | np.ndarray) -> Histogram:
    h = Histogram(edges)
    for rows in chunks:
        h.update(as_float(rows, dtype))
    return h


@dataclass
class Change:
    """How tensor ``b`` differs from ``a`` (same shape and dtype), accumulated chunk pair by pair."""

    count: int = 0
    changed: int = 0
    dd: float = 0.0  # Σ(b−a)²
    aa: float = 0.0
    bb: float = 0.0
    ab: float = 0.0
    max_abs: float = 0.0

    def update(self, a_rows: np.ndarray, b_rows: np.ndarray, dtype: str) -> None:
        if a_rows.shape != b_rows.shape:
            raise ValueError(f"chunks differ in shape: {a_rows.shape} vs {b_rows.shape}")
        n = int(a_rows.size)
        if n == 0:
            return
        self.count += n
        self.changed += int(np.count_nonzero(_bits(a_rows) != _bits(b_rows)))
        a = as_float(a_rows, dtype).reshape(-1).astype(np.float64, copy=False)
        b = as_float(b_rows, dtype).reshape(-1).astype(np.float64, copy=False)
        d = b - a
        self.dd += float(np.dot(d, d))
        self.aa += float(np.dot(a, a))
        self.bb += float(np.dot(b, b))
        self.ab += float(np.dot(a, b))
        biggest = max(float(d.max()), -float(d.min()))
        self.max_abs = biggest if math.isnan(biggest) else max(self.max_abs, biggest)

    def to_dict(self) -> dict[str, Any]:
        l2 = math.sqrt(self.dd)
        norm_a, norm_b = math.sqrt(self.aa), math.sqrt(self.bb)
        return {
            "l2": l2,
            "relative": l2 / norm_a if norm_a else (0.0 if l2 == 0 else None),
            "cosine": self.ab / (norm_a * norm_b) if norm_a and norm_b else None,
            "max_abs": self.max_abs,
            "fraction_changed": self.changed / self.count if self.count else 0.0,
            "norm_a": norm_a,
            "norm_b": norm_b,
        }


def change(chunks_a: Iterator[np.ndarray], chunks_b: Iterator[np.ndarray], dtype: str) -> Change:
    """Pairwise change over two chunk streams of equal layout.

    ``strict`` zipping drains both streams to their end, which is where ``iter_tensor`` checks
    the content hash: a damaged object is reported, not silently compared.
    """
    c = Change()
    for a_rows, b_rows in zip(chunks_a, chunks_b, strict=True):
        c.update(a_rows, b_rows, dtype)
    return c
