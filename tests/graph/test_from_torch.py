"""Layer graphs built from real torch models: transformers, a ResNet, an LSTM, MLPs."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
import torch
from torch import nn

from nbmodelhub.graph import LayerGraph, graph_from_module


class BasicBlock(nn.Module):
    """A ResNet basic block: the ReLU module is applied twice and the skip adds two inputs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + x)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


class LSTMClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.emb(x))
        return self.head(out[:, -1])


class DataDependent(nn.Module):
    """Python control flow on tensor values: neither fx nor torch.export can trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) if x.sum() > 0 else self.b(x)


class WithOwnParameter(nn.Module):
    """A non-leaf module with a parameter of its own (like a ViT's cls_token)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.offset = nn.Parameter(torch.zeros(4))
        self.unused = nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.offset


def gpt2(n_layer: int = 2) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=64, n_head=2, vocab_size=100, n_positions=32))


def bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=32,
    )
    return BertModel(cfg)


def assert_params_match_state_dict(g: LayerGraph, model: nn.Module) -> None:
    sd = model.state_dict()
    assert set(g.params()) == set(sd)
    for name, rec in g.params().items():
        assert rec["shape"] == list(sd[name].shape), name
        assert rec["dtype"] == str(sd[name].dtype).removeprefix("torch.")
    # every layer's parameters belong to it: names start with the layer's module path
    for node_id, d in g.graph.nodes(data=True):
        if d["kind"] == "module":
            assert all(p.startswith(node_id.split("@")[0] + ".") for p in d["params"]), node_id


def assert_hierarchy(g: LayerGraph) -> None:
    for node_id, d in g.graph.nodes(data=True):
        assert d["group"] in g.groups, node_id
        assert node_id in g.groups[d["group"]]["children"], node_id
    for path, info in g.groups.items():
        if path:
            assert info["parent"] in g.groups
            assert path in g.groups[info["parent"]]["children"]


@pytest.fixture(scope="module")
def gpt2_graph() -> tuple[nn.Module, LayerGraph]:
    model = gpt2()
    return model, graph_from_module(model)


def test_gpt2_data_flow_through_attention_mlp_residuals_and_norms(gpt2_graph: tuple[nn.Module, LayerGraph]) -> None:
    model, g = gpt2_graph
    # transformers 5.x ships no fx tracer and plain fx cannot trace GPT-2; export must take over.
    assert g.source == "export" and g.traced
    assert "fx" in g.attrs["trace_errors"]
    assert_params_match_state_dict(g, model)
    assert_hierarchy(g)
    G = g.graph
    h0 = "transformer.h.0"
    path = [
        "transformer.wte",
        "transformer:add",
        "transformer.drop",
        f"{h0}.ln_1",
        f"{h0}.attn.c_attn",
        f"{h0}.attn:scaled_dot_product_attention",
        f"{h0}.attn.c_proj",
        f"{h0}.attn.resid_dropout",
        f"{h0}:add",
        f"{h0}.ln_2",
        f"{h0}.mlp.c_fc",
        f"{h0}.mlp.act",
        f"{h0}.mlp.c_proj",
        f"{h0}.mlp.dropout",
        f"{h0}:add_1",
        "transformer.h.1.ln_1",
    ]
    for u, v in itertools.pairwise(path):
        assert G.has_edge(u, v), (u, v)
    # residuals: each add joins the block's input (or the previous add) with the branch output
    assert set(G.predecessors(f"{h0}:add")) == {"transformer.drop", f"{h0}.attn.resid_dropout"}
    assert set(G.predecessors(f"{h0}:add_1")) == {f"{h0}:add", f"{h0}.mlp.dropout"}
    assert nx.has_path(G, "transformer.wte", "lm_head")
    assert G.has_edge("transformer.ln_f", "lm_head")
    assert nx.is_directed_acyclic_graph(G)
    for node_id, d in G.nodes(data=True):
        if node_id.startswith("transformer.h."):
            block = ".".join(node_id.split(".")[:3]).split(":")[0]
            assert d["group"] == block or d["group"].startswith(block + "."), node_id
    assert g.groups["transformer.h.1"]["type"] == "GPT2Block"
    assert g.groups["transformer.h"]["children"] == ["transformer.h.0", "transformer.h.1"]
    c_attn = G.nodes["transformer.h.0.attn.c_attn"]
    assert c_attn["type"] == "Conv1D" and c_attn["attrs"]["nf"] == 192
    assert g.groups["transformer.h.0.attn"]["attrs"]["num_heads"] == 2
    assert "layer_idx" not in g.groups["transformer.h.0.attn"]["attrs"]


def test_gpt2_tied_weights_listed_under_each_owner(gpt2_graph: tuple[nn.Module, LayerGraph]) -> None:
    model, g = gpt2_graph
    assert "lm_head.weight" in g.node("lm_head")["params"]
    assert "transformer.wte.weight" in g.node("transformer.wte")["params"]
    assert g.node("lm_head")["params"]["lm_head.weight"]["tied_to"] == "transformer.wte.weight"
    assert g.parameter_count() == model.num_parameters()


def test_gpt2_hooks_tracer_gives_the_same_graph_as_export(gpt2_graph: tuple[nn.Module, LayerGraph]) -> None:
    model, g = gpt2_graph
    hooked = graph_from_module(model, tracers=("hooks",))
    assert hooked.source == "hooks"
    assert list(hooked.graph.nodes) == list(g.graph.nodes)
    assert set(hooked.graph.edges) == set(g.graph.edges)


def test_graph_is_deterministic(gpt2_graph: tuple[nn.Module, LayerGraph]) -> None:
    model, g = gpt2_graph
    assert graph_from_module(model).canonical_bytes() == g.canonical_bytes()


def test_bert() -> None:
    model = bert()
    g = graph_from_module(model)
    assert g.traced
    assert_params_match_state_dict(g, model)
    assert_hierarchy(g)
    G = g.graph
    sa = "encoder.layer.0.attention.self"
    attn = f"{sa}:scaled_dot_product_attention"
    assert set(G.predecessors(attn)) == {f"{sa}.query", f"{sa}.key", f"{sa}.value"}
    out = "encoder.layer.0.attention.output"
    assert set(G.predecessors(f"{out}:add")) == {f"{out}.dropout", "embeddings.dropout"}
    assert G.has_edge(f"{out}:add", f"{out}.LayerNorm")
    assert G.has_edge("encoder.layer.1.output.LayerNorm", "pooler.dense")
    assert g.groups["encoder.layer.0"]["type"] == "BertLayer"


def test_resnet_skip_connection_and_shared_relu() -> None:
    model = TinyResNet()
    g = graph_from_module(model)
    assert g.source == "fx"
    assert_params_match_state_dict(g, model)
    assert_hierarchy(g)
    G = g.graph
    assert set(G.predecessors("layer1.0:add")) == {"layer1.0.bn2", "stem"}
    assert set(G.predecessors("layer1.1:add")) == {"layer1.1.bn2", "layer1.0.relu@1"}
    # the ReLU module runs twice per block: two layers, not a cycle
    assert G.nodes["layer1.0.relu@1"]["attrs"]["shares_params_with"] == "layer1.0.relu"
    assert nx.is_directed_acyclic_graph(G)
    assert G.has_edge("pool", "fc")
    conv = G.nodes["layer1.0.conv1"]
    assert conv["type"] == "Conv2d"
    assert conv["attrs"]["kernel_size"] == [3, 3] and conv["attrs"]["padding"] == [1, 1]
    bn = G.nodes["layer1.0.bn1"]["params"]
    assert bn["layer1.0.bn1.running_mean"]["buffer"] is True
    assert g.parameter_count() == sum(p.numel() for p in model.parameters())
    # torch.export gives the same layers and edges as fx
    exported = graph_from_module(model, torch.randn(1, 3, 8, 8), tracers=("export",))
    assert exported.source == "export"
    assert list(exported.graph.nodes) == list(G.nodes)
    assert set(exported.graph.edges) == set(G.edges)


def test_lstm() -> None:
    model = LSTMClassifier()
    g = graph_from_module(model)
    assert g.traced
    assert_params_match_state_dict(g, model)
    assert list(g.graph.edges) == [("emb", "lstm"), ("lstm", "head")]
    lstm = g.node("lstm")
    assert lstm["type"] == "LSTM"
    assert lstm["attrs"]["hidden_size"] == 16 and lstm["attrs"]["num_layers"] == 2
    assert "lstm.weight_hh_l1" in lstm["params"]


def test_sequential_mlp() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    g = graph_from_module(model)
    assert g.source == "fx"
    assert_params_match_state_dict(g, model)
    assert list(g.graph.edges) == [("0", "1"), ("1", "2"), ("2", "3"), ("3", "4")]
    assert g.node("0")["attrs"]["in_features"] == 8
    assert g.groups[""]["type"] == "Sequential"
    assert g.summary()["by_type"] == {"Linear": 3, "ReLU": 2}


def test_untraceable_module_falls_back_to_module_tree() -> None:
    model = DataDependent()
    g = graph_from_module(model)
    assert g.source == "modules" and not g.traced
    assert g.graph.number_of_edges() == 0
    assert set(g.graph.nodes) == {"a", "b"}
    assert_params_match_state_dict(g, model)
    errors = g.attrs["trace_errors"]
    assert "fx" in errors and "example input" in errors["export"]
    assert g.summary()["source"] == "modules"


def test_untraceable_module_with_example_input_is_followed_by_hooks() -> None:
    model = DataDependent()
    g = graph_from_module(model, torch.ones(1, 4))
    assert g.source == "hooks"
    assert "export" in g.attrs["trace_errors"]
    assert list(g.graph.nodes) == ["a", "b"]  # b never ran: a layer without edges
    assert_params_match_state_dict(g, model)


def test_parameters_of_non_leaf_modules_are_kept() -> None:
    model = WithOwnParameter()
    g = graph_from_module(model)
    assert_params_match_state_dict(g, model)
    assert g.node("add")["params"].keys() == {"offset"}
    assert g.node("params")["params"].keys() == {"unused"}
    assert g.graph.has_edge("proj", "add")


def test_training_mode_is_restored() -> None:
    model = TinyResNet().train()
    graph_from_module(model, torch.randn(1, 3, 8, 8), tracers=("export",))
    assert model.training


def test_gpt2_small_full_config_traces_all_twelve_blocks() -> None:
    """The issue's model itself: GPT-2 small from GPT2Config() (124M parameters, random weights)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config())
    g = graph_from_module(model)
    assert g.traced
    assert_params_match_state_dict(g, model)
    G = g.graph
    assert g.groups["transformer.h"]["children"] == [f"transformer.h.{i}" for i in range(12)]
    for i in range(12):
        h = f"transformer.h.{i}"
        assert G.has_edge(f"{h}.ln_1", f"{h}.attn.c_attn")
        assert G.has_edge(f"{h}.attn.c_attn", f"{h}.attn:scaled_dot_product_attention")
        assert set(G.predecessors(f"{h}:add_1")) == {f"{h}:add", f"{h}.mlp.dropout"}
        assert G.nodes[f"{h}.attn.c_attn"]["attrs"]["nf"] == 3 * 768
    assert G.has_edge("transformer.h.11:add_1", "transformer.ln_f")
    assert g.parameter_count() == model.num_parameters()
