"""`dlv import`: Hugging Face folders (also through the local HF cache), ONNX, safetensors and .pt files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import all_files, assert_bit_identical, tiny_gpt2
from torch import nn

import nbmodelhub as mh
from nbmodelhub.cli import main
from nbmodelhub.errors import UsageError


def hf_folder(tmp_path: Path, seed: int = 0) -> tuple[nn.Module, Path]:
    model = tiny_gpt2(seed)
    folder = tmp_path / "gpt2-tiny"
    model.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [tiny]\n---\n# gpt2-tiny\n\nA tiny GPT-2 for tests.\n")
    return model, folder


def fake_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str = "0123456789abcdef") -> None:
    """huggingface_hub's cache layout: blobs named by hash, snapshot files linking to them, refs/main."""
    base = cache / ("models--" + repo_id.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (base / "blobs").mkdir()
    for i, file in enumerate(sorted(folder.iterdir())):
        blob = base / "blobs" / f"blob{i}"
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)


def test_hugging_face_gpt2_folder_gives_the_traced_graph_and_bit_exact_tensors(tmp_path):
    model, folder = hf_folder(tmp_path)
    repo = mh.open(tmp_path / "repo")
    version = repo.import_model(folder, "gpt2")

    state = model.state_dict()
    loaded = repo.load(version, framework="torch")
    assert sorted(loaded) == sorted(state)  # lm_head.weight is back, as the tie the file leaves out
    for name, tensor in state.items():
        assert_bit_identical(tensor, loaded[name])
    assert version.ties == {"lm_head.weight": "transformer.wte.weight"}

    graph = repo.graph(version)
    reference = repo.graph(repo.commit(model, name="gpt2-module"))  # the module traced directly
    assert graph.source == reference.source and graph.summary()["traced"]
    assert sorted(graph.graph.nodes) == sorted(reference.graph.nodes)
    assert sorted(graph.graph.edges) == sorted(reference.graph.edges)
    assert graph.summary()["by_type"] == reference.summary()["by_type"]

    # The original files are the version's files, byte for byte.
    assert sorted(f.name for f in version.files) == sorted(p.name for p in folder.iterdir())
    out = tmp_path / "out"
    repo.pull_files(version, out)
    for file in folder.iterdir():
        assert (out / file.name).read_bytes() == file.read_bytes()
    card = repo.card(version)
    assert card.license == "mit" and "A tiny GPT-2 for tests." in card.description


def test_hf_ref_resolves_through_the_local_cache_without_network(tmp_path, monkeypatch):
    model, folder = hf_folder(tmp_path)
    cache = tmp_path / "hf-cache"
    fake_hf_cache(cache, "tests/gpt2-tiny", folder)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = mh.open(tmp_path / "repo")
    version = repo.import_model("hf://tests/gpt2-tiny", "gpt2")
    assert version.message == "import hf://tests/gpt2-tiny"
    assert sorted(f.name for f in version.files) == sorted(p.name for p in folder.iterdir())
    assert_bit_identical(model.state_dict()["transformer.h.1.mlp.c_fc.weight"],
                         repo.load(version, framework="torch")["transformer.h.1.mlp.c_fc.weight"])  # fmt: skip

    with pytest.raises(UsageError, match="not in the local Hugging Face cache"):
        repo.import_model("hf://tests/absent-model", "absent")
    assert repo.models() == ["gpt2"]


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def test_onnx_export_of_a_small_cnn_gives_its_op_graph_and_bit_exact_tensors(tmp_path):
    import onnx
    from onnx import numpy_helper

    torch.manual_seed(0)
    model = SmallCNN().eval()
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)
    repo = mh.open(tmp_path / "repo")
    version = repo.import_model(path, "cnn")

    proto = onnx.load(str(path))
    initializers = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    loaded = repo.load(version)
    assert sorted(loaded) == sorted(initializers)
    for name, array in initializers.items():
        assert_bit_identical(array, loaded[name])
    for name, tensor in model.state_dict().items():  # the exporter kept torch's names and bits
        assert_bit_identical(tensor, repo.load(version, framework="torch")[name])

    graph = repo.graph(version)
    ops = [a.get("type") for _, a in graph.graph.nodes(data=True)]
    assert graph.source == "onnx"
    assert ops.count("Conv") == 2 and ops.count("Relu") == 2 and "Gemm" in ops
    assert [f.name for f in version.files] == ["cnn.onnx"]
    assert repo.store.get_file(version.files[0].hash, version.files[0].size, "cnn.onnx") == path.read_bytes()


def test_safetensors_and_pt_files_import_bit_exact(tmp_path):
    from safetensors.torch import save_file

    state = {"a": torch.randn(4, 5), "b": torch.arange(6, dtype=torch.int64), "c": torch.randn(3).to(torch.bfloat16)}
    save_file(state, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pt")
    repo = mh.open(tmp_path / "repo")
    for file, name in (("w.safetensors", "st"), ("w.pt", "pt")):
        version = repo.import_model(tmp_path / file, name)
        loaded = repo.load(version, framework="torch")
        for key, tensor in state.items():
            assert_bit_identical(tensor, loaded[key])
        assert [f.name for f in version.files] == [file]


def test_pickled_code_in_a_pt_file_is_refused_and_nothing_is_stored(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    torch.save({"w": torch.zeros(2), "evil": Payload()}, tmp_path / "bad.pt")
    repo = mh.open(tmp_path / "repo")
    before = all_files(tmp_path / "repo")
    with pytest.raises(UsageError, match="weights-only"):
        repo.import_model(tmp_path / "bad.pt", "bad")
    assert all_files(tmp_path / "repo") == before


def test_https_download_is_cached_under_the_repository(tmp_path, http_server, monkeypatch):
    from safetensors.numpy import save_file

    served = tmp_path / "served"
    served.mkdir()
    weights = {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}
    save_file(weights, served / "model.safetensors")
    base = http_server(served)
    repo = mh.open(tmp_path / "repo")
    first = repo.import_model(f"{base}/model.safetensors", "web")
    cached = list((tmp_path / "repo" / "downloads").rglob("model.safetensors"))
    assert len(cached) == 1 and cached[0].read_bytes() == (served / "model.safetensors").read_bytes()
    (served / "model.safetensors").unlink()  # a second import needs no network
    second = repo.import_model(f"{base}/model.safetensors", "web")
    assert second.tensors == first.tensors
    assert_bit_identical(weights["w"], repo.load(second)["w"])
    with pytest.raises(UsageError, match="cannot download"):
        repo.import_model(f"{base}/other.safetensors", "web")


def test_cli_import_prints_one_line_and_refuses_bad_sources(tmp_path, capsys):
    _, folder = hf_folder(tmp_path)
    repo_path = str(tmp_path / "repo")
    assert main(["--repo", repo_path, "import", str(folder), "-n", "gpt2", "--params", "source=hf"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("imported ") and "gpt2@1" in out and "traced layer graph" in out
    assert mh.open(repo_path).get("gpt2").params == {"source": "hf"}
    assert main(["--repo", repo_path, "import", str(tmp_path / "nothing-here"), "-n", "x"]) == 2
    assert main(["--repo", repo_path, "import", str(folder / "config.json"), "-n", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "no such file or folder" in err and "cannot import config.json" in err
