"""Soak: thousands of commits into one repository, and what listing costs as it grows.

    python benchmarks/soak_bench.py [--small 2000] [--large 50] [--large-mb 16] [--every 250] [--workdir DIR]

Commits ``--small`` small models (ten model names, each commit an MLP's worth of float32 with
params and metrics) and, spread among them, ``--large`` large ones (``--large-mb`` MB of float32
each, a quarter of it new per commit so dedup has work). Every ``--every`` commits it times:

- ``list``: ``repo.versions()`` in the committing process (what ``%dlv list`` costs the notebook
  that commits);
- ``other reader``: ``repo.versions()`` on a second repository object that last listed ``--every``
  commits ago (a sidebar, another notebook): it catches up on the change events since;
- ``fresh open``: ``mh.open(path).versions()`` with nothing cached (it reads the saved index);
- the peer: the same listing without the catalog, one ref and one record read per version.

At the end: ``dlv list`` end to end (a new process: Python and package start-up included),
``fsck`` (every object re-hashed) and a bit-identical load of every large version and of a sample
of small ones. The issue's bar (issue 10): ``list`` stays within 200 ms and ``fsck`` is clean.
``tests/reliability/test_soak.py`` runs the same workload, smaller, for correctness.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import nbmodelhub as mh

BAR_SECONDS = 0.2
SMALL_MODELS = 10


@dataclass(frozen=True)
class Step:
    """One commit of the soak: which model, its weights, params and metrics."""

    model: str
    weights: dict[str, np.ndarray]
    params: dict[str, float | int]
    metrics: dict[str, float]


def small_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "fc1.weight": rng.standard_normal((32, 16)).astype(np.float32),
        "fc1.bias": rng.standard_normal(32).astype(np.float32),
        "fc2.weight": rng.standard_normal((4, 32)).astype(np.float32),
    }


def workload(small: int, large: int, large_mb: float, seed: int = 0) -> Iterator[Step]:
    """The soak's commits in order: ``small`` small ones with ``large`` large ones spread among them."""
    rng = np.random.default_rng(seed)
    rows = max(1, int(large_mb * 2**20 / 4 / 1024))
    quarters = [rng.standard_normal((rows // 4 or 1, 1024)).astype(np.float32) for _ in range(4)]
    total = small + large
    large_at = {round((i + 1) * total / (large + 1)) for i in range(large)} if large else set()
    done_large = 0
    for i in range(total):
        if i in large_at and done_large < large:
            # one quarter replaced per commit: the other three dedup against the previous version
            quarters[done_large % 4] = rng.standard_normal(quarters[0].shape).astype(np.float32)
            weights = {f"block{q}.weight": quarters[q].copy() for q in range(4)}
            yield Step("large", weights, {"step": done_large, "lr": 3e-4}, {"loss": float(rng.random())})
            done_large += 1
        else:
            model = f"small-{i % SMALL_MODELS}"
            yield Step(model, small_weights(rng), {"lr": float(10 ** -rng.uniform(2, 5)), "seed": i},
                       {"acc": float(rng.random()), "loss": float(rng.random() * 3)})  # fmt: skip


def soak(
    path: Path,
    small: int,
    large: int,
    large_mb: float,
    every: int = 0,
    on_checkpoint: Callable[[int, mh.Repository], None] | None = None,
) -> dict[str, list[Step]]:
    """Commit the workload into ``path``; returns each model's steps in commit order (version n is item n-1)."""
    committed: dict[str, list[Step]] = {}
    with mh.open(path) as repo:
        for i, step in enumerate(tqdm(workload(small, large, large_mb), total=small + large, desc="soak commits")):
            v = repo.commit(step.weights, step.model, params=step.params, metrics=step.metrics)
            committed.setdefault(step.model, []).append(step)
            assert v.number == len(committed[step.model]), f"{v.ref}: numbers must follow commits"
            if every and on_checkpoint and (i + 1) % every == 0:
                on_checkpoint(i + 1, repo)
    return committed


def list_without_catalog(repo: mh.Repository) -> int:
    """The peer: what a listing costs without an index (one ref, one record per version)."""
    refs = repo.store.refs
    n = 0
    for ref in refs.all_versions():
        repo.store.get_document("versions", ref.version_id, f"{ref.model}@{ref.number}")
        n += 1
    return n


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=50)
    parser.add_argument("--large-mb", type=float, default=16.0)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temporary folder)")
    args = parser.parse_args()
    base = args.workdir or Path(tempfile.mkdtemp(prefix="nbmh-soak-"))
    path = base / "repo"
    if path.exists():
        shutil.rmtree(path)
    rows: list[tuple[int, float, float, float, float]] = []
    other = mh.open(path)

    def checkpoint(done: int, repo: mh.Repository) -> None:
        start = time.perf_counter()
        count = len(repo.versions())
        committer = time.perf_counter() - start
        start = time.perf_counter()
        assert len(other.versions()) == count == done
        catching_up = time.perf_counter() - start
        fresh = timed(lambda: mh.open(path).versions(), repeats=1)
        peer = timed(lambda: list_without_catalog(mh.open(path)), repeats=1)
        rows.append((done, committer, catching_up, fresh, peer))

    start = time.perf_counter()
    committed = soak(path, args.small, args.large, args.large_mb, args.every, checkpoint)
    elapsed = time.perf_counter() - start
    total = args.small + args.large
    print(f"\nsoak: {args.small:,} small + {args.large} large ({args.large_mb:g} MB) commits in {elapsed:.1f} s "
          f"({1000 * elapsed / total:.1f} ms per commit, list checkpoints included)")  # fmt: skip
    print(f"  {'commits':>8} {'list':>9} {'other reader':>13} {'fresh open':>11} {'no catalog':>11}  peer/list")
    for done, first, other_t, fresh, peer in rows:
        print(f"  {done:>8,} {1000 * first:>7.1f}ms {1000 * other_t:>11.1f}ms {1000 * fresh:>9.1f}ms "
              f"{1000 * peer:>9.1f}ms  {peer / max(first, 1e-9):>8.1f}×")  # fmt: skip
    env = dict(os.environ, TQDM_DISABLE="1")
    cli = timed(lambda: subprocess.run([sys.executable, "-m", "nbmodelhub", "--repo", str(path), "list", "--json"],
                                       env=env, check=True, capture_output=True), repeats=1)  # fmt: skip
    print(f"  `dlv list --json` end to end (a new process): {cli:.2f} s")
    fsck_start = time.perf_counter()
    report = mh.open(path).fsck()
    print(f"  fsck: {'clean' if report.ok else 'PROBLEMS'} — {report.versions:,} versions, {report.objects:,} objects, "
          f"{report.bytes_checked / 2**20:,.0f} MB re-hashed in {time.perf_counter() - fsck_start:.1f} s")  # fmt: skip
    for problem in report.problems[:10]:
        print("   ", problem)
    repo = mh.open(path)
    checked = 0
    for model, steps in committed.items():
        picks = range(len(steps)) if model == "large" else range(0, len(steps), max(1, len(steps) // 10))
        for i in picks:
            got = repo.load(f"{model}@{i + 1}")
            assert all(np.array_equal(got[k], w) for k, w in steps[i].weights.items()), f"{model}@{i + 1} differs"
            checked += 1
    print(f"  {checked} versions loaded back bit-identically (every large one, a tenth of each small model)")
    worst = max(max(r[1:4]) for r in rows) if rows else float("nan")
    verdict = "within" if worst <= BAR_SECONDS else "OVER"
    print(f"  slowest list (any column) {1000 * worst:.1f} ms: {verdict} the {1000 * BAR_SECONDS:.0f} ms bar; "
          f"fsck {'clean' if report.ok else 'NOT clean'}")  # fmt: skip
    if args.workdir is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
