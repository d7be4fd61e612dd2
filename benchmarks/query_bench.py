"""DQL select over many versions: with the catalog (the index) against a linear scan of refs and records.

    python benchmarks/query_bench.py [--versions 10000] [--models 100] [--repo PATH]

Builds the repository once (small AlexNet-shaped CNNs in three architectures, each version with
its own params and metrics; committed by 4 threads), then times, in one run:
- select through the catalog in a warm process (``repo.query``), median of 7;
- the same from a fresh process state (the catalog read from the repository), median of 3;
- the peer: a linear scan without the index — list every model's refs, read every version
  record, test the same predicate — as ``versions()`` did before the catalog.
Bar (issue 8): select over 10,000 versions answers within 200 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("TQDM_DISABLE", "1")

from dql.models import alexnet

import nbmodelhub as mh
from nbmodelhub.dql.parser import parse
from nbmodelhub.dql.planner import plan
from nbmodelhub.dql.predicates import Subject

QUERIES = {
    "metadata": 'select m where m.name like "alexnet_1%" and m.metrics.acc > 0.9 and m.params.lr = 0.01',
    "structure": 'select m where m.metrics.acc > 0.95 and m["conv*"].next has POOL("AVG")',
}


def build(path: Path, versions: int, models: int) -> None:
    archs = [alexnet(0), alexnet(1, "avg"), alexnet(2)]
    repo = mh.open(path)
    per_model = versions // models

    def fill(m: int) -> None:
        rng = random.Random(m)
        name = f"{['alexnet', 'vggnet', 'resnet'][m % 3]}_{m}"
        for _ in range(per_model):
            repo.commit(archs[m % 3], name=name, params={"lr": rng.choice([0.1, 0.01, 0.001]), "batch": 32},
                        metrics={"acc": rng.random(), "loss": rng.random() * 3})  # fmt: skip

    # Trace each architecture once, here: torch.fx patches torch globally while it traces, so two
    # threads tracing at once get the untraced fallback graph. Later commits reuse the cached graph.
    for i, arch in enumerate(archs):
        repo.commit(arch, name=f"warmup_{i}")
        repo.delete(f"warmup_{i}@1")
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        for i, _ in enumerate(pool.map(fill, range(models)), 1):
            if i % 10 == 0:
                print(f"  built {i * per_model} versions ({time.perf_counter() - start:.0f} s)", flush=True)
    repo.close()


def linear_scan(path: Path, text: str) -> int:
    """The peer: no index — walk the refs, read every record, test the predicate."""
    repo = mh.open(path)
    query = parse(text)
    p = plan(query.where)  # type: ignore[union-attr]
    hits = 0
    for r in repo.store.refs.all_versions():
        record = repo.store.get_document("versions", r.version_id, r.model)
        m = Subject(r.model, r.number, r.version_id, record, (), False, lambda s: repo.graph(f"{s.model}@{s.number}"))
        if (p.metadata is None or p.metadata(m, {})) and (p.structure is None or (p.structure and _holds(p, m))):
            hits += 1
    repo.close()
    return hits


def _holds(p, m) -> bool:  # type: ignore[no-untyped-def]
    from nbmodelhub.dql.predicates import bindings

    return bool(bindings(p.structure, m))


def median_time(fn, runs: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repo", type=Path, help="reuse (or build) the repository here")
    args = parser.parse_args()
    path = args.repo or Path(tempfile.mkdtemp(prefix="query-bench-")) / "repo"
    if not (path / "zarr.json").exists():
        print(f"building {args.versions} versions of {args.models} models in {path} …", flush=True)
        build(path, args.versions, args.models)
    repo = mh.open(path)
    total = len(repo.versions())
    print(f"{total} versions, {len(repo.models())} models")
    rows = []
    for label, text in QUERIES.items():
        hits = len(repo.query(text))
        warm = median_time(lambda text=text: repo.query(text), 7)

        def cold(text: str = text) -> None:
            with mh.open(path) as fresh:
                fresh.query(text)

        cold_s = median_time(cold, 3)
        start = time.perf_counter()
        scan_hits = linear_scan(path, text)
        scan = time.perf_counter() - start
        assert scan_hits == hits, (scan_hits, hits)
        rows.append((label, hits, warm, cold_s, scan))
    print()
    print("| select | hits | catalog, warm (ms) | catalog, fresh open (ms) | linear scan (ms) | scan / warm "
          "| bar ≤ 200 ms |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, hits, warm, cold_s, scan in rows:
        mark = "✔" if warm <= 0.2 else "✘"
        print(f"| {label} | {hits} | {warm * 1e3:.1f} | {cold_s * 1e3:.1f} | {scan * 1e3:.0f} | "
              f"{scan / warm:.0f}× | {mark} |")  # fmt: skip


if __name__ == "__main__":
    main()
