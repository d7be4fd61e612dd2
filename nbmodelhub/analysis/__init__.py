"""Looking inside versions: diffs, descriptions, weight statistics and histograms.

Knows the store's chunk streams and layer graphs; the verbs in ``api.py`` are thin calls into here.
"""

from .describe import describe_layers, forward_footprint, histograms, shared_edges, version_edges
from .version_diff import Side, VersionDiff, align_curves, diff_versions, pair_tensors
from .weights import Change, Histogram, Moments, as_float, change, histogram, make_edges, moments, value_range

__all__ = [
    "Change",
    "Histogram",
    "Moments",
    "Side",
    "VersionDiff",
    "align_curves",
    "as_float",
    "change",
    "describe_layers",
    "diff_versions",
    "forward_footprint",
    "histogram",
    "histograms",
    "make_edges",
    "moments",
    "pair_tensors",
    "shared_edges",
    "value_range",
    "version_edges",
]
