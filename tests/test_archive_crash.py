"""A process killed during archive (or unpack) leaves every version loading bit-identically and fsck clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_state_equal, pythonpath_env, reopen

import nbmodelhub as mh
from nbmodelhub.store import archived

CHILD = r"""
import sys, nbmodelhub as mh
path, unpack, chain = sys.argv[1], sys.argv[2] == "unpack", int(sys.argv[3])
repo = mh.open(path)
print("ready", flush=True)
report = repo.archive("run", max_chain=chain, unpack=unpack)
print("done", report.rewritten, flush=True)
"""


def states() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(5)
    w = {f"layer{i}.weight": (rng.standard_normal((800, 500)) * 0.02).astype(np.float32) for i in range(5)}
    w["step"] = np.arange(10, dtype=np.int64)
    out = []
    for _ in range(3):
        out.append(dict(w))
        w = {
            k: (v + (rng.standard_normal(v.shape) * 1e-4).astype(v.dtype) if v.dtype.kind == "f" else v)
            for k, v in w.items()
        }
    return out


@pytest.fixture
def run_repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    with mh.open(path) as repo:
        for s in states():
            repo.commit(s, "run")
    return path


def kill_during(path: Path, delay: float, unpack: bool = False, chain: int = 2) -> bool:
    """Run an archiving child and SIGKILL it ``delay`` s into the archive; True if it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "unpack" if unpack else "archive", str(chain)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**pythonpath_env(), "TQDM_DISABLE": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return "done" in out


def assert_intact(path: Path) -> None:
    repo = reopen(path)
    report = repo.fsck()
    assert report.ok, report.problems
    for i, state in enumerate(states()):
        assert_state_equal(state, repo.load(f"run@{i + 1}"))


def archived_count(path: Path) -> int:
    repo = reopen(path)
    hashes = {t.hash for v in repo.versions() for t in v.tensors.values()}
    return sum(archived.current_encoding(repo.store.backend, h) is not None for h in hashes)


@pytest.mark.parametrize(
    "delay", [0.2, 0.8, pytest.param(1.5, marks=pytest.mark.slow), pytest.param(3.0, marks=pytest.mark.slow)]
)
def test_killed_archive_leaves_everything_loading(run_repo, delay):
    kill_during(run_repo, delay)
    assert_intact(run_repo)
    # the next archive finishes the work, gc clears whatever the dead one left half-written
    repo = reopen(run_repo)
    report = repo.archive("run", max_chain=2)
    assert report.rewritten + report.unchanged == report.tensors
    repo.gc()
    assert_intact(run_repo)
    assert reopen(run_repo).fsck().debris == 0
    assert archived_count(run_repo) == report.tensors


def test_killed_rearchive_and_unpack_leave_everything_loading(run_repo):
    with mh.open(run_repo) as repo:
        repo.archive("run", max_chain=2)
    kill_during(run_repo, 0.8, chain=0)  # switching every delta to whole
    assert_intact(run_repo)
    kill_during(run_repo, 0.8, unpack=True)
    assert_intact(run_repo)
    with mh.open(run_repo) as repo:
        repo.archive("run", unpack=True)
        repo.gc()
    assert_intact(run_repo)
    assert archived_count(run_repo) == 0
    assert reopen(run_repo).fsck().debris == 0
