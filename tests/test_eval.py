"""Evaluations: recorded beside an immutable version, shown by list/desc/diff, kept by gc."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import all_files, small_mlp

import nbmodelhub as mh
from nbmodelhub import cli


def accuracy(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    x, y = data
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    return {"acc": float((pred == y).float().mean()), "n": len(y)}


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 8, generator=g), torch.randint(0, 4, (32,), generator=g)


def versions_state(path: Path) -> dict[str, bytes]:
    """Everything that defines the versions: their records and their refs."""
    return {k: v for k, v in all_files(path).items() if k.startswith(("objects/versions/", "refs/models/m/versions/"))}


def test_eval_records_an_evaluation_shown_everywhere_and_leaves_the_version_alone(
    repo: mh.Repository, repo_path: Path
) -> None:
    model = small_mlp(0)
    v1 = repo.commit(model, "m", metrics={"train_acc": 0.4})
    repo.commit(small_mlp(1), "m")
    before = versions_state(repo_path)
    record_before = (repo_path / "objects" / "versions" / v1.id / "zarr.json").read_bytes()

    other = small_mlp(5)  # other weights: eval must check v1 out into it first
    e = repo.eval(v1, accuracy, module=other, data=batch())
    x, y = batch()
    with torch.no_grad():
        want = float((model(x).argmax(dim=1) == y).float().mean())
    assert e.metrics == {"acc": want, "n": 32}
    assert e.ref == "m@1" and e.version == v1.id and e.function == "accuracy" and e.data == "tuple of 2"
    assert torch.equal(other[0].weight, model[0].weight)

    assert (repo_path / "objects" / "versions" / v1.id / "zarr.json").read_bytes() == record_before
    assert versions_state(repo_path) == before
    assert repo.get("m@1") == v1  # the version record, as read back, is unchanged

    fresh = mh.open(repo_path)
    assert [ev.to_dict() for ev in fresh.evaluations("m@1")] == [e.to_dict()]
    assert fresh.evaluations("m@2") == []
    assert fresh.describe("m@1", stats=False)["evaluations"] == [e.to_dict()]
    d = fresh.diff("m@1", "m@2")
    assert d.evaluations["a"] == [e.to_dict()] and d.evaluations["b"] == []
    assert d.evaluations["metrics"] == {"acc": {"a": want, "b": None}, "n": {"a": 32, "b": None}}

    # a second evaluation is added, the first kept; without a module fn gets the torch state dict
    e2 = fresh.eval("m@2", lambda state, data: {"keys": len(state), "sum": float(state["0.weight"].sum())})
    assert e2.metrics["keys"] == 4 and e2.metrics["sum"] == pytest.approx(float(small_mlp(1)[0].weight.detach().sum()))
    assert fresh.diff("m@1", "m@2").evaluations["metrics"]["keys"] == {"a": None, "b": 4}
    assert versions_state(repo_path) == before


def test_a_failing_function_gives_one_clear_error_and_records_nothing(repo: mh.Repository, repo_path: Path) -> None:
    v = repo.commit(small_mlp(), "m")
    before = all_files(repo_path)

    def broken(model: Any, data: Any) -> dict[str, float]:
        raise ValueError("labels and predictions differ in length")

    with pytest.raises(mh.ModelHubError) as info:
        repo.eval(v, broken, data=[1, 2, 3])
    message = str(info.value)
    assert "m@1" in message and "broken" in message and "labels and predictions differ in length" in message
    assert "\n" not in message
    with pytest.raises(mh.ModelHubError, match="must return a dict"):
        repo.eval(v, lambda m, d: 0.5)
    with pytest.raises(mh.ModelHubError, match="metric acc must be a number"):
        repo.eval(v, lambda m, d: {"acc": "high"})
    with pytest.raises(mh.UsageError, match="fn must be a function"):
        repo.eval(v, "accuracy")  # type: ignore[arg-type]
    assert all_files(repo_path) == before
    assert repo.evaluations(v) == []


def test_gc_keeps_evaluations_of_live_versions_only(repo: mh.Repository, repo_path: Path) -> None:
    v1 = repo.commit(small_mlp(0), "m")
    v2 = repo.commit(small_mlp(1), "m")
    e1 = repo.eval(v1, lambda s, d: {"x": 1.0})
    e2 = repo.eval(v2, lambda s, d: {"x": 2.0})
    evals = repo_path / "objects" / "evals"
    assert {p.name for p in evals.iterdir() if p.is_dir()} == {e1.id, e2.id}
    repo.gc()
    assert {p.name for p in evals.iterdir() if p.is_dir()} == {e1.id, e2.id}
    assert [e.metrics for e in mh.open(repo_path).evaluations(v1)] == [{"x": 1.0}]
    repo.delete(v2)
    report = repo.gc()
    assert report.removed.get("evals") == 1
    assert {p.name for p in evals.iterdir() if p.is_dir()} == {e1.id}
    assert mh.open(repo_path).fsck().ok


def test_dlv_eval_runs_a_function_from_the_users_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_path = tmp_path / "repo"
    with mh.open(repo_path) as repo:
        repo.commit({"w": np.arange(6, dtype=np.float32)}, "m")
        repo.commit({"w": np.arange(6, dtype=np.float32) * 2}, "m")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "helpers.py").write_text("SCALE = 10\n")
    (scripts / "evaluate.py").write_text(
        textwrap.dedent(
            """
            from helpers import SCALE  # the script's own folder is importable, as with `python evaluate.py`

            def total(state, data):
                return {"total": float(state["w"].sum()) * SCALE, "main": int(__name__ == "__main__")}

            def oops(state, data):
                return {"total": 1 / 0}
            """
        )
    )
    monkeypatch.chdir(tmp_path)

    def dlv(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(["--repo", str(repo_path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    script = str(scripts / "evaluate.py")
    code, out, _ = dlv("eval", "m@2", "--script", script, "--function", "total", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["metrics"] == {"total": 300.0, "main": 1} and data["ref"] == "m@2" and data["function"] == "total"
    code, out, _ = dlv("eval", "m@1", "--script", script, "--function", "total")
    assert code == 0 and out.startswith("evaluated m@1 with total") and "150" in out

    code, out, _ = dlv("list")
    header = out.splitlines()[0].split()
    assert header[-2:] == ["evaluated", "tags"]
    row = next(ln for ln in out.splitlines() if ln.startswith("m@2 "))
    assert "total=300" in row
    assert "evaluation" in dlv("desc", "m@2", "--no-stats")[1]
    code, out, _ = dlv("diff", "m@1", "m@2")
    evaluated = next(ln for ln in out.splitlines() if ln.startswith("total"))
    assert evaluated.split() == ["total", "150", "300"]

    code, _, err = dlv("eval", "m@1", "--script", script, "--function", "oops")
    assert code == 1 and err.count("\n") == 1 and "ZeroDivisionError" in err and "nothing was recorded" in err
    code, _, err = dlv("eval", "m@1", "--script", script, "--function", "missing")
    assert code == 2 and "defines no function 'missing'" in err and "total" in err
    with mh.open(repo_path) as repo:
        assert [e.metrics["total"] for e in repo.evaluations("m@1")] == [150.0]
