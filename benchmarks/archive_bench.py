"""Archive benchmark: PAS on the GPT-2 small checkpoint series of store_bench.py.

    python benchmarks/archive_bench.py [--workdir DIR] [--repeats N] [--max-chain K]

Commits the 9 checkpoints (initial, 4 full fine-tune, 4 last-two-blocks) to a repository, saves
each as one safetensors file, and compresses each of those files with zstd (level 3) and, when
it is installed, zipnn — the peers, measured in this same run. Then archives the repository and
prints bytes on disk against one safetensors file per checkpoint, archive throughput, full-load
throughput of archived versions (warm), restore (unpack) throughput, and the stored bytes a
bf16-approximate read takes against a full read. Every tensor of every checkpoint is checked to
come back bit-identical after the archive and after the unpack.
"""

from __future__ import annotations

import argparse
import os
import sys

# Progress bars would garble the table; timings are what this script prints.
os.environ.setdefault("TQDM_DISABLE", "1")
import shutil
import tempfile
import time
from pathlib import Path

import torch
import zstandard
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_bench import checkpoint_series, disk_bytes, median_time, touch_all, untied

import nbmodelhub as mh


def zipnn_compress(path: Path) -> tuple[int, float] | None:
    """Bytes and seconds of zipnn on one file, or None when zipnn is not installed."""
    try:
        from zipnn import ZipNN
    except ImportError:
        return None
    data = path.read_bytes()
    start = time.perf_counter()
    out = ZipNN(input_format="byte", bytearray_dtype="float32").compress(data)
    return len(out), time.perf_counter() - start


def bytes_read(repo: mh.Repository, fn: object) -> int:
    before = repo.store.backend.bytes_read
    fn()  # type: ignore[operator]
    return repo.store.backend.bytes_read - before


def same_bits(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> bool:
    def raw(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous().reshape(-1).view(torch.uint8)

    return sorted(expected) == sorted(got) and all(
        expected[k].dtype == got[k].dtype and torch.equal(raw(expected[k]), raw(got[k])) for k in expected
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where to write (default: a temp dir, removed after)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats for each load timing (median)")
    parser.add_argument("--max-chain", type=int, default=None, help="archive's bound on delta chains")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nbmodelhub-archive-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args.repeats, args.max_chain)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, repeats: int, max_chain: int | None) -> None:
    print("building GPT-2 small and its checkpoint series (initial, 4 full fine-tune, 4 last-two-blocks) ...")
    series = checkpoint_series()
    logical = sum(t.numel() * t.element_size() for t in untied(series[0][1]).values())
    print(f"  {len(series)} checkpoints of {logical / 1e6:.1f} MB each (fp32)\n")
    st_dir = work / "safetensors"
    st_dir.mkdir()
    repo_path = work / "repo"
    repo = mh.open(repo_path)
    zstd_bytes, zstd_secs, zipnn_bytes, zipnn_secs = 0, 0.0, 0, 0.0
    have_zipnn = True
    refs = []
    for label, state, _ in series:
        path = st_dir / f"{label}.safetensors"
        save_file(untied(state), str(path))
        data = path.read_bytes()
        start = time.perf_counter()
        zstd_bytes += len(zstandard.ZstdCompressor(level=3).compress(data))
        zstd_secs += time.perf_counter() - start
        z = zipnn_compress(path)
        if z is None:
            have_zipnn = False
        else:
            zipnn_bytes += z[0]
            zipnn_secs += z[1]
        refs.append(repo.commit(state, name="gpt2", message=label).ref)
    st_bytes = sum(disk_bytes(p) for p in st_dir.glob("*.safetensors"))
    committed = disk_bytes(repo_path / "objects")

    kwargs = {} if max_chain is None else {"max_chain": max_chain}
    start = time.perf_counter()
    report = repo.archive("gpt2", **kwargs)
    archive_secs = time.perf_counter() - start
    repo.gc()
    archived_bytes = disk_bytes(repo_path / "objects")

    lossless = all(
        same_bits(state, repo.load(ref, framework="torch")) for (_, state, _), ref in zip(series, refs, strict=True)
    )
    fsck = repo.fsck()

    latest = refs[-1]
    repo.load(latest, framework="torch")  # warm-up
    load_latest = median_time(lambda: repo.load(latest, framework="torch"), repeats)
    last_file = st_dir / f"{series[-1][0]}.safetensors"
    touch_all(load_file(str(last_file)))  # warm-up
    load_peer = median_time(lambda: touch_all(load_file(str(last_file))), repeats)
    load_all = [median_time(lambda r=r: repo.load(r, framework="torch"), 1) for r in refs]
    full_reads = [bytes_read(repo, lambda r=r: repo.load(r)) for r in refs]
    approx_reads = [bytes_read(repo, lambda r=r: repo.load(r, precision="bf16")) for r in refs]
    approx_secs = median_time(lambda: repo.load(latest, framework="torch", precision="bf16"), repeats)

    start = time.perf_counter()
    repo.archive("gpt2", unpack=True)
    unpack_secs = time.perf_counter() - start
    restored = all(
        same_bits(state, repo.load(ref, framework="torch")) for (_, state, _), ref in zip(series, refs, strict=True)
    )
    unpacked_fsck = repo.fsck()

    gb = 1e9
    print(f"{'bytes on disk, 9 checkpoints':44} {'MB':>10} {'vs safetensors':>15}")
    rows = [
        ("one safetensors file per checkpoint", st_bytes),
        ("zstd-3 on each checkpoint", zstd_bytes),
        *([("zipnn on each checkpoint", zipnn_bytes)] if have_zipnn else []),
        ("nbmodelhub after commit (dedup + lz4)", committed),
        ("nbmodelhub after archive (PAS)", archived_bytes),
    ]
    for name, n in rows:
        print(f"  {name:42} {n / 1e6:10.1f} {n / st_bytes:14.3f}x")
    if not have_zipnn:
        print("  (zipnn not installed: `pip install zipnn` to compare with it)")
    print(f"  bar: archived <= 0.45x of safetensors: {'MET' if archived_bytes <= 0.45 * st_bytes else 'MISSED'}")
    print()
    print(
        f"plan: {report.whole} whole, {report.deltas} deltas, longest chain {report.longest_chain}, "
        f"{report.tensors} tensors"
    )
    total_logical = report.logical_bytes
    print("throughput (logical fp32 bytes per second):")
    print(f"  archive:                       {total_logical / archive_secs / 1e6:8.1f} MB/s ({archive_secs:.1f} s)")
    print(f"  zstd-3 compress, peer:         {len(series) * logical / zstd_secs / 1e6:8.1f} MB/s")
    if have_zipnn:
        print(f"  zipnn compress, peer:          {len(series) * logical / zipnn_secs / 1e6:8.1f} MB/s")
    print(f"  unpack (restore commit form):  {total_logical / unpack_secs / 1e6:8.1f} MB/s ({unpack_secs:.1f} s)")
    print(f"  full load, latest version:     {logical / load_latest / 1e6:8.1f} MB/s (bar: >= 300 MB/s)")
    print(f"  safetensors load, peer (warm): {logical / load_peer / 1e6:8.1f} MB/s")
    print(f"  full load, oldest version:     {logical / load_all[0] / 1e6:8.1f} MB/s")
    print(f"  full load, slowest version:    {logical / max(load_all) / 1e6:8.1f} MB/s")
    print(f"  bf16 load, latest version:     {logical / approx_secs / 1e6:8.1f} MB/s")
    print(f"  (GB/s of the latest full load: {logical / load_latest / gb:.2f})")
    print()
    print("stored bytes read, bf16-approximate read / full read (bar: <= 40%):")
    for ref, (label, _, _), a, f in zip(refs, series, approx_reads, full_reads, strict=True):
        print(f"  {ref:8} {label:12} {a / 1e6:8.1f} MB / {f / 1e6:8.1f} MB = {a / f:6.1%}")
    print(f"  all versions: {sum(approx_reads) / sum(full_reads):6.1%}")
    print()
    print(f"lossless after archive: {'yes, every tensor of every checkpoint' if lossless else 'NO'}")
    print(f"lossless after unpack:  {'yes, every tensor of every checkpoint' if restored else 'NO'}")
    print(
        f"fsck after archive: {'clean' if fsck.ok else fsck.problems[:3]}; after unpack: "
        f"{'clean' if unpacked_fsck.ok else unpacked_fsck.problems[:3]}"
    )


if __name__ == "__main__":
    main()
