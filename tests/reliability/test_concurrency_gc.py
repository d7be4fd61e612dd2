"""8 processes × 25 commits to one model, tagging as they go, while another process runs gc again and again.

Every commit shares one tensor with all others and one with the other writer of its pair (dedup under
contention); every fifth one also commits a scratch version of another model and deletes it, so each gc
has something to collect beside the live objects it must keep. Afterwards: versions 1..200 with unique
numbers, each loading bit-identically under the number its committer got back, tags where their
creators put them, nothing live collected (fsck clean, no debris after a last gc).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from conftest import assert_state_equal, reopen

import nbmodelhub as mh
from reliability.conftest import trials

WRITERS = 8
COMMITS = trials(25, 25)  # the full 8 × 25 runs in CI too (about a minute on 2 cores)


def weights(writer: int, i: int) -> dict[str, np.ndarray]:
    pair = np.random.default_rng(10_000 + 1000 * (writer // 2) + i)
    own = np.random.default_rng(1000 * writer + i)
    return {
        "shared.weight": np.ones((32, 32), np.float32),
        "pair.weight": pair.standard_normal((48, 32)).astype(np.float32),
        "own.weight": own.standard_normal((64, 32)).astype(np.float32),
        "own.bias": np.full(64, 1000 * writer + i, np.float32),
    }


def scratch_weights(writer: int, i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(500_000 + 1000 * writer + i)
    return {"shared.weight": np.ones((32, 32), np.float32), "junk": rng.standard_normal((128, 64)).astype(np.float32)}


def _writer(path: str, writer: int, barrier: Any, results: Any) -> None:
    try:
        repo = mh.open(path)
        barrier.wait(timeout=120)
        out = []
        for i in range(COMMITS):
            v = repo.commit(weights(writer, i), "m", message=f"w{writer} i{i}", params={"writer": writer, "i": i})
            tags = []
            if i % 5 == 0:
                repo.tag(v, f"t{writer}-{i}")
                tags.append(f"t{writer}-{i}")
                junk = repo.commit(scratch_weights(writer, i), f"scratch{writer}")
                repo.delete(junk)
            repo.tag(v, f"w{writer}", force=True)  # a tag this writer moves along its own versions
            out.append((writer, i, v.number, v.id, tags))
        results.put(("ok", out))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def _collector(path: str, barrier: Any, results: Any, stop: Any) -> None:
    try:
        repo = mh.open(path)
        barrier.wait(timeout=120)
        runs = removed = 0
        while not stop.is_set():
            report = repo.gc()  # the only gc: it must never find the lock taken
            runs += 1
            removed += sum(report.removed.values())
            time.sleep(0.05)  # let the writers through between runs
        results.put(("gc", (runs, removed)))
    except BaseException:
        results.put(("error", traceback.format_exc()))


def test_eight_writers_and_a_gc_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "repo")
    mh.open(path).close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS + 1)
    results = ctx.Queue()
    stop = ctx.Event()
    writers = [ctx.Process(target=_writer, args=(path, w, barrier, results)) for w in range(WRITERS)]
    collector = ctx.Process(target=_collector, args=(path, barrier, results, stop))
    for p in [*writers, collector]:
        p.start()
    outcomes = [results.get(timeout=300) for _ in range(WRITERS)]
    stop.set()
    outcomes.append(results.get(timeout=120))
    for p in [*writers, collector]:
        p.join(timeout=60)
    errors = [o[1] for o in outcomes if o[0] == "error"]
    assert errors == [], "\n".join(errors)
    commits = [c for kind, batch in outcomes if kind == "ok" for c in batch]
    gc_runs, gc_removed = next(o[1] for o in outcomes if o[0] == "gc")
    assert gc_runs >= 2, "the gc did not run while the writers committed"
    print(f"\n{WRITERS} writers x {COMMITS} commits; the concurrent gc ran {gc_runs} times, removed {gc_removed}")

    total = WRITERS * COMMITS
    assert sorted(c[2] for c in commits) == list(range(1, total + 1))
    repo = reopen(path)
    versions = {v.number: v for v in repo.versions() if v.model == "m"}
    assert sorted(versions) == list(range(1, total + 1))
    assert [m for m in repo.models() if m.startswith("scratch")] == []  # all deleted
    tags = repo.store.refs.tags("m")
    for writer, i, number, vid, made in commits:
        v = versions[number]
        assert (v.id, v.params) == (vid, {"writer": writer, "i": i}), f"m@{number}"
        assert_state_equal(weights(writer, i), repo.load(f"m@{number}"))
        for tag in made:
            assert tags[tag] == number, tag
    for writer in range(WRITERS):
        mine = [c[2] for c in commits if c[0] == writer]
        assert mine == sorted(mine)  # one writer's numbers rise with its commits
        assert tags[f"w{writer}"] == mine[-1]
    report = repo.fsck()
    assert report.ok, report.problems
    # one shared tensor, one per pair and commit, two of its own per commit
    live = {t.hash for v in versions.values() for t in v.tensors.values()}
    assert len(live) == 1 + (WRITERS // 2 + 2 * WRITERS) * COMMITS
    assert gc_removed > 0, "the concurrent gc never collected a deleted scratch version"
    repo.gc()
    after = reopen(path).fsck()
    assert after.ok and after.debris == 0, after.problems
    on_disk = {p.name for p in (Path(path) / "objects/tensors").iterdir() if p.is_dir()}
    assert on_disk == live  # every scratch tensor collected, every live one kept
