"""Several processes committing to one model at once: distinct numbers, nothing lost."""

from __future__ import annotations

import multiprocessing as mp
import traceback

import numpy as np
import pytest
from conftest import assert_state_equal, reopen

import nbmodelhub as mh

WRITERS = 4
PER_WRITER = 5


def expected_weights(writer: int, i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1000 * writer + i)
    return {
        "shared.weight": np.ones((32, 32), np.float32),  # the same in every version: dedup under contention
        "fc.weight": rng.standard_normal((64, 32)).astype(np.float32),
        "fc.bias": np.full(64, 1000 * writer + i, np.float32),
    }


def _writer(path: str, writer: int, barrier, results) -> None:
    try:
        repo = mh.open(path)
        barrier.wait(timeout=60)
        out = []
        for i in range(PER_WRITER):
            v = repo.commit(
                expected_weights(writer, i), "shared", message=f"w{writer} i{i}", params={"writer": writer, "i": i}
            )
            out.append((writer, i, v.number, v.id))
        results.put(("ok", out))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _reader(path: str, barrier, results, stop) -> None:
    """Reads while others write: it may see fewer versions, never an error."""
    try:
        repo = mh.open(path)
        barrier.wait(timeout=60)
        seen = 0
        while not stop.is_set():
            if "shared" in repo.models():
                latest = repo.get("shared")
                repo.load(latest, keys=["fc.bias"])
                seen = max(seen, len(repo.versions(model="shared")))
        results.put(("ok", seen))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _run(path, with_reader: bool):
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS + int(with_reader))
    results = ctx.Queue()
    stop = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, w, barrier, results)) for w in range(WRITERS)]
    if with_reader:
        procs.append(ctx.Process(target=_reader, args=(path, barrier, results, stop)))
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(WRITERS)]
    stop.set()
    if with_reader:
        outcomes.append(results.get(timeout=60))
    for p in procs:
        p.join(timeout=60)
    errors = [o[1] for o in outcomes if o[0] == "error"]
    assert errors == [], "\n".join(errors)
    return [o[1] for o in outcomes]


def _check(path, commits):
    numbers = sorted(c[2] for c in commits)
    assert numbers == list(range(1, WRITERS * PER_WRITER + 1))
    repo = reopen(path)
    versions = repo.versions(model="shared")
    assert sorted(v.number for v in versions) == numbers
    assert {v.id for v in versions} == {c[3] for c in commits}
    for writer, i, number, vid in commits:
        v = repo.get(f"shared@{number}")
        assert v.id == vid
        assert v.params == {"writer": writer, "i": i}
        assert_state_equal(expected_weights(writer, i), repo.load(v))
    # within one writer, numbers increase with commit order
    for w in range(WRITERS):
        mine = [c[2] for c in sorted(commits) if c[0] == w]
        assert mine == sorted(mine)
    assert repo.fsck().ok
    # one object for the tensor every version shares, two per version for the rest
    tensors = {t.hash for v in versions for t in v.tensors.values()}
    assert len(tensors) == 1 + 2 * WRITERS * PER_WRITER


def test_four_processes_commit_to_one_model(tmp_path):
    path = str(tmp_path / "repo")
    mh.open(path).close()
    results = _run(path, with_reader=False)
    commits = [c for batch in results for c in batch]
    _check(path, commits)


@pytest.mark.slow
def test_readers_see_no_errors_while_writers_commit(tmp_path):
    path = str(tmp_path / "repo")
    mh.open(path).close()
    results = _run(path, with_reader=True)
    commits = [c for batch in results[:WRITERS] for c in batch]
    _check(path, commits)
