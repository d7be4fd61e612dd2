"""Progressive evaluation: high-order planes first, low-order planes only when an answer is not decided."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import reopen

from nbmodelhub.cli import main as dlv
from nbmodelhub.errors import ModelHubError


def classifier(seed: int = 0, tie: bool = False) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5))
    if tie:  # classes 0 and 1 score identically: no approximation can decide between them
        with torch.no_grad():
            model[2].weight[1] = model[2].weight[0]
            model[2].bias[1] = model[2].bias[0] + 1e-6
    return model


def data(n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, 16, generator=g), torch.randint(0, 5, (n,), generator=g)


def scores(model, batch):
    x, y = batch
    with torch.no_grad():
        return {"scores": model(x), "labels": y}


@pytest.fixture
def archived_classifiers(repo):
    repo.commit(classifier(0), "clf")
    repo.commit(classifier(0, tie=True), "tied")
    repo.archive(None)
    return repo


def test_decided_examples_need_only_the_high_planes(archived_classifiers):
    repo = archived_classifiers
    ev = repo.eval("clf", scores, module=classifier(1), data=data(20), progressive=True)
    m = ev.metrics
    assert m["examples"] == 20
    assert m["decided_early"] == 1.0  # these 20 have clear winners
    assert m["agreement"] == 1.0
    full = classifier(0)
    x, y = data(20)
    assert m["full_accuracy"] == pytest.approx(float((full(x).argmax(1) == y).float().mean()))
    assert m["accuracy"] == m["full_accuracy"]
    assert m["bytes_read"] < 0.6 * m["full_read_bytes"]  # the low-order planes were never read
    assert "progressive" in ev.function
    assert repo.evaluations("clf")[-1].metrics["agreement"] == 1.0


def test_undecided_examples_read_the_low_planes_and_agree(archived_classifiers):
    repo = archived_classifiers
    m = repo.eval("tied", scores, data=data(), module=classifier(2), progressive=True).metrics
    assert m["decided_early"] < 1.0
    assert m["bytes_read"] == m["full_read_bytes"]  # high planes once, then only the low ones
    assert m["agreement"] == 1.0


def test_progressive_with_a_state_dict_and_plain_scores(archived_classifiers):
    def fn(state, batch):
        model = classifier(3)
        model.load_state_dict(state)
        with torch.no_grad():
            return model(batch[0]).numpy()

    m = archived_classifiers.eval("clf", fn, data=data(50), progressive=True).metrics
    assert m["examples"] == 50 and "accuracy" not in m
    assert m["agreement"] == 1.0


def test_progressive_bad_scores_are_one_clear_error(archived_classifiers):
    with pytest.raises(ModelHubError, match="examples, classes"):
        archived_classifiers.eval("clf", lambda m, d: {"scores": np.zeros(3)}, module=classifier(), progressive=True)
    with pytest.raises(ModelHubError, match="precision"):
        archived_classifiers.eval("clf", scores, module=classifier(), data=data(), progressive=True, precision="fp8")
    assert archived_classifiers.evaluations("clf") == []


def test_cli_eval_progressive(archived_classifiers, repo_path, tmp_path, capsys):
    script = tmp_path / "ev.py"
    script.write_text(
        "import torch\n"
        "def model():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5))\n"
        "def batch():\n"
        "    g = torch.Generator().manual_seed(7)\n"
        "    return torch.randn(100, 16, generator=g)\n"
        "def scores(m, x):\n"
        "    with torch.no_grad():\n"
        "        return m(x)\n"
    )
    archived_classifiers.close()
    args = [
        "--repo",
        str(repo_path),
        "--json",
        "eval",
        "clf",
        "--script",
        str(script),
        "--function",
        "scores",
        "--module",
        "model",
        "--data",
        "batch",
        "--progressive",
    ]
    assert dlv(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"]["agreement"] == 1.0
    assert out["metrics"]["examples"] == 100
    assert reopen(repo_path).fsck().ok
