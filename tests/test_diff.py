"""Version diffs: layers matched through inserted blocks, weights compared by hash then streamed."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import counting_repo, insert_block
from torch import nn

import nbmodelhub as mh
from nbmodelhub.analysis import VersionDiff


def gpt2(n_layer: int = 4, seed: int = 0) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=64, n_head=2, vocab_size=100, n_positions=32)
    return GPT2LMHeadModel(config).eval()


def fine_tune_last_two(model: nn.Module, steps: int = 2) -> nn.Module:
    tuned = copy.deepcopy(model).train()
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = [p for block in tuned.transformer.h[-2:] for p in block.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-2)
    torch.manual_seed(7)
    for _ in range(steps):
        x = torch.randint(0, 100, (2, 16))
        tuned(x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    return tuned.eval()


def block_tensors(model: nn.Module, blocks: list[int]) -> list[str]:
    return sorted(n for n in model.state_dict() if any(n.startswith(f"transformer.h.{b}.") for b in blocks))


def np64(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


# -- architecture ------------------------------------------------------------------------------------


def test_gpt2_graph_has_data_flow_through_attention_mlp_residuals_and_norms(repo: mh.Repository) -> None:
    v = repo.commit(gpt2(), "gpt2")
    g = repo.graph(v)
    assert g.traced
    edges = set(g.graph.edges)
    h = "transformer.h.1"
    # attention, MLP and layer norms in order, with the residual additions around each half
    assert {
        (f"{h}.ln_1", f"{h}.attn.c_attn"),
        (f"{h}.attn.c_proj", f"{h}.attn.resid_dropout"),
        (f"{h}.attn.resid_dropout", f"{h}:add"),
        (f"{h}:add", f"{h}.ln_2"),
        (f"{h}.ln_2", f"{h}.mlp.c_fc"),
        (f"{h}.mlp.c_fc", f"{h}.mlp.act"),
        (f"{h}.mlp.act", f"{h}.mlp.c_proj"),
        (f"{h}.mlp.dropout", f"{h}:add_1"),
    } <= edges
    assert ("transformer.h.0:add_1", f"{h}:add") in edges  # the residual skips the attention half
    assert (f"{h}:add", f"{h}:add_1") in edges  # and the MLP half
    assert ("transformer.h.0:add_1", f"{h}.ln_1") in edges  # blocks chain into each other
    assert g.node(f"{h}.attn.c_attn")["type"] == "Conv1D"
    assert g.node(f"{h}.ln_1")["type"] == "LayerNorm"
    # grouped by block, attention and MLP as sub-groups
    assert g.groups[h]["type"] == "GPT2Block" and g.groups[h]["parent"] == "transformer.h"
    assert {f"{h}.attn", f"{h}.mlp", f"{h}.ln_1", f"{h}:add"} <= set(g.groups[h]["children"])
    assert g.node(f"{h}.mlp.c_fc")["group"] == f"{h}.mlp"
    assert len([p for p in g.groups if p.startswith("transformer.h.") and p.count(".") == 2]) == 4


def test_inserted_block_is_the_only_structural_change_and_shifted_blocks_are_identical(repo_path: Path) -> None:
    a = gpt2()
    b = insert_block(a, 2)
    repo, store = counting_repo(repo_path)
    va, vb = repo.commit(a, "gpt2"), repo.commit(b, "gpt2")
    store.reset()
    d = repo.diff(va, vb)

    assert isinstance(d, VersionDiff)
    new_layers = [
        n for n in repo.graph(vb).graph.nodes if n.startswith("transformer.h.2.") or n.startswith("transformer.h.2:")
    ]
    arch = d.architecture
    assert arch["added"] == new_layers and len(new_layers) == 13
    assert arch["removed"] == [] and arch["changed"] == []
    assert arch["groups_added"] == ["transformer.h.2", "transformer.h.2.attn", "transformer.h.2.mlp"]
    assert arch["groups_removed"] == []
    # weights: the inserted block's tensors are new; every old tensor has an identical counterpart
    assert d.added == block_tensors(b, [2])
    assert d.removed == [] and d.changed == [] and d.reshaped == []
    assert d.unchanged == len(a.state_dict()) - 1  # lm_head.weight is tied to wte: stored once
    renamed = dict(map(tuple, d.renamed))
    assert renamed["transformer.h.2.attn.c_attn.weight"] == "transformer.h.3.attn.c_attn.weight"
    assert renamed["transformer.h.3.mlp.c_proj.bias"] == "transformer.h.4.mlp.c_proj.bias"
    assert "transformer.h.1.ln_1.weight" not in renamed
    assert d.layers["transformer.h.2.attn.c_attn"]["status"] == "added"
    assert d.layers["transformer.h.3.attn.c_attn"] == {
        "a": "transformer.h.2.attn.c_attn",
        "status": "unchanged",
        "tensors": 2,
        "changed": 0,
        "l2": 0.0,
        "norm_a": 0.0,
        "relative": 0.0,
    }
    # identical by hash: not one byte of any tensor object was read
    assert not [k for k in store.reads if k.startswith("objects/tensors/")]
    json.dumps(d.to_dict(), allow_nan=False)


def test_fine_tune_of_last_two_blocks_changes_only_them_and_reads_nothing_else(repo_path: Path) -> None:
    base = gpt2()
    tuned = fine_tune_last_two(base)
    repo, store = counting_repo(repo_path)
    va = repo.commit(base, "gpt2", params={"lr": 0.0, "frozen": "h.0-1"})
    vb = repo.commit(tuned, "gpt2", params={"lr": 0.01, "frozen": "h.0-1"})
    store.reset()
    d = repo.diff(va, vb)

    expected = block_tensors(base, [2, 3])
    assert sorted(c["name"] for c in d.changed) == expected
    assert d.added == [] and d.removed == [] and d.reshaped == [] and d.architecture["identical"]
    assert d.unchanged == len(va.tensors) - len(expected)
    assert all(c["l2"] > 0 and c["fraction_changed"] > 0 for c in d.changed)
    assert {c["layer"] for c in d.changed} == {n.rsplit(".", 1)[0] for n in expected}
    assert d.params == {"lr": {"from": 0.0, "to": 0.01}}
    assert repo.diff(va, vb, all_params=True).params["frozen"] == {"from": "h.0-1", "to": "h.0-1"}

    read_objects = {k.split("/")[2] for k in store.reads if k.startswith("objects/tensors/")}
    changed_hashes = {va.tensors[n].hash for n in expected} | {vb.tensors[n].hash for n in expected}
    assert read_objects == changed_hashes  # the unchanged tensors' objects were not touched at all

    # change metrics against numpy on the loaded arrays
    xa, xb = repo.load(va, keys=expected), repo.load(vb, keys=expected)
    for c in d.changed:
        a, b = np64(xa[c["name"]]), np64(xb[c["name"]])
        delta = b - a
        assert c["l2"] == pytest.approx(np.linalg.norm(delta), rel=1e-9)
        if np.linalg.norm(a):
            assert c["relative"] == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(a), rel=1e-9)
            assert c["cosine"] == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), rel=1e-9)
        else:  # GPT-2 biases start at zero: no relative size, no angle
            assert c["relative"] is None and c["cosine"] is None
        assert c["max_abs"] == pytest.approx(np.abs(delta).max(), rel=1e-12)
        assert c["fraction_changed"] == pytest.approx(np.mean(xa[c["name"]] != xb[c["name"]]))
    # per-layer aggregates: the layer's change norm is the norm over its tensors
    layer = d.layers["transformer.h.3.mlp.c_fc"]
    parts = [c["l2"] for c in d.changed if c["layer"] == "transformer.h.3.mlp.c_fc"]
    assert layer["changed"] == 2 and layer["l2"] == pytest.approx(math.sqrt(sum(p * p for p in parts)))
    assert d.layers["transformer.h.0.mlp.c_fc"]["l2"] == 0.0
    # the old dict interface still answers
    assert d["a"] == va.ref and d["unchanged"] == d.unchanged and "architecture" in d.to_dict()


def test_large_tensor_is_compared_chunk_by_chunk(repo: mh.Repository) -> None:
    rng = np.random.default_rng(1)
    big = rng.standard_normal((3_000_000,)).astype(np.float32)  # 12 MB: two chunks of at most 8 MB
    other = big.copy()
    other[::1000] += 1.0
    other[-5:] = 0.0
    va = repo.commit({"w": big}, "big")
    vb = repo.commit({"w": other}, "big")
    (c,) = repo.diff(va, vb).changed
    a, b = big.astype(np.float64), other.astype(np.float64)
    assert c["l2"] == pytest.approx(np.linalg.norm(b - a), rel=1e-9)
    assert c["max_abs"] == pytest.approx(np.abs(b - a).max())
    assert c["fraction_changed"] == pytest.approx(np.count_nonzero(big != other) / big.size)
    assert c["cosine"] == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), rel=1e-9)


def test_diff_across_models_fine_tune_against_its_base(repo: mh.Repository) -> None:
    rng = np.random.default_rng(0)
    base = {"enc.weight": rng.standard_normal((8, 4)).astype(np.float32), "head.weight": np.ones((2, 8), np.float32)}
    tuned = {**base, "head.weight": np.full((2, 8), 1.5, np.float32)}
    vb = repo.commit(base, "base", params={"lr": 0.001, "bs": 8}, metrics={"loss": [(0, 2.0), (10, 1.0)], "acc": 0.5})
    vt = repo.commit(
        tuned, "tuned", parents=["base@1"], params={"lr": 0.0001, "bs": 8}, metrics={"loss": [(10, 0.9), (20, 0.5)]}
    )
    d = repo.diff("base@1", "tuned")
    assert (d.a, d.b) == ("base@1", "tuned@1") and vt.parents == (vb.id,)
    assert [c["name"] for c in d.changed] == ["head.weight"]
    assert d.changed[0]["relative"] == pytest.approx(0.5) and d.changed[0]["cosine"] == pytest.approx(1.0)
    assert d.changed[0]["fraction_changed"] == 1.0 and d.changed[0]["max_abs"] == pytest.approx(0.5)
    assert d.unchanged == 1
    assert d.params == {"lr": {"from": 0.001, "to": 0.0001}}
    assert d.metrics == {"acc": {"a": 0.5, "b": None}, "loss": {"a": 1.0, "b": 0.5}}
    assert d.curves == {"loss": {"steps": [0, 10, 20], "a": [2.0, 1.0, None], "b": [None, 0.9, 0.5]}}


def test_diff_between_two_snapshots_of_one_version(repo: mh.Repository) -> None:
    rng = np.random.default_rng(2)
    at5 = {"a": rng.standard_normal((16, 8)).astype(np.float32), "b": np.zeros(8, np.float32)}
    at10 = {"a": at5["a"] * 0.9, "b": at5["b"]}
    v = repo.commit(at10, "run", step=10, snapshots={5: at5})
    d = repo.diff(v, v, snapshot_a=5, snapshot_b=10)
    assert (d.step_a, d.step_b) == (5, 10)
    assert [c["name"] for c in d.changed] == ["a"] and d.unchanged == 1
    x5 = repo.load(v, snapshot=5)["a"].astype(np.float64)
    x10 = repo.load(v)["a"].astype(np.float64)
    assert d.changed[0]["l2"] == pytest.approx(np.linalg.norm(x10 - x5), rel=1e-9)
    assert d.changed[0]["relative"] == pytest.approx(0.1, rel=1e-6)
    assert repo.diff(v, v).changed == [] and repo.diff(v, v).unchanged == 2
    with pytest.raises(mh.UsageError, match="no snapshot at step 7"):
        repo.diff(v, v, snapshot_a=7)


def test_added_removed_and_reshaped_tensors(repo: mh.Repository) -> None:
    va = repo.commit({"x.weight": np.ones((2, 3), np.float32), "gone": np.zeros(2, np.float32)}, "shapes")
    vb = repo.commit({"x.weight": np.ones((3, 3), np.float32), "new": np.zeros(4, np.float32)}, "shapes")
    d = repo.diff(va, vb)
    assert d.added == ["new"] and d.removed == ["gone"] and d.changed == []
    assert d.reshaped == [{"name": "x.weight", "from": ["float32", [2, 3]], "to": ["float32", [3, 3]]}]
    assert d.to_dict()["reshaped"] == d.reshaped


def test_a_damaged_tensor_is_reported_not_compared(repo: mh.Repository, repo_path: Path) -> None:
    rng = np.random.default_rng(3)
    va = repo.commit({"w": rng.standard_normal(1000).astype(np.float32)}, "m")
    vb = repo.commit({"w": rng.standard_normal(1000).astype(np.float32)}, "m")
    chunk = repo_path / "objects" / "tensors" / vb.tensors["w"].hash / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[-10] ^= 0xFF  # flip bits in the compressed payload
    chunk.write_bytes(bytes(data))
    fresh = mh.open(repo_path)
    with pytest.raises(mh.CorruptObject, match="m@2"):
        fresh.diff(va, vb)


def test_dlv_diff_names_the_inserted_block_and_pairs_renamed_tensors(
    repo_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbmodelhub import cli

    a = gpt2()
    b = insert_block(a, 2)
    with torch.no_grad():
        b.transformer.h[4].mlp.c_fc.weight.mul_(1.1)  # the old h.3, now h.4
    with mh.open(repo_path) as repo:
        repo.commit(a, "gpt2")
        repo.commit(b, "gpt2")
    capsys.readouterr()
    assert cli.main(["--repo", str(repo_path), "diff", "gpt2@1", "gpt2@2"]) == 0
    out = capsys.readouterr().out
    assert "  blocks added: transformer.h.2\n" in out and "layers removed" not in out
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("  transformer.h.4.mlp.c_fc.weight"))
    assert row[1:3] == ["(was", "transformer.h.3.mlp.c_fc.weight)"] and row[-1] == "10.0%"
    assert "unchanged: 51 tensors (23 under new names)" in out
    assert cli.main(["--repo", str(repo_path), "diff", "gpt2@1", "gpt2@2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in data["changed"]] == ["transformer.h.4.mlp.c_fc.weight"]
    assert data["changed"][0]["a_name"] == "transformer.h.3.mlp.c_fc.weight"
    assert data["architecture"]["groups_added"][0] == "transformer.h.2"
