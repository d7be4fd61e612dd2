"""Layer graphs: build one from a framework's model, compare two.

Knows networkx, not zarr. Framework libraries (torch, onnx) are imported only inside the
functions that need them, so this package imports with numpy and networkx alone.
"""

from .from_names import graph_from_tensors
from .from_onnx import graph_from_onnx, onnx_initializers
from .from_torch import graph_from_module, tensor_fingerprints
from .layer_graph import LayerGraph
from .match import GraphMatch, match_graphs

__all__ = [
    "GraphMatch",
    "LayerGraph",
    "graph_from_module",
    "graph_from_onnx",
    "graph_from_tensors",
    "match_graphs",
    "onnx_initializers",
    "tensor_fingerprints",
]
