"""LayerGraph itself: JSON round trip, canonical bytes, summaries, collapsing; names-only graphs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nbmodelhub.graph import LayerGraph, graph_from_module, graph_from_tensors


@pytest.fixture(scope="module")
def gpt2_model() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=32))


@pytest.fixture(scope="module")
def gpt2_graph(gpt2_model: nn.Module) -> LayerGraph:
    return graph_from_module(gpt2_model)


def test_json_round_trip(gpt2_graph: LayerGraph) -> None:
    d = gpt2_graph.to_json()
    text = json.dumps(d, sort_keys=True)
    back = LayerGraph.from_json(json.loads(text))
    assert back.to_json() == d
    assert back == gpt2_graph
    assert back.canonical_bytes() == gpt2_graph.canonical_bytes()
    assert list(back.graph.nodes) == list(gpt2_graph.graph.nodes)
    assert set(back.graph.edges) == set(gpt2_graph.graph.edges)
    assert back.groups == gpt2_graph.groups
    assert d["format"] == "nbmodelhub.layer_graph" and d["version"] == 1
    assert d["source"] == "export" and d["traced"] is True


def test_identical_graphs_give_identical_bytes() -> None:
    def build() -> LayerGraph:
        torch.manual_seed(1)
        return graph_from_module(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2)))

    a, b = build(), build()
    assert a.canonical_bytes() == b.canonical_bytes()
    assert a.canonical_bytes() == json.dumps(a.to_json(), sort_keys=True, separators=(",", ":")).encode()
    c = graph_from_module(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 3)))
    assert c.canonical_bytes() != a.canonical_bytes()


def test_summary(gpt2_graph: LayerGraph, gpt2_model: nn.Module) -> None:
    s = gpt2_graph.summary()
    assert s["layers"] == len(gpt2_graph.layers())
    assert s["parameters"] == gpt2_model.num_parameters()
    assert s["by_type"]["Conv1D"] == 8 and s["by_type"]["LayerNorm"] == 5 and s["by_type"]["add"] == 5
    assert s["top_level"] == [
        {"path": "transformer", "type": "GPT2Model"},
        {"path": "lm_head", "type": "Linear"},
    ]
    json.dumps(s)


def test_collapsed_blocks(gpt2_graph: LayerGraph) -> None:
    blocks = gpt2_graph.collapsed(depth=3)
    assert "transformer.h.0" in blocks.graph and "transformer.h.1" in blocks.graph
    assert blocks.node("transformer.h.0")["type"] == "GPT2Block"
    assert blocks.graph.has_edge("transformer.drop", "transformer.h.0")
    assert blocks.graph.has_edge("transformer.h.0", "transformer.h.1")
    assert blocks.graph.has_edge("transformer.h.1", "transformer.ln_f")
    assert blocks.parameter_count() == gpt2_graph.parameter_count()
    assert "transformer.h.0.attn" not in blocks.groups
    one = gpt2_graph.collapsed(groups=["transformer.h.1.mlp"])
    assert one.graph.has_edge("transformer.h.1.ln_2", "transformer.h.1.mlp")
    assert "transformer.h.0.mlp.c_fc" in one.graph


def test_names_only_graph_from_state_dict_with_config(gpt2_model: nn.Module) -> None:
    tensors = {k: (str(v.dtype), tuple(v.shape)) for k, v in gpt2_model.state_dict().items()}
    config = {**gpt2_model.config.to_dict(), "architectures": ["GPT2LMHeadModel"]}  # as in config.json
    g = graph_from_tensors(tensors, config)
    assert g.source == "names" and not g.traced
    assert g.graph.number_of_edges() == 0
    assert set(g.params()) == set(gpt2_model.state_dict())
    assert g.node("transformer.wte")["type"] == "embedding"
    assert g.node("transformer.wte")["attrs"] == {"num_embeddings": 100, "embedding_dim": 64}
    assert g.node("transformer.h.1.attn.c_attn")["type"] == "linear"
    assert g.node("transformer.h.0.ln_1")["type"] == "norm"
    assert g.node("transformer.h.0.ln_1")["group"] == "transformer.h.0"
    assert g.attrs["config"]["model_type"] == "gpt2"
    assert g.attrs["config"]["num_layers"] == 2 and g.attrs["config"]["num_heads"] == 2
    assert g.groups["transformer.h"]["type"] == "list"
    assert g.groups["transformer.h.0"]["type"] == "block"
    assert g.groups["transformer.h.0"]["attrs"] == {"hidden_size": 64, "num_heads": 2}
    assert g.groups[""]["type"] == "GPT2LMHeadModel"
    assert LayerGraph.from_json(g.to_json()) == g


def test_names_only_graph_guesses_types_and_orders_naturally() -> None:
    tensors = {
        "features.10.weight": ("F32", (8, 4, 3, 3)),
        "features.2.weight": ("F32", (4, 3, 3, 3)),
        "features.2.bias": ("F32", (4,)),
        "features.3.weight": ("F32", (4,)),
        "features.3.bias": ("F32", (4,)),
        "features.3.running_mean": ("F32", (4,)),
        "features.3.running_var": ("F32", (4,)),
        "rnn.weight_ih_l0": ("BF16", (64, 8)),
        "rnn.weight_hh_l0": ("BF16", (64, 16)),
        "cls_token": ("F32", (1, 1, 8)),
    }
    g = graph_from_tensors(tensors)
    assert g.layers() == ["params", "features.2", "features.3", "features.10", "rnn"]
    assert g.node("features.2")["type"] == "conv2d"
    assert g.node("features.2")["attrs"] == {"out_channels": 4, "kernel_size": [3, 3]}
    assert g.node("features.3")["type"] == "batchnorm"
    assert g.node("rnn")["type"] == "lstm"
    assert g.node("rnn")["params"]["rnn.weight_ih_l0"]["dtype"] == "bfloat16"
    assert g.node("params")["params"]["cls_token"]["count"] == 8


def test_package_imports_without_frameworks() -> None:
    # The parent package may import the store (zarr); stand in for it so only graph/ is measured.
    package_dir = Path(__file__).resolve().parents[2] / "nbmodelhub"
    code = (
        "import sys, types; "
        f"pkg = types.ModuleType('nbmodelhub'); pkg.__path__ = [{str(package_dir)!r}]; "
        "sys.modules['nbmodelhub'] = pkg; "
        "import nbmodelhub.graph as g; "
        "bad = [m for m in ('torch', 'onnx', 'transformers', 'zarr') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
