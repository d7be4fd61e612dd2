"""WeightHistograms: per-tensor weight histograms of one version, or two overlaid on shared bins.

The view gets bins and counts only (a few hundred numbers per tensor), never weights: small
multiples of every tensor, one of them large, a log-scale toggle and a name filter.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
from collections.abc import Iterable, Sequence
from typing import Any

from tqdm.auto import tqdm

from nbmodelhub.analysis.describe import tensor_layers, version_edges
from nbmodelhub.api import Repository, Version
from nbmodelhub.errors import UsageError
from nbmodelhub.widgets.base import ModelHubWidget, esm, figure_png

# Histograms of integer buffers (step counters, masks) say nothing about weights; they are shown
# only when asked for by name.
_FLOAT = ("float", "bfloat")
# The static picture shows this many tensors at most (the live view shows them all).
_FALLBACK_PANELS = 24


def _choose(versions: Sequence[Version], layers: Iterable[str] | str | None) -> list[str]:
    """Tensor names to show: all float tensors, or those named by ``layers`` (tensor names, globs
    or layer paths such as ``transformer.h.0``, which take every tensor under them)."""
    names: list[str] = []
    for v in versions:
        names += [n for n in v.tensors if n not in names]
    if layers is None:
        return [n for n in names if any(_dtype(versions, n).startswith(p) for p in _FLOAT)]
    wanted = [layers] if isinstance(layers, str) else list(layers)
    if not wanted:
        raise UsageError("layers is empty: name some tensors or layers, or leave it out for all of them")
    chosen: list[str] = []
    for key in wanted:
        if not isinstance(key, str) or not key:
            raise UsageError(f"layers are tensor names, globs or layer paths, got {key!r}")
        hits = [n for n in names if n == key or fnmatch.fnmatchcase(n, key) or n.startswith(key + ".")]
        if not hits:
            refs = " and ".join(v.ref for v in versions)
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; closest: {', '.join(close)}" if close else f"; its tensors include {', '.join(names[:3])}"
            raise UsageError(f"{refs} has no tensor or layer {key!r}{hint}")
        chosen += [n for n in hits if n not in chosen]
    return chosen


def _dtype(versions: Sequence[Version], name: str) -> str:
    for v in versions:
        if name in v.tensors:
            return v.tensors[name].dtype
    return ""


def histogram_data(
    repo: Repository, refs: str | Version | Sequence[str | Version], layers: Iterable[str] | str | None = None,
    bins: int = 64,
) -> dict[str, Any]:
    """The plain-JSON document the view draws: per tensor, uniform bins ``lo``..``hi`` and one list
    of counts per version (``None`` where a version lacks the tensor)."""
    if isinstance(refs, (str, Version)):
        refs = [refs]
    refs = list(refs)
    if not 1 <= len(refs) <= 2:
        raise UsageError(f"weight histograms show one version or two overlaid, got {len(refs)} references")
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 1024:
        raise UsageError(f"bins must be a whole number from 1 to 1024, got {bins!r}")
    versions = [repo.get(r) for r in refs]
    names = _choose(versions, layers)
    # Coarse steps (shared range, then one binning pass per version): GPT-2 takes a few seconds.
    with tqdm(total=len(versions) + (len(versions) == 2), desc="histograms", delay=1.0, leave=False) as bar:
        if len(versions) == 2:
            edges: Any = version_edges(repo, versions[0], versions[1], names, bins)
            bar.update()
            per_version = []
            for v in versions:
                mine = [n for n in names if n in v.tensors]
                per_version.append(repo.histograms(v, mine, edges=edges) if mine else {})
                bar.update()
        else:
            per_version = [repo.histograms(versions[0], names, bins=bins)]
            bar.update()
    owners = tensor_layers(repo.graph(versions[-1]), names)
    tensors = []
    for name in names:
        hists = [h.get(name) for h in per_version]
        first = next(h for h in hists if h is not None)
        info = next(v.tensors[name] for v in versions if name in v.tensors)
        entry: dict[str, Any] = {
            "name": name,
            "layer": owners[name],
            "shape": list(info.shape),
            "dtype": info.dtype,
            "lo": first["edges"][0],
            "hi": first["edges"][-1],
            "counts": [h["counts"] if h is not None else None for h in hists],
        }
        outside = [
            {k: h[k] for k in ("below", "above", "nan") if h.get(k)} if h is not None else {} for h in hists
        ]
        if any(outside):
            entry["outside"] = outside
        tensors.append(entry)
    return {"refs": [v.ref for v in versions], "bins": bins, "tensors": tensors}


def edges_of(entry: dict[str, Any], bins: int) -> list[float]:
    """The uniform bin edges of one tensor's entry (what ``make_edges`` made)."""
    lo, hi = float(entry["lo"]), float(entry["hi"])
    return [lo + (hi - lo) * i / bins for i in range(bins + 1)]


class WeightHistograms(ModelHubWidget):
    """Small multiples of per-tensor weight histograms, one shown large; two versions overlay."""

    _esm = esm("weight_histograms")

    @classmethod
    def of(
        cls,
        repo: Repository,
        refs: str | Version | Sequence[str | Version],
        *,
        layers: Iterable[str] | str | None = None,
        bins: int = 64,
    ) -> WeightHistograms:
        """Histograms of ``refs`` (one version, or two on shared bins). ``layers``: tensor names,
        globs or layer paths to show (default: every floating-point tensor)."""
        return cls(data=histogram_data(repo, refs, layers=layers, bins=bins))

    def __repr__(self) -> str:
        refs = " vs ".join(self.data.get("refs", []))
        return f"<WeightHistograms {refs}: {len(self.data.get('tensors', []))} tensors>"

    def fallback(self) -> dict[str, str]:
        from matplotlib.figure import Figure

        tensors = self.data.get("tensors", [])
        refs = self.data.get("refs", [])
        bins = int(self.data.get("bins", 64))
        shown = tensors[:_FALLBACK_PANELS]
        if not shown:
            return {"text/html": f"<p>No weight tensors to show for {' vs '.join(refs)}.</p>"}
        cols = min(4, len(shown))
        rows = math.ceil(len(shown) / cols)
        fig = Figure(figsize=(3.1 * cols, 2.1 * rows + 0.5))
        axes = fig.subplots(rows, cols, squeeze=False)
        colors = ["#1f77b4", "#ff7f0e"]
        for ax, entry in zip(axes.flat, shown, strict=False):
            edges = edges_of(entry, bins)
            for i, counts in enumerate(entry["counts"]):
                if counts is None:
                    continue
                ax.stairs(counts, edges, fill=True, alpha=0.35 if len(refs) > 1 else 0.6, color=colors[i])
                ax.stairs(counts, edges, color=colors[i], linewidth=0.9, label=refs[i])
            ax.set_title(f"{entry['name']} {tuple(entry['shape'])}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.margins(x=0)
        for ax in list(axes.flat)[len(shown):]:
            ax.set_visible(False)
        more = f" (first {len(shown)} of {len(tensors)} tensors)" if len(tensors) > len(shown) else ""
        fig.suptitle(f"weight histograms: {' vs '.join(refs)}{more}", fontsize=10)
        if len(refs) > 1:
            handles, labels = axes.flat[0].get_legend_handles_labels()
            fig.legend(handles, labels, loc="upper right", fontsize=8)
        fig.tight_layout()
        return {"image/png": figure_png(fig)}
