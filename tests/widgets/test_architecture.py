"""ArchitectureGraph: the view's JSON built from real graphs and repositories, blocks collapsed for
big models, statistics and histograms on the right layers, the static picture, bad input."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import counting_repo, tiny_gpt2

from nbmodelhub.errors import RefNotFound
from nbmodelhub.graph import LayerGraph, graph_from_module
from nbmodelhub.widgets.architecture import (
    LAYER_COLORS,
    ArchitectureGraph,
    draw_graph,
    graph_data,
    initial_collapsed,
    layer_family,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpt2_12() -> LayerGraph:
    """GPT-2's real structure (12 blocks) at a small width: the graph is what matters here."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=32, n_head=2, vocab_size=64, n_positions=16)).eval()
    return graph_from_module(model, torch.zeros(1, 8, dtype=torch.long))


def synthetic(blocks: int, per_block: int) -> LayerGraph:
    """A chain of ``blocks`` blocks of ``per_block`` layers with a residual edge around each block."""
    g = LayerGraph("fx")
    prev = "stem"
    g.add_layer("stem", "Conv2d", group="")
    g.add_group("", "Net")
    g.add_group("blocks", "ModuleList")
    for b in range(blocks):
        path = f"blocks.{b}"
        g.add_group(path, "Block")
        first = prev
        for i in range(per_block):
            lid = f"{path}.layer{i}"
            weight = {f"{lid}.weight": {"shape": [8, 8], "dtype": "float32", "count": 64}}
            kind = ["Linear", "LayerNorm", "GELU", "Dropout"][i % 4]
            g.add_layer(lid, kind, group=path, params=weight if kind == "Linear" else {})
            g.add_edge(prev, lid)
            prev = lid
        add = f"{path}:add"
        g.add_layer(add, "add", kind="op", group=path)
        g.add_edge(first, add)
        g.add_edge(prev, add)
        prev = add
    g.ensure_groups()
    return g


def test_small_graph_data_is_the_graph(repo) -> None:
    model = tiny_gpt2()
    graph = graph_from_module(model, torch.zeros(1, 8, dtype=torch.long))
    data = graph_data(graph, title="tiny")
    assert [n["id"] for n in data["nodes"]] == list(graph.graph.nodes)
    ids = [n["id"] for n in data["nodes"]]
    assert {(ids[u], ids[v]) for u, v in data["edges"]} == set(graph.graph.edges)
    assert data["collapsed"] == []  # 32 layers: everything shows
    by_id = {n["id"]: n for n in data["nodes"]}
    assert by_id["transformer.wte"]["family"] == "embedding"
    assert by_id["transformer.h.0.ln_1"]["family"] == "norm"
    assert by_id["transformer.h.0.attn.c_attn"]["family"] == "linear"  # transformers' Conv1D is a linear layer
    assert by_id["transformer.h.0.attn:scaled_dot_product_attention"]["family"] == "attention"
    assert by_id["transformer.h.0:add"]["family"] == "arithmetic"
    shapes = {p[0]: p[1] for p in by_id["transformer.h.0.attn.c_attn"]["params"]}
    assert shapes == {"transformer.h.0.attn.c_attn.weight": [32, 96], "transformer.h.0.attn.c_attn.bias": [96]}
    assert data["groups"]["transformer.h.0"]["layers"] == len(graph.nodes_in_group("transformer.h.0"))
    assert data["summary"]["parameters"] == graph.parameter_count()
    json.dumps(data, allow_nan=False)  # plain JSON, nothing else


@pytest.mark.parametrize(
    ("type_name", "family"),
    [("Conv2d", "conv"), ("BatchNorm2d", "norm"), ("ReLU", "activation"), ("MaxPool2d", "pool"),
     ("Linear", "linear"), ("MultiheadAttention", "attention"), ("Dropout", "dropout"), ("Flatten", "reshape"),
     ("Gemm", "linear"), ("Softmax", "activation"), ("add", "arithmetic"), ("Mystery", "other")],
)  # fmt: skip
def test_layer_families(type_name: str, family: str) -> None:
    assert layer_family(type_name) == family
    assert family in LAYER_COLORS


def test_gpt2_starts_with_its_blocks_collapsed(gpt2_12: LayerGraph) -> None:
    data = graph_data(gpt2_12)
    assert sorted(data["collapsed"]) == sorted(f"transformer.h.{i}" for i in range(12))
    collapsed = gpt2_12.collapsed(groups=data["collapsed"])
    assert len(collapsed) < 30  # embeddings, 12 blocks, final norm, head
    assert sum(1 for _, d in collapsed.graph.nodes(data=True) if d["kind"] == "group") == 12


def test_two_thousand_layers_fold_to_an_overview() -> None:
    g = synthetic(100, 19)  # 100 blocks of 20 layers (19 + the residual add) + stem
    assert len(g) == 2001
    data = graph_data(g)
    assert len(data["collapsed"]) == 100
    visible = len(g.collapsed(groups=data["collapsed"]))
    assert visible == 101
    assert len(json.dumps(data, separators=(",", ":"))) < 1_000_000


def test_too_many_blocks_fold_a_level_higher() -> None:
    # 400 blocks are too many to show one by one: their container folds instead.
    g = synthetic(400, 3)
    collapsed = graph_data(g)["collapsed"]
    assert collapsed == ["blocks"]
    assert len(g.collapsed(groups=collapsed)) == 2


def test_of_repository_attaches_statistics_and_histograms(repo) -> None:
    model = tiny_gpt2()
    repo.commit(model, name="g", example_input=torch.zeros(1, 8, dtype=torch.long))
    widget = ArchitectureGraph.of(repo, "g", bins=16)
    data = widget.data
    assert data["title"] == "g@1"
    weight = model.transformer.h[1].mlp.c_fc.weight.detach().numpy().astype(np.float64)
    bias = model.transformer.h[1].mlp.c_fc.bias.detach().numpy().astype(np.float64)
    both = np.concatenate([weight.ravel(), bias.ravel()])
    stats = data["stats"]["transformer.h.1.mlp.c_fc"]
    assert stats["mean"] == pytest.approx(both.mean(), rel=1e-4)
    assert stats["max"] == pytest.approx(both.max(), rel=1e-4)
    assert stats["tensors"]["weight"]["shape"] == [32, 128]
    hist = data["histograms"]["transformer.h.1.mlp.c_fc"]
    assert len(hist["counts"]) == 16 and len(hist["edges"]) == 17
    assert sum(hist["counts"]) == both.size
    assert "transformer.h.1.attn.attn_dropout" not in data["histograms"]  # no weights, no histogram
    assert widget.data_bytes() == len(json.dumps(data, separators=(",", ":")).encode())


def test_without_histograms_no_weight_is_read(repo_path: Path) -> None:
    repo, store = counting_repo(repo_path)
    repo.commit(tiny_gpt2(), name="g")
    store.reset()
    widget = ArchitectureGraph.of(repo, "g", histograms=False)
    assert widget.data["stats"] == {} and widget.data["histograms"] == {}
    assert len(widget.data["nodes"]) > 10
    assert not [k for k in store.reads if "/c/" in k]  # no chunk of any tensor


def test_from_graph_and_static_picture(gpt2_12: LayerGraph) -> None:
    widget = ArchitectureGraph.from_graph(gpt2_12, title="gpt2")
    bundle, _ = widget._repr_mimebundle_()
    png = base64.b64decode(bundle["image/png"])
    assert png.startswith(b"\x89PNG")
    from PIL import Image

    width, height = Image.open(io.BytesIO(png)).size
    assert width > 300 and height > 400
    fig = draw_graph(gpt2_12, title="gpt2")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert initial_collapsed(gpt2_12, max_visible=40) == graph_data(gpt2_12)["collapsed"]
    # the big model is drawn as its block overview: 12 block cards, readable labels
    assert texts.count("GPT2Block") == 12
    assert "Embedding" in texts and "h.11 · 13 layers" in texts


def test_restored_from_data_alone_still_draws(gpt2_12: LayerGraph) -> None:
    data = graph_data(gpt2_12)
    widget = ArchitectureGraph(data)
    assert widget.fallback()["image/png"]
    assert "12 blocks" not in repr(widget) and f"{len(gpt2_12)} layers" in repr(widget)


def test_colours_match_the_views_palette() -> None:
    style = (ROOT / "js" / "src" / "lib" / "style.ts").read_text()
    block = style[style.index("LAYER_COLORS") : style.index("};", style.index("LAYER_COLORS"))]
    in_ts = dict(re.findall(r'(\w+): "(#[0-9a-f]{6})"', block))
    assert in_ts == LAYER_COLORS


def test_unknown_version_is_one_clear_error(repo) -> None:
    repo.commit(tiny_gpt2(), name="g")
    with pytest.raises(RefNotFound, match="g@7"):
        ArchitectureGraph.of(repo, "g@7")
