"""A process killed mid-commit leaves the repository as it was, plus debris that gc removes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_state_equal, object_dirs, pythonpath_env, reopen, tensor_objects

import nbmodelhub as mh
from nbmodelhub.store.repository import LEASE_TTL

CHILD = r"""
import sys, numpy as np, nbmodelhub as mh
path, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
# 15 x 4 MB = 60 MB of float32 that compresses poorly
weights = {f"layer{i}.weight": rng.standard_normal((1000, 1000)).astype(np.float32) for i in range(15)}
repo = mh.open(path)
print("ready", flush=True)
v = repo.commit(weights, "big", message=f"seed {seed}")
print("done", v.number, flush=True)
"""


def child_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}.weight": rng.standard_normal((1000, 1000)).astype(np.float32) for i in range(15)}


def base_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"a": rng.standard_normal((300, 300)).astype(np.float32), "b": np.arange(1000, dtype=np.int64)}


def kill_mid_commit(path: Path, seed: int, delay: float) -> str:
    """Run a committing child, SIGKILL it ``delay`` seconds after it starts committing."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=pythonpath_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    return out


@pytest.fixture
def seeded_repo(tmp_path):
    path = tmp_path / "repo"
    with mh.open(path) as repo:
        repo.commit(base_weights(), "base", message="before the crash")
        repo.commit(child_weights(1), "big", message="seed 1")  # big@1: 60 MB, complete
    return path


# delays straddle the commit: hashing, chunk writes, the version record, the ref
@pytest.mark.parametrize(
    "delay", [0.0, 0.05, 0.15, pytest.param(0.3, marks=pytest.mark.slow), pytest.param(0.6, marks=pytest.mark.slow)]
)
def test_killed_commit_leaves_repository_consistent(seeded_repo, delay):
    path = seeded_repo
    before = reopen(path).versions()
    objects_before = tensor_objects(path)
    out = kill_mid_commit(path, 2, delay)
    finished = "done" in out

    repo = reopen(path)
    report = repo.fsck()
    assert report.ok, report.problems
    assert_state_equal(base_weights(), repo.load("base@1"))
    assert_state_equal(child_weights(1), repo.load("big@1"))
    after = repo.versions()
    refs = [v.ref for v in after]
    if finished:
        assert refs == [v.ref for v in before] + ["big@2"]
    else:
        assert refs[: len(before)] == [v.ref for v in before]
    # a version that became visible is complete and right
    if "big@2" in refs:
        assert_state_equal(child_weights(2), repo.load("big@2"))
    # the next commit works and numbers on
    v = repo.commit(base_weights(), "base", message="after the crash")
    assert v.number == 2
    # whatever the killed commit left that no version uses is not visible as a version
    live = {t.hash for v in repo.versions() for t in v.tensors.values()}
    assert objects_before <= live


def _killed_with_debris(path: Path, seed: int) -> set[str]:
    for delay in (0.05, 0.02, 0.1, 0.0):
        out = kill_mid_commit(path, seed, delay)
        if "done" not in out:
            repo = reopen(path)
            live = {t.hash for v in repo.versions() for t in v.tensors.values()}
            debris = object_dirs(path) - live
            if debris:
                return debris
    pytest.skip("could not kill a commit midway on this machine")


def test_gc_removes_debris_of_a_killed_commit(seeded_repo):
    path = seeded_repo
    _killed_with_debris(path, 3)
    repo = reopen(path)
    live = {t.hash for v in repo.versions() for t in v.tensors.values()}
    repo.gc()
    assert object_dirs(path) - live == set()
    assert reopen(path).fsck().ok
    assert reopen(path).fsck().debris == 0
    assert_state_equal(child_weights(1), reopen(path).load("big@1"))


def test_gc_honours_the_lease_of_a_live_commit(seeded_repo):
    """gc running while a commit (in this live process) holds a lease keeps the leased objects."""
    repo = reopen(seeded_repo)
    token = repo.store.take_lease(["tensors/" + "ab" * 32])
    try:
        (seeded_repo / "objects/tensors" / ("ab" * 32) / "c").mkdir(parents=True)
        (seeded_repo / "objects/tensors" / ("ab" * 32) / "c" / "0").write_bytes(b"partial")
        repo.gc()
        assert ("ab" * 32) in object_dirs(seeded_repo)
    finally:
        repo.store.release(token)
    repo.gc()
    assert ("ab" * 32) not in object_dirs(seeded_repo)


@pytest.mark.slow
def test_gc_removes_debris_once_the_dead_commits_lease_expires(seeded_repo):
    path = seeded_repo
    debris = _killed_with_debris(path, 4)
    leases = [p for p in (path / "refs/leases").iterdir() if (p / "zarr.json").is_file()]
    assert len(leases) >= 1  # the dead commit's (finished commits release theirs)
    report = reopen(path).fsck()
    assert report.ok
    # age the lease past its time-to-live (the repository's own data, edited as a clock would)
    for lease in leases:
        node = json.loads((lease / "zarr.json").read_text())
        node["attributes"]["time"] = time.time() - LEASE_TTL - 60
        (lease / "zarr.json").write_text(json.dumps(node))
    repo = reopen(path)
    live = {t.hash for v in repo.versions() for t in v.tensors.values()}
    gc = repo.gc()
    assert gc.removed.get("tensors", 0) == len(debris)
    assert object_dirs(path) - live == set()
    assert reopen(path).fsck().ok
    assert reopen(path).fsck().debris == 0
    assert_state_equal(child_weights(1), reopen(path).load("big@1"))
    assert_state_equal(base_weights(), reopen(path).load("base@1"))
