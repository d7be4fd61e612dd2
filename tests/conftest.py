"""Shared fixtures and helpers for the store tests: real zarr repositories on disk, real models."""

from __future__ import annotations

import collections
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr.storage
from zarr.storage import LocalStore

import nbmodelhub as mh


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def repo(repo_path: Path):
    r = mh.open(repo_path)
    yield r
    r.close()


def reopen(path: Path | str, **kw: Any) -> mh.Repository:
    """A fresh Repository over the same folder (no per-process caches)."""
    return mh.open(path, **kw)


# -- what is on disk --------------------------------------------------------------------------------


def object_dirs(path: Path, kind: str = "tensors") -> set[str]:
    """Every folder under objects/<kind>/, complete or not."""
    base = Path(path) / "objects" / kind
    if not base.exists():
        return set()
    return {p.name for p in base.iterdir() if p.is_dir()}


def tensor_objects(path: Path) -> set[str]:
    """Complete tensor objects: folders under objects/tensors/ with their zarr.json."""
    base = Path(path) / "objects" / "tensors"
    return {d for d in object_dirs(path) if (base / d / "zarr.json").is_file()}


def all_files(path: Path) -> dict[str, bytes]:
    """Every file in the repository folder with its content (for 'nothing changed' checks)."""
    root = Path(path)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def chunk_files(path: Path, digest: str) -> list[Path]:
    return sorted(p for p in (Path(path) / "objects" / "tensors" / digest / "c").rglob("*") if p.is_file())


def disk_bytes(path: Path, sub: str = "objects/tensors") -> int:
    return sum(p.stat().st_size for p in (Path(path) / sub).rglob("*") if p.is_file())


# -- counting reads -----------------------------------------------------------------------------------


class CountingStore(zarr.storage.WrapperStore):
    """A zarr store wrapper that counts every ``get`` by key (thread-safe)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.reads: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()

    def _with_store(self, store: Any) -> CountingStore:
        other = type(self)(store)
        other.reads = self.reads
        return other

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        with self._lock:
            self.reads[key] += 1
        return await self._store.get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        with self._lock:
            for key, _ in key_ranges:
                self.reads[key] += 1
        return await self._store.get_partial_values(prototype, key_ranges)

    def reset(self) -> None:
        with self._lock:
            self.reads.clear()


def counting_repo(path: Path) -> tuple[mh.Repository, CountingStore]:
    store = CountingStore(LocalStore(path))
    return mh.open(store), store


# -- models and tensors ---------------------------------------------------------------------------------


def small_mlp(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def numpy_weights(seed: int = 0, n: int = 3, shape: tuple[int, ...] = (16, 8)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}.weight": rng.standard_normal(shape).astype(np.float32) for i in range(n)}


def tiny_gpt2(seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16)
    return GPT2LMHeadModel(config).eval()


def raw_bytes(x: Any) -> bytes:
    """The exact bits of a torch tensor or numpy array (C order), whatever its dtype."""
    import torch

    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        return t.numpy().tobytes()
    return np.ascontiguousarray(x).tobytes()


def assert_bit_identical(a: Any, b: Any) -> None:
    """Same dtype, same shape, same bits (NaN payloads and -0.0 included)."""
    assert str(a.dtype) == str(b.dtype), (a.dtype, b.dtype)
    assert tuple(a.shape) == tuple(b.shape), (tuple(a.shape), tuple(b.shape))
    assert raw_bytes(a) == raw_bytes(b)


def assert_state_equal(expected: dict[str, Any], got: dict[str, Any]) -> None:
    assert sorted(expected) == sorted(got)
    for name in expected:
        assert_bit_identical(expected[name], got[name])


def state_of(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(autouse=True)
def _quiet_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")


def pythonpath_env() -> dict[str, str]:
    """Environment for a child Python that must import nbmodelhub from this checkout."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def insert_block(model: Any, at: int, *, reinit: bool = True) -> Any:
    """A copy of a GPT-2 ``model`` with a deep-copied transformer block inserted at index ``at``."""
    import copy

    import torch

    new = copy.deepcopy(model)
    block = copy.deepcopy(new.transformer.h[at - 1])
    if reinit:
        torch.manual_seed(123)
        for p in block.parameters():
            torch.nn.init.normal_(p)
    new.transformer.h.insert(at, block)
    for i, b in enumerate(new.transformer.h):
        b.attn.layer_idx = i
    new.config.n_layer = len(new.transformer.h)
    return new


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's session-wide event loop, once started, breaks the asyncio loop
    fixtures of pytest-jupyter (tests/server), so the servers' REST tests must run before it starts."""
    items.sort(key=lambda item: "tests/browser/" in item.nodeid or "/browser/" in str(item.fspath))
