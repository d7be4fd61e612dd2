"""Architecture diffs: insertions, removals and renames must not make everything look changed."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import insert_block
from torch import nn

from nbmodelhub.graph import (
    LayerGraph,
    graph_from_module,
    graph_from_tensors,
    match_graphs,
    tensor_fingerprints,
)


def gpt2(n_layer: int) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=64, n_head=2, vocab_size=100, n_positions=32))


def block_layers(g: LayerGraph, block: str) -> list[str]:
    return [n for n in g.graph.nodes if n.startswith(block + ".") or n.startswith(block + ":")]


@pytest.fixture(scope="module")
def gpt2_pair() -> tuple[nn.Module, nn.Module, LayerGraph, LayerGraph]:
    a = gpt2(4)
    b = insert_block(a, 2)
    return a, b, graph_from_module(a), graph_from_module(b)


def test_identical_graphs_match_completely(gpt2_pair: tuple[nn.Module, nn.Module, LayerGraph, LayerGraph]) -> None:
    _, _, ga, _ = gpt2_pair
    m = match_graphs(ga, LayerGraph.from_json(ga.to_json()))
    assert m.identical
    assert m.pairs == {n: n for n in ga.graph.nodes}
    assert not m.added and not m.removed and not m.changed and not m.renamed


def test_inserted_block_with_weights_reports_exactly_that_block(
    gpt2_pair: tuple[nn.Module, nn.Module, LayerGraph, LayerGraph],
) -> None:
    a, b, ga, gb = gpt2_pair
    m = match_graphs(ga, gb, fingerprints_a=tensor_fingerprints(a), fingerprints_b=tensor_fingerprints(b))
    assert m.added == block_layers(gb, "transformer.h.2")
    assert m.removed == [] and m.changed == []
    assert m.groups_added == ["transformer.h.2", "transformer.h.2.attn", "transformer.h.2.mlp"]
    assert m.groups_removed == []
    # the old blocks 2 and 3 are now 3 and 4: renamed, not changed
    assert m.pairs["transformer.h.2.attn.c_attn"] == "transformer.h.3.attn.c_attn"
    assert m.pairs["transformer.h.3:add_1"] == "transformer.h.4:add_1"
    assert m.pairs["transformer.h.1.ln_1"] == "transformer.h.1.ln_1"
    renumbered = block_layers(ga, "transformer.h.2") + block_layers(ga, "transformer.h.3")
    assert {a_id for a_id, _ in m.renamed} == set(renumbered)
    assert len(m.unchanged) == len(ga.graph.nodes)
    # data flow only changes where the block was spliced in
    new = "transformer.h.2"
    outside = [(u, v) for u, v in m.edges_added if not (u.startswith(new) and v.startswith(new))]
    assert outside == [
        ("transformer.h.1:add_1", "transformer.h.2.ln_1"),
        ("transformer.h.1:add_1", "transformer.h.2:add"),
        ("transformer.h.2:add_1", "transformer.h.3.ln_1"),
        ("transformer.h.2:add_1", "transformer.h.3:add"),
    ]
    assert m.edges_removed == [
        ("transformer.h.1:add_1", "transformer.h.2.ln_1"),
        ("transformer.h.1:add_1", "transformer.h.2:add"),
    ]


def test_inserted_block_structure_only_adds_one_block_and_changes_nothing(
    gpt2_pair: tuple[nn.Module, nn.Module, LayerGraph, LayerGraph],
) -> None:
    _, _, ga, gb = gpt2_pair
    m = match_graphs(ga, gb)
    # Identical blocks are indistinguishable by structure: one block's worth is new, nothing else.
    assert len(m.added) == len(block_layers(gb, "transformer.h.2"))
    assert len({n.split(":")[0].split(".")[2] for n in m.added}) == 1
    assert m.removed == [] and m.changed == []
    assert len(m.pairs) == len(ga.graph.nodes)


def test_inserted_block_of_different_shape_is_found_by_structure() -> None:
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    a = gpt2(4)
    b = copy.deepcopy(a)
    wide = GPT2Block(GPT2Config(n_embd=64, n_head=2, n_inner=128, vocab_size=100, n_positions=32), layer_idx=2)
    b.transformer.h.insert(2, wide)
    b.config.n_layer = 5
    ga, gb = graph_from_module(a), graph_from_module(b)
    m = match_graphs(ga, gb)
    assert m.added == block_layers(gb, "transformer.h.2")
    assert m.removed == [] and m.changed == []
    assert m.pairs["transformer.h.3.mlp.c_fc"] == "transformer.h.4.mlp.c_fc"


def test_removed_block_in_names_only_graphs() -> None:
    a = gpt2(4)
    b = copy.deepcopy(a)
    del b.transformer.h[1]
    b.config.n_layer = 3

    def names(model: nn.Module) -> LayerGraph:
        sd = model.state_dict()
        return graph_from_tensors({k: (str(v.dtype), tuple(v.shape)) for k, v in sd.items()}, model.config.to_dict())

    m = match_graphs(names(a), names(b), fingerprints_a=tensor_fingerprints(a), fingerprints_b=tensor_fingerprints(b))
    assert m.removed == [n for n in names(a).graph.nodes if n.startswith("transformer.h.1.")]
    assert m.added == [] and m.changed == []
    assert m.pairs["transformer.h.2.ln_1"] == "transformer.h.1.ln_1"


def test_removed_layer_in_sequential() -> None:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    b = nn.Sequential(a[0], a[1], a[4])
    m = match_graphs(graph_from_module(a), graph_from_module(b))
    assert m.removed == ["2", "3"]
    assert m.added == [] and m.changed == []
    assert m.pairs == {"0": "0", "1": "1", "4": "2"}
    assert m.renamed == [("4", "2")]
    assert m.edges_added == [("1", "2")]


class Encoder(nn.Module):
    def __init__(self, names: tuple[str, str, str], width: int = 16) -> None:
        super().__init__()
        self.names = names
        setattr(self, names[0], nn.Linear(8, width))
        setattr(self, names[1], nn.LayerNorm(width))
        setattr(self, names[2], nn.Linear(width, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c = (getattr(self, n) for n in self.names)
        return c(torch.relu(b(a(x))))


def test_renamed_layers_are_matched_by_structure() -> None:
    ga = graph_from_module(Encoder(("fc1", "norm", "fc2")))
    gb = graph_from_module(Encoder(("dense_in", "norm", "dense_out")))
    m = match_graphs(ga, gb)
    assert m.renamed == [("fc1", "dense_in"), ("fc2", "dense_out")]
    assert m.added == [] and m.removed == [] and m.changed == []
    assert m.structurally_equal and not m.identical


def test_changed_width_is_reported_with_details() -> None:
    ga = graph_from_module(Encoder(("fc1", "norm", "fc2")))
    gb = graph_from_module(Encoder(("fc1", "norm", "fc2"), width=32))
    m = match_graphs(ga, gb)
    assert m.added == [] and m.removed == []
    changed = {a: what for a, _, what in m.changed}
    assert changed == {"fc1": ["attrs", "shapes"], "norm": ["attrs", "shapes"], "fc2": ["attrs", "shapes"]}
    j = m.to_json()
    fc1 = next(c for c in j["changed"] if c["a"] == "fc1")
    assert fc1["attrs"] == {"out_features": [16, 32]}
    assert fc1["shapes"] == {"bias": [[16], [32]], "weight": [[16, 8], [32, 8]]}


def test_match_is_deterministic(gpt2_pair: tuple[nn.Module, nn.Module, LayerGraph, LayerGraph]) -> None:
    _, _, ga, gb = gpt2_pair
    assert match_graphs(ga, gb).to_json() == match_graphs(ga, gb).to_json()


def test_traced_graph_matches_names_graph_of_its_own_weights():
    """A module committed as-is and the same weights from a safetensors file are the same architecture."""
    from nbmodelhub.graph import graph_from_module, graph_from_tensors

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    traced = graph_from_module(model)
    names = graph_from_tensors(
        {n: (str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in model.state_dict().items()}
    )
    assert traced.source != "names"
    match = match_graphs(traced, names)
    assert match.structurally_equal
    assert not match.added and not match.removed and not match.changed
    wider = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    other = graph_from_tensors(
        {n: (str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in wider.state_dict().items()}
    )
    assert match_graphs(traced, other).changed
