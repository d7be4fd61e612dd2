"""Diff and histogram benchmark on GPT-2 small.

    python benchmarks/diff_bench.py [--workdir DIR] [--repeats N]

Builds GPT-2 small from ``transformers.GPT2Config()`` with random weights (~498 MB fp32) and
commits two versions: the initial state, then a fine-tune of the last two transformer blocks
(2 AdamW steps on random tokens, everything else frozen). Measures, as medians of ``--repeats``:

- ``dlv diff A B`` end to end in a fresh process (interpreter start, import, open, diff, print);
- the in-process ``repo.diff``;
- ``repo.histograms`` of one 40M-element float32 tensor (64 bins; its range found by a first
  pass), and of GPT-2's token embedding ``wte`` (38.6M elements);

next to the peer a user would otherwise write in the same run: load both checkpoints from
safetensors files and compare every tensor with numpy, and ``numpy.histogram`` of the array
already in memory. Prints each figure, the ratio to its peer and the issue's bar.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file
from store_bench import median_time  # the benchmarks run as scripts from this folder
from transformers import GPT2Config, GPT2LMHeadModel

import nbmodelhub as mh

ROOT = Path(__file__).resolve().parent.parent


def fine_tune_last_two_blocks(model: GPT2LMHeadModel, steps: int = 2) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for block in model.transformer.h[-2:] for p in block.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    for _ in range(steps):
        x = torch.randint(0, model.config.vocab_size, (2, 64))
        loss = model(x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage: drop the tied lm_head alias, as a user saving it would.
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}


def numpy_diff(path_a: Path, path_b: Path) -> int:
    """The peer: what one writes without a model store: load both files, compare every tensor."""
    a, b = load_file(str(path_a)), load_file(str(path_b))
    changed = 0
    for name, xa in a.items():
        xb = b[name]
        if np.array_equal(xa, xb):
            continue
        d = xb.astype(np.float64) - xa.astype(np.float64)
        _ = float(np.linalg.norm(d)), float(np.linalg.norm(xa.astype(np.float64)))
        changed += 1
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", help="where to put the repository (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nbmodelhub-diff-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    repo_path = work / "repo"
    shutil.rmtree(repo_path, ignore_errors=True)
    try:
        print("building GPT-2 small (random weights) and a fine-tune of its last two blocks ...")
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config())
        repo = mh.open(repo_path)
        v1 = repo.commit(model, "gpt2", message="initial")
        save_file(state(model), str(work / "a.safetensors"))
        fine_tune_last_two_blocks(model)
        v2 = repo.commit(model, "gpt2", message="fine-tune h.10, h.11")
        save_file(state(model), str(work / "b.safetensors"))
        rng = np.random.default_rng(0)
        big = (rng.standard_normal((40_000, 1_000), dtype=np.float32) * 0.02).astype(np.float32)
        repo.commit({"big.weight": big}, "big")
        print(f"  {v1.parameter_count / 1e6:.1f}M parameters, {v1.nbytes / 1e6:.0f} MB per version\n")

        d = repo.diff(v1, v2)
        print(
            f"diff {v1.ref} → {v2.ref}: {len(d.changed)} tensors changed "
            f"(in {len({'.'.join(c['name'].split('.')[:3]) for c in d.changed})} blocks), {d.unchanged} unchanged, "
            f"architecture identical: {d.architecture['identical']}"
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        command = [sys.executable, "-m", "nbmodelhub", "--repo", str(repo_path), "diff", v1.ref, v2.ref]

        def cli() -> None:
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)

        cli()  # warm the page cache and the interpreter's bytecode cache, as a second call would be
        t_cli = median_time(cli, args.repeats)
        t_api = median_time(lambda: repo.diff(v1, v2), args.repeats)
        t_peer = median_time(lambda: numpy_diff(work / "a.safetensors", work / "b.safetensors"), args.repeats)
        t_import = median_time(
            lambda: subprocess.run([sys.executable, "-c", "import nbmodelhub.cli"], check=True, env=env),
            args.repeats,
        )

        t_hist = median_time(lambda: repo.histograms("big", ["big.weight"], bins=64), args.repeats)
        edges = np.linspace(float(big.min()), float(big.max()), 65)
        t_hist_edges = median_time(lambda: repo.histograms("big", ["big.weight"], edges=edges), args.repeats)
        t_hist_peer = median_time(lambda: np.histogram(big, bins=64), args.repeats)
        wte = "transformer.wte.weight"
        t_wte = median_time(lambda: repo.histograms(v2, [wte], bins=64), args.repeats)
        counts = repo.histograms("big", ["big.weight"], edges=edges)["big.weight"]["counts"]
        assert sum(counts) == big.size

        print()
        print(f"{'figure':52} {'peer':>9} {'nbmodelhub':>11} {'ratio':>7}  bar")
        rows = [
            ("dlv diff A B, end to end (s)", t_peer, t_cli, "<= 1.0 s", t_cli <= 1.0),
            ("repo.diff in process (s)", t_peer, t_api, "", None),
            ("histograms, 40M float32, range + bins (s)", t_hist_peer, t_hist, "<= 0.3 s", t_hist <= 0.3),
            ("histograms, 40M float32, given edges (s)", t_hist_peer, t_hist_edges, "", None),
            ("histograms, wte 38.6M, range + bins (s)", t_hist_peer, t_wte, "<= 0.3 s", t_wte <= 0.3),
        ]
        for name, peer, ours, bar, ok in rows:
            verdict = "" if ok is None else (" ok" if ok else " MISSED")
            print(f"{name:52} {peer:9.3f} {ours:11.3f} {ours / peer:6.2f}x  {bar}{verdict}")
        print()
        print("peers: diff = load both safetensors files + numpy comparison of every tensor;")
        print("       histogram = numpy.histogram(64 bins) of the array already in memory")
        print(f"of the end-to-end dlv diff, {t_import:.3f} s is starting Python and importing nbmodelhub.cli")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"machine: {os.cpu_count()} cores, load average {load:.2f} during the run (timings scale with it)")
        repo.close()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
