"""Store benchmark: nbmodelhub against safetensors on a GPT-2 small checkpoint series.

    python benchmarks/store_bench.py [--workdir DIR] [--repeats N]

Builds GPT-2 small from ``transformers.GPT2Config()`` with random weights (~498 MB fp32), then a
series of 9 checkpoints: the initial state; 4 of full fine-tuning (2 AdamW steps each, lr 1e-4,
random tokens); 4 training only the last two transformer blocks (everything else frozen). Each
checkpoint is committed to a fresh repository and saved as one safetensors file, timed side by
side in this one run (the disk here is noisy run to run, so only ratios within a run mean much).
Prints medians and the ratio to safetensors for each figure, and the issue's bar for it.

Loads are measured warm (files in the page cache) and cold (pages evicted with
posix_fadvise(DONTNEED) before each load, as after a reboot or on a first read). safetensors'
``load_file`` memory-maps the file, so its tensors are "materialised" here by reading every
element (a sum), which is what a training job does on first use.
"""

from __future__ import annotations

import argparse
import os

# Progress bars would garble the table; timings are what this script prints.
os.environ.setdefault("TQDM_DISABLE", "1")
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

import nbmodelhub as mh


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def evict(path: Path) -> None:
    """Drop a file's (or a folder's files') pages from the page cache, so the next read is cold."""
    os.sync()
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def touch_all(tensors: dict[str, torch.Tensor]) -> None:
    for t in tensors.values():
        t.sum()


def checkpoint_series(seed: int = 0) -> list[tuple[str, dict[str, torch.Tensor], GPT2LMHeadModel]]:
    """(label, state dict clone, model) for the 9 checkpoints described in the module docstring."""
    torch.manual_seed(seed)
    config = GPT2Config()
    model = GPT2LMHeadModel(config)
    series = [("initial", clone_state(model))]
    tokens = lambda: torch.randint(0, config.vocab_size, (2, 64))  # noqa: E731

    def train(steps: int, params: list[torch.nn.Parameter]) -> None:
        opt = torch.optim.AdamW(params, lr=1e-4)
        for _ in range(steps):
            x = tokens()
            loss = model(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()

    model.train()
    for i in range(4):
        train(2, list(model.parameters()))
        series.append((f"full-ft-{i + 1}", clone_state(model)))
    for p in model.parameters():
        p.requires_grad_(False)
    last_two = [p for block in model.transformer.h[-2:] for p in block.parameters()]
    for p in last_two:
        p.requires_grad_(True)
    for i in range(4):
        train(2, last_two)
        series.append((f"last2-ft-{i + 1}", clone_state(model)))
    return [(label, state, model) for label, state in series]


def clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A state dict that keeps GPT-2's tie (lm_head.weight is transformer.wte.weight)."""
    state = model.state_dict()
    clones: dict[int, torch.Tensor] = {}
    out = {}
    for name, t in state.items():
        key = t.data_ptr()
        if key not in clones:
            clones[key] = t.detach().clone()
        out[name] = clones[key]
    return out


def untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared tensors; like Hugging Face, save the tied name once."""
    return {k: v for k, v in state.items() if k != "lm_head.weight"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where to write (default: a temp dir, removed after)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats for each load timing (median)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nbmodelhub-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args.repeats)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, repeats: int) -> None:
    print("building GPT-2 small and its checkpoint series (initial, 4 full fine-tune, 4 last-two-blocks) ...")
    series = checkpoint_series()
    size_mb = sum(t.numel() * t.element_size() for t in untied(series[0][1]).values()) / 1e6
    print(f"  {len(series)} checkpoints of {size_mb:.1f} MB each (fp32, lm_head tied to wte)\n")
    st_dir = work / "safetensors"
    st_dir.mkdir()
    repo_path = work / "repo"
    repo = mh.open(repo_path)

    save_times, commit_times, recommit_times = [], [], []
    refs = []
    for label, state, _ in series:
        path = st_dir / f"{label}.safetensors"
        start = time.perf_counter()
        save_file(untied(state), str(path))
        save_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        version = repo.commit(state, name="gpt2", message=label)
        commit_times.append(time.perf_counter() - start)
        refs.append(version.ref)
        # Re-commit of an unchanged model: hashing finds every tensor already stored.
        scratch = f"gpt2-recommit-{label}"
        start = time.perf_counter()
        repo.commit(state, name=scratch, message="re-commit")
        recommit_times.append(time.perf_counter() - start)
        repo.delete(scratch)
    repo.gc()

    st_files = sorted(st_dir.glob("*.safetensors"))
    last_file = st_dir / f"{series[-1][0]}.safetensors"

    def st_load(path: Path) -> Callable[[], None]:
        return lambda: touch_all(load_file(str(path)))

    def mh_load(ref: str) -> Callable[[], None]:
        return lambda: repo.load(ref, framework="torch")

    def cold_time(fn: Callable[[], None], path: Path) -> float:
        times = []
        for _ in range(repeats):
            evict(path)
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    # Warm-up both readers once so page cache and allocator start in the same state.
    st_load(last_file)()
    mh_load(refs[-1])()
    warm_st = median_time(st_load(last_file), repeats)
    warm_mh = median_time(mh_load(refs[-1]), repeats)
    cold_st = cold_time(st_load(last_file), last_file)
    cold_mh = cold_time(mh_load(refs[-1]), repo_path)

    one = "transformer.h.5.attn.c_attn.weight"

    def st_one() -> None:
        with safe_open(str(last_file), framework="pt") as f:
            f.get_tensor(one).sum()

    fresh = mh.open(repo_path)  # a new process's view: no cached records
    one_st = median_time(st_one, repeats * 4)
    one_mh = median_time(lambda: fresh.load(refs[-1], framework="torch", keys=[one]), repeats * 4)

    st_bytes = sum(disk_bytes(p) for p in st_files)
    mh_bytes = disk_bytes(repo_path)
    bytes_gb = size_mb / 1000

    rows = [
        ("full commit (s, median of 9)", statistics.median(save_times), statistics.median(commit_times), "<= 2.0x"),
        ("re-commit unchanged (s, median of 9)", statistics.median(save_times), statistics.median(recommit_times),
         "<= 0.35x"),
        ("whole load, warm (s)", warm_st, warm_mh, ""),
        ("whole load, cold (s)", cold_st, cold_mh, ""),
        ("one-tensor load (ms)", one_st * 1000, one_mh * 1000, "<= 50 ms"),
        ("bytes on disk, series (MB)", st_bytes / 1e6, mh_bytes / 1e6, "<= 0.55x"),
    ]
    print(f"{'figure':40} {'safetensors':>12} {'nbmodelhub':>12} {'ratio':>8}  bar")
    for name, peer, ours, bar in rows:
        print(f"{name:40} {peer:12.3f} {ours:12.3f} {ours / peer:7.2f}x  {bar}")
    print()
    print("load throughput, nbmodelhub / safetensors (bar: >= 0.8x):")
    print(f"  warm: {bytes_gb / warm_mh:6.2f} GB/s vs {bytes_gb / warm_st:6.2f} GB/s = {warm_st / warm_mh:5.2f}x")
    print(f"  cold: {bytes_gb / cold_mh:6.2f} GB/s vs {bytes_gb / cold_st:6.2f} GB/s = {cold_st / cold_mh:5.2f}x")
    print(f"one-tensor load: {one_mh * 1000:.1f} ms (bar: <= 50 ms)")
    report = repo.fsck()
    print(f"fsck after the run: {'clean' if report.ok else report.problems[:3]} ({report.objects} objects)")


if __name__ == "__main__":
    main()
