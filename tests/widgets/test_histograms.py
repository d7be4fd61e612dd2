"""WeightHistograms: bins and counts built from real repositories, shared bins for two versions, the
static picture, and one clear error for bad input."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2

from nbmodelhub.errors import RefNotFound, UsageError
from nbmodelhub.widgets.histograms import WeightHistograms, edges_of


def _net(seed: int, wide: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8, 32 if wide else 4),
    )


@pytest.fixture
def two(repo):
    a = _net(0)
    repo.commit(a, name="net", message="base")
    b = _net(0)
    with torch.no_grad():
        b[0].weight.mul_(3.0)  # wider spread: B's range must set the shared bins
        b[0].weight[0, 0, 0, 0] = 7.5
    repo.commit(b, name="net", message="scaled conv")
    return repo, a, b


def _weights(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().astype(np.float64) for k, v in module.state_dict().items()}


def test_one_version_bins_every_float_tensor_over_its_range(two):
    repo, a, _ = two
    w = WeightHistograms.of(repo, "net@1", bins=32)
    weights = _weights(a)
    by_name = {t["name"]: t for t in w.data["tensors"]}
    # BatchNorm's integer step counter says nothing about weights: left out unless asked for.
    assert "1.num_batches_tracked" not in by_name
    assert set(by_name) == {k for k in weights if k != "1.num_batches_tracked"}
    assert w.data["refs"] == ["net@1"] and w.data["bins"] == 32
    for name, entry in by_name.items():
        x = weights[name]
        assert len(entry["counts"]) == 1 and len(entry["counts"][0]) == 32
        assert sum(entry["counts"][0]) == x.size
        assert entry["shape"] == list(x.shape)
        if x.min() < x.max():
            assert entry["lo"] == pytest.approx(x.min(), rel=1e-6) and entry["hi"] == pytest.approx(x.max(), rel=1e-6)
            expected, _ = np.histogram(x, bins=edges_of(entry, 32))
            assert np.abs(np.asarray(entry["counts"][0]) - expected).sum() <= 2  # float32 binning at edges
    assert by_name["0.weight"]["layer"] == "0" and by_name["4.bias"]["layer"] == "4"


def test_two_versions_share_bins_spanning_both(two):
    repo, a, b = two
    w = WeightHistograms.of(repo, ["net@1", "net@2"], bins=64)
    entry = next(t for t in w.data["tensors"] if t["name"] == "0.weight")
    wa, wb = _weights(a)["0.weight"], _weights(b)["0.weight"]
    assert entry["lo"] == pytest.approx(min(wa.min(), wb.min()), rel=1e-6)
    assert entry["hi"] == pytest.approx(7.5, rel=1e-6)
    edges = edges_of(entry, 64)
    for counts, x in zip(entry["counts"], (wa, wb), strict=True):
        assert sum(counts) == x.size
        expected, _ = np.histogram(x, bins=edges)
        assert np.abs(np.asarray(counts) - expected).sum() <= 2
    # A's narrower weights crowd into the middle bins of the shared range; B reaches the last bin.
    assert entry["counts"][0][-1] == 0 and entry["counts"][1][-1] >= 1
    same = next(t for t in w.data["tensors"] if t["name"] == "4.weight")
    assert same["counts"][0] == same["counts"][1]


def test_a_tensor_only_one_version_has(repo):
    repo.commit(_net(0), name="net")
    repo.commit(_net(0, wide=True), name="net", message="wider head")
    extra = torch.nn.Sequential(torch.nn.Linear(4, 4))
    repo.commit(extra, name="other")
    w = WeightHistograms.of(repo, ["net@2", "other@1"])
    by_name = {t["name"]: t for t in w.data["tensors"]}
    assert by_name["0.weight"]["counts"][0] is not None
    assert by_name["0.weight"]["counts"][1] is not None  # both have a "0.weight" (different shapes)
    assert by_name["4.weight"]["counts"][1] is None and sum(by_name["4.weight"]["counts"][0]) == 32 * 8
    assert by_name["4.weight"]["shape"] == [32, 8]


def test_layers_select_by_layer_path_glob_or_name(two):
    repo, _, _ = two
    names = lambda w: [t["name"] for t in w.data["tensors"]]  # noqa: E731
    assert sorted(names(WeightHistograms.of(repo, "net@1", layers="0"))) == ["0.bias", "0.weight"]
    assert sorted(names(WeightHistograms.of(repo, "net@1", layers=["*.bias"]))) == ["0.bias", "1.bias", "4.bias"]
    asked = WeightHistograms.of(repo, "net@1", layers=["1.num_batches_tracked", "4.weight"])
    assert names(asked) == ["1.num_batches_tracked", "4.weight"]


def test_gpt2_tied_weights_and_blocks(repo):
    repo.commit(tiny_gpt2(), name="gpt2")
    w = WeightHistograms.of(repo, "gpt2", layers="transformer.h.0")
    names = [t["name"] for t in w.data["tensors"]]
    assert names and all(n.startswith("transformer.h.0.") for n in names)
    assert "transformer.h.0.attn.c_attn.weight" in names
    every = WeightHistograms.of(repo, "gpt2", bins=16)
    # The tied lm_head is the embedding, stored once: shown once, not twice.
    assert sum(t["name"] in ("lm_head.weight", "transformer.wte.weight") for t in every.data["tensors"]) == 1
    assert every.data_bytes() < 60_000


@pytest.mark.parametrize(
    ("refs", "kwargs", "message"),
    [
        (["net@1", "net@2", "net@1"], {}, "one version or two"),
        ([], {}, "one version or two"),
        ("net@1", {"bins": 0}, "bins must be"),
        ("net@1", {"bins": 2.5}, "bins must be"),
        ("net@1", {"layers": ["conv9"]}, "no tensor or layer 'conv9'"),
        ("net@1", {"layers": ["0.wieght"]}, "closest: 0.weight"),
        ("net@1", {"layers": []}, "layers is empty"),
    ],
)
def test_bad_input_is_one_clear_error(two, refs, kwargs, message):
    repo, _, _ = two
    with pytest.raises(UsageError, match=message):
        WeightHistograms.of(repo, refs, **kwargs)


def test_unknown_version(two):
    repo, _, _ = two
    with pytest.raises(RefNotFound, match="net@9"):
        WeightHistograms.of(repo, ["net@1", "net@9"])


def test_static_picture_is_a_png_of_small_multiples(two):
    repo, _, _ = two
    w = WeightHistograms.of(repo, ["net@1", "net@2"])
    bundle, _ = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    png = base64.b64decode(bundle["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    image = imread(io.BytesIO(png), format="png")
    # 6 tensors → two rows of up to four panels: wider than tall, and more than a thumbnail.
    assert image.shape[1] > image.shape[0] > 200
    # Not a blank canvas: the filled histograms put plenty of non-white pixels on it.
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.03


# -- the chart library (js/src/lib/charts.ts): its pure parts, run in node ----------------------------

ROOT = Path(__file__).resolve().parents[2]
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"


def _run_charts(tmp_path: Path, script: str) -> Any:
    """Bundle charts.ts for node and run ``script`` (which sees its exports as ``charts``)."""
    if shutil.which("node") is None or not ESBUILD.exists():
        pytest.skip("node and the npm packages are needed (./dev install)")
    bundle = tmp_path / "charts.mjs"
    subprocess.run([str(ESBUILD), str(ROOT / "js/src/lib/charts.ts"), "--bundle", "--format=esm",
                    "--platform=node", f"--outfile={bundle}", "--log-level=error"], check=True)
    main = tmp_path / "main.mjs"
    main.write_text(f"import * as charts from {json.dumps(bundle.as_uri())};\n"
                    f"console.log(JSON.stringify((() => {{ {script} }})()));\n")
    out = subprocess.run(["node", str(main)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_nice_ticks(tmp_path):
    got = _run_charts(tmp_path, """
        return [charts.niceTicks(0, 1, 5), charts.niceTicks(-0.73, 0.41, 4), charts.niceTicks(3, 99870, 5),
                charts.niceTicks(1e-7, 3e-7, 4)];""")
    assert got[0] == [0, 0.2, 0.4, 0.6, 0.8, 1]
    for ticks, (lo, hi) in zip(got[1:], [(-0.73, 0.41), (3, 99870), (1e-7, 3e-7)], strict=True):
        assert 3 <= len(ticks) <= 9 and lo <= ticks[0] and ticks[-1] <= hi
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6  # a 1-2-5 step
        assert np.allclose(np.diff(ticks), step)


def test_decimated_line_keeps_spikes_and_stays_small(tmp_path):
    # 100,000 points on 600 pixel columns: ~4 points per column survive, and so does a one-point spike.
    got = _run_charts(tmp_path, """
        const n = 100000, xs = [], ys = [];
        for (let i = 0; i < n; i++) { xs.push(i); ys.push(Math.sin(i / 500) + (i === 54321 ? 40 : 0)); }
        ys[70000] = NaN;
        const sx = (x) => x / n * 600, sy = (y) => 200 - y * 4;
        const d = charts.decimatedPath(xs, ys, sx, sy, 600);
        const small = charts.decimatedPath([0, 1, 2], [1, 2, 3], sx, sy, 600);
        return {d, small};""")
    d = got["d"]
    commands = re.findall(r"[ML]([-\d.]+),([-\d.]+)", d)
    assert len(commands) <= 4 * 600 + 8
    assert min(float(y) for _, y in commands) == pytest.approx(200 - 41 * 4, abs=4)  # the spike is drawn
    assert d.count("M") == 2  # the NaN breaks the line once
    assert got["small"] == "M0.0,196.0L0.0,192.0L0.0,188.0"
