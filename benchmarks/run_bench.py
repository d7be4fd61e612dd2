"""``run.log`` benchmark: the cost of recording one training step.

    python benchmarks/run_bench.py [--calls N] [--repeats R] [--workdir DIR]

Logs N steps of two metrics (loss, acc) into a run in a fresh repository on disk, and measures
the mean cost per call (median over R repeats). Peers, measured in the same run on the same
disk with the same durability (every point handed to the kernel before the call returns, so a
SIGKILL loses nothing):

- the floor: ``os.write`` of an already-formatted line;
- the logger people write by hand: ``csv.writer(f).writerow(...)`` then ``f.flush()``;

and ``run.log`` again with the live curves view attached (its thread sending deltas every
250 ms, as in a notebook). The issue's bar: ≤ 50 µs per call on average.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbmodelhub as mh


def per_call(fn: Callable[[int], None], calls: int, repeats: int) -> float:
    """Median over repeats of the mean seconds per call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for step in range(calls):
            fn(step)
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="where to put the scratch repository (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    work = Path(tempfile.mkdtemp(prefix="nbmh-run-bench-", dir=args.workdir))
    try:
        repo = mh.open(work / "repo")

        fd = os.open(work / "raw.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        line = b'{"k":"log","s":123456,"t":1700000000.123,"m":{"loss":0.123456789,"acc":0.987654321}}\n'
        raw = per_call(lambda s: os.write(fd, line), args.calls, args.repeats)
        os.close(fd)

        with open(work / "log.csv", "a", newline="") as f:
            writer = csv.writer(f)

            def by_hand(step: int) -> None:
                writer.writerow((step, time.time(), 1.0 / (step + 1), step * 1e-6))
                f.flush()

            hand = per_call(by_hand, args.calls, args.repeats)

        run = mh.run("bench", params={"lr": 0.1}, repo=repo)
        ours = per_call(lambda s: run.log(s, loss=1.0 / (s + 1), acc=s * 1e-6), args.calls, args.repeats)
        points = run.state.points
        run.discard()

        from nbmodelhub.widgets.run_curves import RunCurves

        watched = mh.run("bench-live", repo=repo)
        view = RunCurves(watched)  # its thread polls every 250 ms and sends deltas (to no frontend here)
        live = per_call(lambda s: watched.log(s, loss=1.0 / (s + 1), acc=s * 1e-6), args.calls, args.repeats)
        watched.discard()
        view.close()
        repo.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    us = 1e6
    print(f"run.log benchmark: {args.calls:,} calls × 2 metrics, median of {args.repeats}; {points:,} points journaled")
    print()
    print("| figure | µs per call | vs os.write | bar |")
    print("| --- | ---: | ---: | --- |")
    print(f"| os.write of a formatted line (floor) | {raw * us:.2f} | 1.00× | |")
    print(f"| csv.writer + flush (by hand) | {hand * us:.2f} | {hand / raw:.2f}× | |")
    bar = "✔" if ours * us <= 50 else "✘"
    print(f"| run.log | {ours * us:.2f} | {ours / raw:.2f}× | ≤ 50 µs {bar} |")
    bar = "✔" if live * us <= 50 else "✘"
    print(f"| run.log with the live view attached | {live * us:.2f} | {live / raw:.2f}× | ≤ 50 µs {bar} |")


if __name__ == "__main__":
    main()
