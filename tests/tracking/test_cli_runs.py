"""`dlv runs` and `dlv run commit|discard`: the same runs from a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import small_mlp

import nbmodelhub as mh
from nbmodelhub.cli import main


def interrupted(repo_path: Path, author: str = "ann") -> str:
    repo = mh.open(repo_path)
    run = mh.run("mlp", params={"lr": 0.1}, repo=repo, author=author)
    for step in range(3):
        run.log(step, loss=1.0 / (step + 1))
    run.snapshot(small_mlp(), 2)
    run.stop()
    repo.close()
    return run.id


def test_runs_lists_and_commits_an_interrupted_run(repo_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = interrupted(repo_path)
    assert main(["--repo", str(repo_path), "runs"]) == 0
    out = capsys.readouterr().out
    assert run_id in out and "interrupted" in out and "loss=0.3333" in out and "lr=0.1" in out
    assert main(["--repo", str(repo_path), "runs", "--active"]) == 0
    assert capsys.readouterr().out.strip() == "no runs in progress"

    assert main(["--repo", str(repo_path), "run", "commit", run_id[:5], "-m", "after the crash"]) == 0
    assert capsys.readouterr().out.strip() == f"committed run {run_id[:5]} as mlp@1 (1 snapshot)"
    assert main(["--repo", str(repo_path), "runs", "--json", "--author", "ann"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["status"], row["version"], row["points"], row["params"]) == ("committed", "mlp@1", 3, {"lr": 0.1})
    assert mh.open(repo_path).get("mlp@1").message == "after the crash"


def test_run_errors_are_one_line(repo_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = interrupted(repo_path)
    assert main(["--repo", str(repo_path), "run", "commit", "nothex!"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "dlv: error: a run id is hexadecimal, as shown by `dlv runs`; got 'nothex!'"
    assert main(["--repo", str(repo_path), "run", "discard", run_id]) == 0
    capsys.readouterr()
    assert main(["--repo", str(repo_path), "run", "commit", run_id]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dlv: error: run {run_id} was discarded"]
