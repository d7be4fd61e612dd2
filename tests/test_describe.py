"""describe and histograms: streamed statistics must equal numpy's on the loaded arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import counting_repo

import nbmodelhub as mh
from nbmodelhub.analysis import version_edges


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sparse = rng.standard_normal((64, 32)).astype(np.float32)
    sparse[rng.random(sparse.shape) < 0.3] = 0.0
    return {
        # 3M float32 = 12 MB: two chunks, so moments are merged across chunks
        "enc.weight": (rng.standard_normal((3_000, 1_000)) * 0.02 + 0.5).astype(np.float32),
        "enc.bias": np.zeros(1_000, np.float32),
        "head.weight": sparse,
        "head.bias": np.full(32, 1.0, np.float32),  # constant: numpy's ±0.5 bin range
        "norm.weight": rng.standard_normal(32).astype(np.float16),
    }


def numpy_stats(x: np.ndarray) -> dict[str, float]:
    x = x.astype(np.float64).reshape(-1)
    return {
        "mean": x.mean(),
        "std": x.std(),
        "min": x.min(),
        "max": x.max(),
        "sparsity": np.mean(x == 0),
        "l2": np.linalg.norm(x),
    }


def assert_stats(got: dict[str, float], x: np.ndarray) -> None:
    want = numpy_stats(x)
    assert got["count"] == x.size
    for key in ("mean", "std", "l2"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    for key in ("min", "max", "sparsity"):
        assert got[key] == want[key], key


def test_describe_stats_and_layer_histograms_equal_numpy(repo: mh.Repository) -> None:
    w = weights()
    v = repo.commit(w, "m", metrics={"loss": [(1, 2.0), (2, 1.5)]})
    info = repo.describe(v, bins=32)
    layers = {layer["layer"]: layer for layer in info["layers"]}
    assert list(layers) == ["enc", "head", "norm"]
    assert info["parameters"] == sum(x.size for x in w.values()) == layers["enc"]["parameters"] + 2_048 + 32 + 32
    assert info["bytes"] == sum(x.nbytes for x in w.values())
    assert info["footprint"]["parameter_bytes"] == info["bytes"] and info["footprint"]["activation_bytes"] is None
    assert info["graph"]["source"] == "names" and info["graph"]["parameters"] == info["parameters"]
    assert info["curves"] == {"loss": [[1, 2.0], [2, 1.5]]} and info["evaluations"] == []

    for name, x in w.items():
        layer, _, param = name.rpartition(".")
        t = layers[layer]["tensors"][param]
        assert t["name"] == name and t["dtype"] == str(x.dtype) and t["shape"] == list(x.shape)
        assert_stats(t, x)
    for layer, entry in layers.items():
        values = np.concatenate([x.astype(np.float64).reshape(-1) for n, x in w.items() if n.startswith(layer + ".")])
        assert_stats(entry["stats"], values)
        hist = entry["histogram"]
        assert len(hist["edges"]) == 33 and sum(hist["counts"]) == values.size == entry["parameters"]
        want, edges = np.histogram(values, bins=32)
        np.testing.assert_allclose(hist["edges"], edges, rtol=1e-12)
        assert hist["counts"] == want.tolist()
    assert layers["head"]["tensors"]["weight"]["sparsity"] > 0.25


def test_describe_of_bfloat16_weights_reads_their_values(repo: mh.Repository) -> None:
    torch.manual_seed(0)
    w = {"lin.weight": torch.randn(64, 16).to(torch.bfloat16)}
    v = repo.commit(w, "bf")
    t = repo.describe(v)["layers"][0]["tensors"]["weight"]
    assert t["dtype"] == "bfloat16"
    assert_stats(t, w["lin.weight"].float().numpy())


def test_histograms_of_two_versions_on_shared_edges_overlay(repo: mh.Repository) -> None:
    w = weights()
    va = repo.commit(w, "m")
    vb = repo.commit({**w, "enc.weight": w["enc.weight"] * 2.0, "extra": np.arange(5, dtype=np.float32)}, "m")
    edges = version_edges(repo, va, vb, bins=16)
    assert set(edges) == set(w)  # the names both versions have
    lo = min(w["enc.weight"].min(), (w["enc.weight"] * 2).min())
    hi = max(w["enc.weight"].max(), (w["enc.weight"] * 2).max())
    assert edges["enc.weight"][0] == lo and edges["enc.weight"][-1] == pytest.approx(hi, rel=1e-12)
    ha = repo.histograms(va, edges=edges)
    hb = repo.histograms(vb, names=list(edges), edges=edges)
    for name, x in w.items():
        assert ha[name]["edges"] == hb[name]["edges"] == edges[name]
        assert sum(ha[name]["counts"]) == x.size and sum(hb[name]["counts"]) == x.size
        assert ha[name]["counts"] == np.histogram(x.astype(np.float64), edges[name])[0].tolist()
    assert ha["enc.bias"] == hb["enc.bias"]  # unchanged tensor, same bins: same counts
    assert ha["enc.weight"]["counts"] != hb["enc.weight"]["counts"]
    assert "below" not in ha["enc.weight"] and "above" not in hb["enc.weight"]


def test_histograms_on_given_edges_count_what_falls_outside(repo: mh.Repository) -> None:
    x = np.linspace(-2.0, 2.0, 401, dtype=np.float32)
    v = repo.commit({"w": x, "v": x * 10}, "m")
    h = repo.histograms(v, names="w", edges=[-1.0, 0.0, 1.0])["w"]
    assert h["counts"] == np.histogram(x, [-1.0, 0.0, 1.0])[0].tolist() == [100, 101]
    assert (h["below"], h["above"]) == (100, 100)
    own = repo.histograms(v, names=["v"], bins=4)["v"]  # its own range, found by a first pass
    assert own["edges"] == pytest.approx([-20.0, -10.0, 0.0, 10.0, 20.0]) and sum(own["counts"]) == 401
    with pytest.raises(mh.UsageError, match="bin edges"):
        repo.histograms(v, edges=[1.0, 0.0])
    with pytest.raises(mh.UsageError, match="no tensor 'nope'"):
        repo.histograms(v, names=["nope"])


def test_histogram_of_a_large_tensor_streams_over_chunks(repo: mh.Repository) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal(5_000_000).astype(np.float32)  # 20 MB: three chunks
    v = repo.commit({"big": x}, "big")
    h = repo.histograms(v, bins=64)["big"]
    want, edges = np.histogram(x.astype(np.float64), bins=64)
    np.testing.assert_allclose(h["edges"], edges, rtol=1e-12)
    # float32 binning may put a value within one float32 rounding of an edge into the next bin,
    assert sum(h["counts"]) == x.size
    # so the cumulative counts may differ by a handful at an edge, never more
    assert np.abs(np.cumsum(h["counts"]) - np.cumsum(want)).max() <= 5


def test_describe_gpt2_with_module_measures_the_forward(repo: mh.Repository) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=32)
    model = GPT2LMHeadModel(config).eval()
    v = repo.commit(model, "gpt2")
    fresh = GPT2LMHeadModel(config).eval()  # other random weights: describe checks the version out into it
    info = repo.describe(v, bins=8, module=fresh, example_input=torch.randint(0, 100, (1, 16)))
    assert torch.equal(fresh.transformer.h[0].attn.c_attn.weight, model.transformer.h[0].attn.c_attn.weight)
    fp = info["footprint"]
    assert fp["activation_bytes"] > 16 * 64 * 4 * 2 * 6 and fp["forward_seconds"] > 0
    assert info["graph"]["traced"] and info["graph"]["by_type"]["LayerNorm"] == 5
    layers = {layer["layer"]: layer for layer in info["layers"]}
    c_attn = layers["transformer.h.0.attn.c_attn"]
    assert c_attn["type"] == "Conv1D" and c_attn["parameters"] == 64 * 192 + 192
    assert set(c_attn["tensors"]) == {"weight", "bias"}
    assert "lm_head" not in layers and info["ties"] == {"lm_head.weight": "transformer.wte.weight"}
    assert sum(layer["parameters"] for layer in info["layers"]) == info["parameters"]
    with pytest.raises(mh.UsageError, match="example_input needs module"):
        repo.describe(v, example_input=torch.zeros(1, 4, dtype=torch.long))


def test_describe_without_stats_reads_no_weights(repo_path: Path) -> None:
    repo, store = counting_repo(repo_path)
    v = repo.commit(weights(), "m")
    store.reset()
    info = repo.describe(v, stats=False)
    assert [layer["layer"] for layer in info["layers"]] == ["enc", "head", "norm"]
    assert "stats" not in info["layers"][0] and "histogram" not in info["layers"][0]
    assert not [k for k in store.reads if k.startswith("objects/tensors/")]
    store.reset()
    repo.describe(v, bins=0)  # statistics, no histograms: one pass over each tensor
    enc = v.tensors["enc.weight"].hash
    assert store.reads[f"objects/tensors/{enc}/c/0/0"] == 1


def test_histograms_of_a_damaged_tensor_report_it(repo: mh.Repository, repo_path: Path) -> None:
    rng = np.random.default_rng(6)
    v = repo.commit({"w": rng.standard_normal(3_000_000).astype(np.float32)}, "m")
    chunk = repo_path / "objects" / "tensors" / v.tensors["w"].hash / "c" / "1"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the second chunk
    chunk.write_bytes(bytes(data))
    fresh = mh.open(repo_path)
    with pytest.raises(mh.CorruptObject, match="m@1: tensor 'w'"):
        fresh.histograms(v, bins=16)
    with pytest.raises(mh.CorruptObject, match="m@1: tensor 'w'"):
        fresh.describe(v)
