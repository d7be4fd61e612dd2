"""Runs in one process: what a run records, how it ends, how an interrupted one is recovered."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_state_equal, small_mlp, state_of, tensor_objects

import nbmodelhub as mh
from nbmodelhub.errors import RefNotFound, UsageError
from nbmodelhub.tracking.journal import RunBusy, read_events


def nudge(model: torch.nn.Module, layer: int = 0) -> None:
    with torch.no_grad():
        model[layer].weight.add_(0.01)


def test_a_run_commits_params_curves_and_snapshots(repo: mh.Repository) -> None:
    base = repo.commit(small_mlp(), "mlp", message="base")
    net = small_mlp(1)
    with mh.run("mlp", params={"lr": 0.1, "opt": "sgd"}, parent="mlp@1", repo=repo, message="sweep") as run:
        for step in range(30):
            run.log(step, loss=1.0 / (step + 1), acc=np.float32(step / 30))
            if step % 10 == 0:
                run.snapshot(net, step)
            nudge(net)
        final = state_of(net)
        run.snapshot(net)  # at the last logged step
    v = run.version
    assert v is not None and v.ref == "mlp@2" and run.status == "committed"
    assert v.params == {"lr": 0.1, "opt": "sgd"} and v.message == "sweep" and v.parents == (base.id,)
    assert v.snapshot_steps == (0, 10, 20, 29)
    assert [s for s, _ in v.curves["loss"]] == list(range(30))
    assert v.curves["loss"][4] == (4, 0.2)
    assert v.metrics["loss"] == pytest.approx(1 / 30) and v.metrics["acc"] == pytest.approx(29 / 30)
    assert_state_equal(final, repo.load("mlp@2", framework="torch"))
    assert repo.load("mlp@2", snapshot=10)["2.weight"].shape == (4, 16)
    assert not (Path(repo.location) / "refs" / "leases" / f"run-{run.id}" / "zarr.json").exists()


def test_snapshots_dedup_against_the_previous_one(repo: mh.Repository, repo_path: Path) -> None:
    net = small_mlp()
    run = mh.run("mlp", repo=repo)
    run.log(0, loss=1.0)
    run.snapshot(net, 0)
    first = tensor_objects(repo_path)
    nudge(net, layer=2)  # only the head changes
    run.snapshot(net, 1)
    added = tensor_objects(repo_path) - first
    assert len(first) == 4 and len(added) == 1
    run.snapshot(net, 2)  # nothing changed: nothing written
    assert tensor_objects(repo_path) - first == added
    v = run.commit()
    assert v.snapshot_steps == (0, 1, 2)


def test_model_given_to_run_is_snapshotted_at_the_end(repo: mh.Repository) -> None:
    net = small_mlp()
    with mh.run("mlp", repo=repo, model=net) as run:
        for step in range(5):
            run.log(step, loss=float(5 - step))
            nudge(net)
    assert run.version is not None and run.version.snapshot_steps == (4,)
    assert_state_equal(state_of(net), repo.load(run.version, framework="torch"))


def test_non_finite_and_tensor_metrics(repo: mh.Repository) -> None:
    run = mh.run("mlp", repo=repo, model=small_mlp())
    run.log(0, loss=torch.tensor(2.5), ppl=math.inf)
    run.log(1, loss=float("nan"), ppl=7)
    v = run.commit()
    assert v.curves["loss"][0] == (0, 2.5) and math.isnan(v.curves["loss"][1][1])
    assert v.curves["ppl"] == [(0, math.inf), (1, 7)]


@pytest.mark.parametrize(
    ("step", "metrics", "message"),
    [
        (1.5, {"loss": 1.0}, "whole number"),
        (True, {"loss": 1.0}, "whole number"),
        (1, {}, "at least one metric"),
        (1, {"loss": "low"}, "must be a number"),
        (1, {"loss": [1, 2]}, "must be a number"),
        (1, {"loss": torch.ones(3)}, "one number"),
        (1, {"_x": 1.0}, "metric names"),
    ],
)
def test_bad_log_calls_get_one_clear_error_and_record_nothing(
    repo: mh.Repository, step: object, metrics: dict, message: str
) -> None:
    run = mh.run("mlp", repo=repo)
    run.log(0, loss=1.0)
    with pytest.raises(UsageError, match=message):
        run.log(step, **metrics)  # type: ignore[arg-type]
    assert run.state.points == 1
    assert [e["k"] for e in read_events(run.folder)] == ["log"]
    run.discard()


def test_bad_run_arguments(repo: mh.Repository) -> None:
    with pytest.raises(UsageError, match="invalid model name"):
        mh.run("bad/name", repo=repo)
    with pytest.raises(UsageError, match="finite"):
        mh.run("mlp", params={"lr": float("nan")}, repo=repo)
    with pytest.raises(RefNotFound):
        mh.run("mlp", parent="nope@3", repo=repo)
    with pytest.raises(UsageError, match="needs a model name"):
        mh.run(repo=repo)
    assert repo.runs() == []


def test_an_exception_leaves_an_interrupted_run_that_commits_later(repo: mh.Repository) -> None:
    net = small_mlp()
    with pytest.raises(KeyboardInterrupt), mh.run("mlp", params={"lr": 0.3}, repo=repo) as run:
        for step in range(8):
            run.log(step, loss=float(step))
            if step == 5:
                run.snapshot(net, step)
        raise KeyboardInterrupt
    assert run.status == "interrupted" and repo.versions() == []
    [info] = repo.runs()
    assert (info.id, info.status, info.points, info.last_step, info.snapshots) == (run.id, "interrupted", 8, 7, (5,))
    with pytest.raises(UsageError, match=r"cannot log|interrupted"):
        run.log(9, loss=1.0)
    v = repo.commit_run(run.id[:6], message="recovered")
    assert v.message == "recovered" and [s for s, _ in v.curves["loss"]] == list(range(8)) and v.params == {"lr": 0.3}
    assert repo.runs()[0].status == "committed" and repo.runs()[0].version == v.ref
    with pytest.raises(UsageError, match="was committed as mlp@1"):
        repo.commit_run(run.id)


def test_resume_continues_the_same_run(repo: mh.Repository) -> None:
    net = small_mlp()
    first = mh.run("mlp", params={"lr": 0.1}, repo=repo)
    for step in range(4):
        first.log(step, loss=1.0 / (step + 1))
    first.snapshot(net, 3)
    weights = state_of(net)
    first.stop()
    fresh = small_mlp(5)
    with mh.run("mlp", resume=first.id, repo=repo) as run:
        assert run.step == 3 and run.restore(fresh) == 3
        assert_state_equal(weights, state_of(fresh))
        for step in range(run.step + 1, 6):
            run.log(step, loss=1.0 / (step + 1))
        run.snapshot(fresh)
    assert run.id == first.id
    assert [s for s, _ in run.version.curves["loss"]] == list(range(6))  # type: ignore[union-attr]
    assert run.version.snapshot_steps == (3, 5)  # type: ignore[union-attr]


def test_a_running_run_cannot_be_taken_over(repo: mh.Repository) -> None:
    run = mh.run("mlp", repo=repo)
    run.log(0, loss=1.0)
    with pytest.raises(RunBusy, match="still running"):
        repo.commit_run(run.id)
    with pytest.raises(UsageError, match="other params"):
        mh.run("mlp", params={"lr": 1}, resume=run.id, repo=repo)
    with pytest.raises(RefNotFound, match="no run"):
        repo.commit_run("abcdef")
    with pytest.raises(UsageError, match="hexadecimal"):
        repo.commit_run("../etc")
    run.discard()


def test_a_run_without_snapshot_does_not_commit_but_stays_recoverable(repo: mh.Repository) -> None:
    with pytest.raises(UsageError, match="no snapshot"), mh.run("mlp", repo=repo) as run:
        run.log(0, loss=1.0)
    assert run.status == "interrupted" and repo.versions() == []
    resumed = mh.run(resume=run.id, repo=repo)
    resumed.snapshot(small_mlp())
    assert resumed.commit().curves == {"loss": [(0, 1.0)]}


def test_runs_filter_by_author_model_and_activity(repo: mh.Repository) -> None:
    a = mh.run("mlp", repo=repo, author="alice")
    b = mh.run("cnn", repo=repo, author="bob")
    b.log(0, acc=0.5)
    b.snapshot(small_mlp())
    b.commit()
    c = mh.run("mlp", repo=repo, author="bob")
    c.stop()
    assert [r.id for r in repo.runs(author="alice")] == [a.id]
    assert {r.id for r in repo.runs(author="bob")} == {b.id, c.id}
    assert [r.id for r in repo.runs(model="cnn")] == [b.id]
    assert [r.id for r in repo.runs(active=True)] == [a.id]
    assert {r.id for r in repo.runs(active=False)} == {b.id, c.id}
    assert [r.id for r in repo.runs(status="interrupted")] == [c.id]
    assert repo.versions()[0].author == "bob"
    with pytest.raises(UsageError, match="status is one of"):
        repo.runs(status="done")
    a.discard()


def test_gc_keeps_the_snapshots_of_an_interrupted_run(repo: mh.Repository, repo_path: Path) -> None:
    run = mh.run("mlp", repo=repo)
    run.log(0, loss=1.0)
    run.snapshot(small_mlp(), 0)
    run.stop()
    report = repo.gc()
    assert not report.removed.get("tensors") and len(tensor_objects(repo_path)) == 4
    v = repo.commit_run(run.id)
    assert repo.fsck().ok and v.snapshot_steps == (0,)
    repo.discard_run  # noqa: B018 - the method exists beside commit_run


def test_discarded_run_releases_its_snapshots_to_gc(repo: mh.Repository, repo_path: Path) -> None:
    run = mh.run("mlp", repo=repo)
    run.snapshot(small_mlp(3), 0)
    run.stop()
    repo.discard_run(run.id)
    assert repo.runs()[0].status == "discarded"
    assert repo.gc().removed.get("tensors") == 4 and tensor_objects(repo_path) == set()


def test_object_storage_repositories_spool_journals_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_RUNS_DIR", str(tmp_path / "spool"))
    repo = mh.open("memory://runs-spool-test")
    run = mh.run("mlp", repo=repo, model=small_mlp())
    run.log(0, loss=0.5)
    assert run.folder.is_relative_to(tmp_path / "spool")
    v = run.commit()
    assert v.curves == {"loss": [(0, 0.5)]} and repo.runs()[0].version == "mlp@1"
