"""Runs across processes: two writers at once stay separate; a SIGKILLed run loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import pythonpath_env, reopen

import nbmodelhub as mh

TWO_WRITERS = r"""
import sys, time, pathlib, nbmodelhub as mh
path, who, n, gate = sys.argv[1], sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
seed = len(who)
weights = {"w": __import__("numpy").full((4, 4), seed, dtype="float32")}
run = mh.run("shared", params={"who": who}, repo=mh.open(path), author=who)
print(run.id, flush=True)
while not (gate / "go").exists():
    time.sleep(0.005)
for step in range(n):
    run.log(step, loss=seed * 1000.0 + step, worker=seed)
run.snapshot(weights, n - 1)
print("logged", flush=True)
while not (gate / "commit").exists():
    time.sleep(0.005)
print(run.commit().ref, flush=True)
"""

KILLED = r"""
import sys, time, numpy as np, nbmodelhub as mh
path = sys.argv[1]
run = mh.run("victim", params={"lr": 0.01}, repo=mh.open(path))
print(run.id, flush=True)
step = 0
while True:
    run.log(step, loss=1.0 / (step + 1))
    if step == 50:
        run.snapshot({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, step)
    if step == 200:
        print("past 200", flush=True)
    step += 1
    if step > 200:
        time.sleep(0.001)
"""


def child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=pythonpath_env(),
    )


def line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    out = proc.stdout.readline().strip()
    if not out:
        proc.wait(timeout=30)
        raise AssertionError(proc.stderr.read() if proc.stderr else "child said nothing")
    return out


@pytest.mark.slow
def test_two_processes_log_to_one_repository_at_once(repo_path: Path, tmp_path: Path) -> None:
    mh.open(repo_path).close()
    n = 3000
    procs = {who: child(TWO_WRITERS, repo_path, who, n, tmp_path) for who in ("al", "bobby")}
    ids = {who: line(p) for who, p in procs.items()}
    (tmp_path / "go").touch()
    assert all(line(p) == "logged" for p in procs.values())

    # While both still run: another process sees two active runs, each with every point.
    repo = reopen(repo_path)
    active = {r.author: r for r in repo.runs(active=True)}
    assert set(active) == {"al", "bobby"}
    for who, info in active.items():
        assert info.id == ids[who] and info.points == n and info.params == {"who": who}
        xs, ys = info.curves["loss"]
        assert xs == list(range(n)) and ys == [len(who) * 1000.0 + s for s in range(n)]
        assert set(info.curves["worker"][1]) == {len(who)}

    (tmp_path / "commit").touch()
    refs = {who: line(p) for who, p in procs.items()}
    for p in procs.values():
        assert p.wait(timeout=60) == 0
    assert sorted(refs.values()) == ["shared@1", "shared@2"]
    for who, ref in refs.items():
        v = repo.get(ref)
        assert v.author == who and v.params == {"who": who}
        assert v.curves["loss"] == [(s, len(who) * 1000.0 + s) for s in range(n)]
    assert [r.author for r in repo.runs(author="al")] == ["al"]
    assert repo.runs(active=True) == []
    repo.close()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_keeps_its_steps_and_commits(repo_path: Path) -> None:
    mh.open(repo_path).close()
    proc = child(KILLED, repo_path)
    run_id = line(proc)
    assert line(proc) == "past 200"
    repo = reopen(repo_path)
    assert [r.id for r in repo.runs(active=True)] == [run_id]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.05)

    [info] = repo.runs()
    assert info.status == "interrupted" and info.snapshots == (50,)
    xs, ys = info.curves["loss"]
    assert len(xs) == info.points > 200 and xs == list(range(len(xs)))
    assert ys == [1.0 / (s + 1) for s in xs]

    repo.gc()  # a gc in between must not take the dead run's snapshot
    v = repo.commit_run(run_id)
    assert v.ref == "victim@1" and v.params == {"lr": 0.01} and v.snapshot_steps == (50,)
    assert [s for s, _ in v.curves["loss"]] == xs
    assert repo.load(v)["w"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert repo.fsck().ok
    repo.close()
