"""Layer graphs from ONNX models exported by torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from nbmodelhub.graph import LayerGraph, graph_from_onnx, onnx_initializers


class SkipCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv1(x))
        y = self.conv2(y) + y
        return self.fc(y.mean((2, 3)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = SkipCNN().eval()
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter takes 0.1 s here against several for the dynamo one.
        torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)
    return model, path


def test_onnx_graph_of_small_cnn(exported: tuple[nn.Module, Path]) -> None:
    model, path = exported
    g = graph_from_onnx(path)
    assert g.source == "onnx" and g.traced
    types = [d["type"] for _, d in g.graph.nodes(data=True)]
    assert types.count("Conv") == 2 and "Relu" in types and "Add" in types and "Gemm" in types
    assert "Constant" not in types
    conv1 = "/conv1/Conv"
    assert g.node(conv1)["attrs"]["kernel_shape"] == [3, 3]
    assert g.node(conv1)["attrs"]["pads"] == [1, 1, 1, 1]
    assert g.node(conv1)["group"] == "conv1"
    add = next(n for n, d in g.graph.nodes(data=True) if d["type"] == "Add")
    assert set(g.graph.predecessors(add)) == {"/conv2/Conv", "/relu/Relu"}
    assert g.graph.has_edge(conv1, "/relu/Relu")
    assert g.graph.edges[conv1, "/relu/Relu"]["shape"] == [1, 4, 8, 8]
    # every initializer is listed once, with its shape
    inits = onnx_initializers(path)
    assert set(g.params()) == set(inits)
    for name, arr in inits.items():
        assert g.params()[name]["shape"] == list(arr.shape)
    total = sum(p.numel() for p in model.parameters())
    assert g.parameter_count() == total
    assert g.attrs["inputs"] == ["input.1"] or len(g.attrs["inputs"]) == 1
    assert LayerGraph.from_json(g.to_json()) == g


def test_onnx_initializers_are_the_weights(exported: tuple[nn.Module, Path]) -> None:
    model, path = exported
    inits = onnx_initializers(path)
    np.testing.assert_array_equal(inits["fc.weight"], model.fc.weight.detach().numpy())


def test_onnx_from_helper_built_model_and_bytes() -> None:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 3), dtype=np.float32), name="w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["r"], name="act"),
        helper.make_node("Add", ["r", "h"], ["y"], name="skip"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    for source in (model, model.SerializeToString()):
        g = graph_from_onnx(source)
        assert list(g.graph.edges) == [("mm", "act"), ("mm", "skip"), ("act", "skip")]
        assert g.node("mm")["params"] == {"w": {"shape": [2, 3], "dtype": "float32", "count": 6}}
    assert onnx_initializers(model)["w"].shape == (2, 3)
