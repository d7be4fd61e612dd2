"""Committing an ONNX file and a Hugging Face-format folder: weights and the layer graph come from the files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

import nbmodelhub as mh


def test_onnx_file_commits_its_initializers_and_op_graph(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)
    repo = mh.open(tmp_path / "repo")
    version = repo.commit(path, name="cnn")
    loaded = repo.load(version)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    # The exporter may rename initializers; every one of the model's arrays must be there bit-exactly.
    stored = {a.tobytes() for a in loaded.values()}
    assert all(a.tobytes() in stored for a in state.values())
    graph = repo.graph(version)
    assert graph.source == "onnx"
    types = graph.summary()["by_type"]
    assert "Conv" in types and "Relu" in types
    assert graph.graph.number_of_edges() >= 3


def test_broken_onnx_file_is_refused_and_changes_nothing(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x08\x07not a protobuf at all")
    repo = mh.open(tmp_path / "repo")
    with pytest.raises(mh.UsageError, match="ONNX"):
        repo.commit(path, name="bad")
    assert repo.models() == []


def test_hugging_face_folder_commits_all_shards_with_config_attributes(tmp_path):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    model = GPT2LMHeadModel(config)
    folder = tmp_path / "gpt2-tiny"
    model.save_pretrained(folder)
    repo = mh.open(tmp_path / "repo")
    version = repo.commit(folder, name="gpt2-tiny")
    loaded = repo.load(version)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # save_pretrained drops the tied name, as Hugging Face does
            continue
        np.testing.assert_array_equal(loaded[name], tensor.numpy())
    graph = repo.graph(version)
    assert graph.source == "names"
    assert graph.attrs["config"]["num_layers"] == 2 and graph.attrs["config"]["hidden_size"] == 32
    assert any(gid.startswith("transformer.h.1") for gid in graph.groups)


def test_folder_without_weights_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    repo = mh.open(tmp_path / "repo")
    with pytest.raises(mh.UsageError, match="safetensors"):
        repo.commit(tmp_path / "empty", name="x")
