"""Helpers for the damage tests: a repository with several kinds of object, and ways to hurt it."""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nbmodelhub as mh
from nbmodelhub.cli import main


def weights(seed: int, prefix: str, rows: int = 64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        f"{prefix}.weight": rng.standard_normal((rows, 32)).astype(np.float32),
        f"{prefix}.bias": rng.standard_normal(rows).astype(np.float32),
        "head.weight": rng.standard_normal((10, rows)).astype(np.float32),
    }


@dataclass
class Setup:
    """good@1 (unrelated), victim@1 and victim@2 (victim@2 changes enc.weight and adds a file)."""

    path: Path
    states: dict[str, dict[str, np.ndarray]]
    files: dict[str, dict[str, bytes]]
    records: dict[str, dict] = field(default_factory=dict)

    def repo(self, **kw: object) -> mh.Repository:
        return mh.open(self.path, **kw)  # type: ignore[arg-type]

    def tensor_hash(self, ref: str, name: str) -> str:
        return str(self.records[ref]["tensors"][name])

    def file_hash(self, ref: str, name: str) -> str:
        return str(self.records[ref]["files"][name])


def make_setup(root: Path) -> Setup:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text("print('training')\n" * 50)
    (root / "notes.md").write_text("# notes\nlearning rate 0.1\n")
    path = root / "local"
    repo = mh.open(path)
    good = weights(100, "g", rows=48)
    v1 = weights(1, "enc")
    v2 = dict(v1)
    v2["enc.weight"] = v1["enc.weight"] * 2
    repo.commit(good, "good", message="unrelated")
    repo.commit(v1, "victim", message="first", files=[root / "train.py"])
    repo.commit(v2, "victim", message="doubled", files=[root / "train.py", root / "notes.md"])
    setup = Setup(
        path,
        {"good@1": good, "victim@1": v1, "victim@2": v2},
        {
            "good@1": {},
            "victim@1": {"train.py": (root / "train.py").read_bytes()},
            "victim@2": {"train.py": (root / "train.py").read_bytes(), "notes.md": (root / "notes.md").read_bytes()},
        },
    )
    for ref in setup.states:
        v = repo.get(ref)
        setup.records[ref] = {
            "id": v.id,
            "graph": v.graph,
            "tensors": {n: t.hash for n, t in v.tensors.items()},
            "files": {f.name: f.hash for f in v.files},
        }
    repo.close()
    return setup


def assert_intact(setup: Setup, ref: str, tmp: Path) -> None:
    """``ref`` loads bit-identically (weights, graph, files), from a fresh process-level view."""
    with setup.repo() as repo:
        got = repo.load(ref)
        want = setup.states[ref]
        assert sorted(got) == sorted(want)
        for name, array in want.items():
            assert got[name].dtype == array.dtype and got[name].tobytes() == array.tobytes(), (ref, name)
        repo.graph(ref)
        dest = tmp / f"files-{ref.replace('@', '-')}-{np.random.default_rng().integers(1 << 30)}"
        repo.pull_files(ref, dest)
        for name, data in setup.files[ref].items():
            assert (dest / name).read_bytes() == data, (ref, name)


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def only_file(folder: Path) -> Path:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(files) == 1, files
    return files[0]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` at ``where`` (we run as root here), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def can_mount(tmp: Path) -> str | None:
    """None if tmpfs mounts work here, else why not (for a skip reason)."""
    probe = tmp / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): run as root, or in a VM"
    subprocess.run(["umount", str(probe)], check=False)
    return None
