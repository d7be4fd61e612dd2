"""VersionDiff widget: the merged graph with added/removed/changed layers, weight-change heat,
histogram overlays on shared bins, the hyperparameter table, the static summary, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import insert_block, tiny_gpt2

import nbmodelhub as mh
from nbmodelhub.errors import RefNotFound
from nbmodelhub.widgets.version_diff import VersionDiff, diff_data

X = torch.zeros(1, 8, dtype=torch.long)


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory):
    """g@1: a 2-block GPT-2; g@2: a block inserted at 1, one layer nudged, other params and metrics.
    Shared by the module's tests, which only read it."""
    repo = mh.open(tmp_path_factory.mktemp("diff") / "repo")
    base = tiny_gpt2()
    repo.commit(base, name="g", params={"lr": 0.1, "batch": 8},
                metrics={"acc": 0.5, "loss": [(1, 3.0), (2, 2.5), (3, 2.2)]}, example_input=X)  # fmt: skip
    grown = insert_block(base, 1)
    with torch.no_grad():
        grown.transformer.h[0].mlp.c_fc.weight.add_(0.05)
        grown.transformer.ln_f.weight.mul_(1.001)
    repo.commit(grown, name="g", params={"lr": 0.05, "batch": 8},
                metrics={"acc": 0.55, "loss": [(1, 3.1), (2, 2.4), (4, 2.0)]}, example_input=X)  # fmt: skip
    yield repo, base, grown
    repo.close()


def test_inserted_block_is_added_and_shifted_blocks_are_same(grown) -> None:
    repo, _, _ = grown
    data = diff_data(repo, "g@1", "g@2")
    status = data["status"]
    added = sorted(k for k, s in status.items() if s == "added")
    assert added and all(k.startswith("transformer.h.1.") or k.startswith("transformer.h.1:") for k in added)
    assert len(added) == len(repo.graph("g@2").nodes_in_group("transformer.h.1"))
    # the old h.1 lives on as h.2 with the same weights: matched, not "changed"
    assert status["transformer.h.2.mlp.c_fc"] == "same"
    assert "transformer.h.2.mlp.c_fc" not in data["heat"]
    assert data["summary"]["added"] == len(added) and data["summary"]["removed"] == 0
    ids = [n["id"] for n in data["graph"]["nodes"]]
    assert sorted(ids) == sorted(repo.graph("g@2").graph.nodes)  # nothing removed: b's graph
    json.dumps(data, allow_nan=False)


def test_heat_is_relative_change_against_the_most_changed_layer(grown) -> None:
    repo, base, model = grown
    data = diff_data(repo, "g@1", "g@2")
    heat = data["heat"]
    assert heat["transformer.h.0.mlp.c_fc"] == 1.0
    assert 0 < heat["transformer.ln_f"] < 1
    layer = data["layers"]["transformer.h.0.mlp.c_fc"]
    a = base.transformer.h[0].mlp.c_fc.weight.detach().double().numpy()
    b = model.transformer.h[0].mlp.c_fc.weight.detach().double().numpy()
    ab = np.concatenate([a.ravel(), base.transformer.h[0].mlp.c_fc.bias.detach().double().numpy()])
    assert layer["relative"] == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(ab), rel=1e-5)
    assert layer["changed"] == 1 and layer["tensors"] == 2
    [tensor] = data["tensors"]["transformer.h.0.mlp.c_fc"]
    assert tensor["name"] == "transformer.h.0.mlp.c_fc.weight"


def test_histogram_overlays_share_bins_spanning_both_versions(grown) -> None:
    repo, base, model = grown
    data = diff_data(repo, "g@1", "g@2", bins=20)
    [overlay] = data["histograms"]["transformer.h.0.mlp.c_fc"]
    a = base.transformer.h[0].mlp.c_fc.weight.detach().numpy()
    b = model.transformer.h[0].mlp.c_fc.weight.detach().numpy()
    edges = overlay["edges"]
    assert len(edges) == 21
    assert edges[0] <= min(a.min(), b.min()) and edges[-1] >= max(a.max(), b.max())
    assert overlay["a"] == np.histogram(a, bins=np.asarray(edges))[0].tolist()
    assert overlay["b"] == np.histogram(b, bins=np.asarray(edges))[0].tolist()
    assert "transformer.h.2.mlp.c_fc" not in data["histograms"]  # identical weights: nothing to overlay
    assert diff_data(repo, "g@1", "g@2", histograms=False)["histograms"] == {}


def test_removed_layers_merge_into_the_graph(grown) -> None:
    repo, _, _ = grown
    data = diff_data(repo, "g@2", "g@1")  # backwards: the block is removed
    removed = [k for k, s in data["status"].items() if s == "removed"]
    assert len(removed) == len(repo.graph("g@2").nodes_in_group("transformer.h.1"))
    ids = [n["id"] for n in data["graph"]["nodes"]]
    assert len(ids) == len(repo.graph("g@1")) + len(removed) == len(set(ids))
    # g@1 has its own h.1 (the old block): the removed one keeps its name with its version appended
    assert "transformer.h.1.mlp.c_fc (g@2)" in removed
    # a's edges inside the removed block come along, under the merged names
    edges = {(ids[u], ids[v]) for u, v in data["graph"]["edges"]}
    old = repo.graph("g@2").graph
    inside = [(u, v) for u, v in old.edges if u.startswith("transformer.h.1") and v.startswith("transformer.h.1")]
    assert inside and all((f"{u} (g@2)", f"{v} (g@2)") in edges for u, v in inside)
    # and it hangs off the block before it
    assert any(u.startswith("transformer.h.0") and v.endswith("(g@2)") for u, v in edges)
    assert data["layers"]["transformer.h.1.mlp.c_fc (g@2)"]["status"] == "removed"


def test_params_metrics_and_curves(grown) -> None:
    repo, _, _ = grown
    data = diff_data(repo, "g@1", "g@2")
    assert data["params"] == [
        {"name": "lr", "a": 0.1, "b": 0.05, "differs": True},
        {"name": "batch", "a": 8, "b": 8, "differs": False},
    ]
    assert {"name": "acc", "a": 0.5, "b": 0.55} in data["metrics"]
    loss = data["curves"]["loss"]
    assert loss["steps"] == [1, 2, 3, 4]
    assert loss["a"] == [3.0, 2.5, 2.2, None] and loss["b"] == [3.1, 2.4, None, 2.0]


def test_widget_keeps_the_analysis_and_draws_a_summary(grown) -> None:
    repo, _, _ = grown
    widget = VersionDiff.of(repo, "g@1", "g@2")
    assert widget.result.a == "g@1" and widget.result.b == "g@2"
    assert {c["name"] for c in widget.result.changed} == {
        t["name"] for ts in widget.data["tensors"].values() for t in ts
    }
    bundle, _ = widget._repr_mimebundle_()
    page = bundle["text/html"]
    assert page.count("<img") == 1 and "data:image/png;base64," in page
    rows = page.split("<tr>")
    [lr_row] = [r for r in rows if ">lr<" in r]
    [batch_row] = [r for r in rows if ">batch<" in r]
    assert "#fbe6bf" in lr_row and "#fbe6bf" not in batch_row  # the differing value is highlighted
    assert "g@1 → g@2" in repr(widget)
    assert widget.data_bytes() < 200_000


def test_big_model_diff_opens_the_changed_block() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(n_layer=8, n_embd=16, n_head=2, vocab_size=32, n_positions=16)).eval()
    with mh.open("memory://diff-big") as repo:
        repo.commit(base, name="g", example_input=X)
        repo.commit(insert_block(base, 3), name="g", example_input=X)
        data = diff_data(repo, "g@1", "g@2", histograms=False)
    collapsed = data["graph"]["collapsed"]
    assert "transformer.h.3" not in collapsed  # the inserted block shows its layers
    assert {f"transformer.h.{i}" for i in range(9) if i != 3} <= set(collapsed)


def test_unknown_version_is_one_clear_error(grown) -> None:
    repo, _, _ = grown
    with pytest.raises(RefNotFound, match="g@9"):
        VersionDiff.of(repo, "g@1", "g@9")
