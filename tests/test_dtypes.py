"""Every dtype, shape and bit pattern comes back exactly as committed, through torch and numpy."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from conftest import assert_bit_identical, raw_bytes, reopen, tensor_objects
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbmodelhub as mh

TORCH_DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.uint8,
    torch.bool,
]
NUMPY_DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    ml_dtypes.bfloat16,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.bool_,
]


def random_torch(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 100).to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -(2**62)), min(info.max, 2**62)
    return torch.randint(lo, hi, shape, generator=g, dtype=torch.int64).to(dtype)


def random_numpy(dtype, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    raw = rng.integers(0, 256, int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    return raw.view(dt).reshape(shape)  # arbitrary bit patterns, NaNs of every payload included


def torch_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=torch_name)
def test_torch_dtypes_round_trip(repo, repo_path, dtype):
    shapes = {"m": (7, 5), "v": (11,), "t": (2, 3, 4), "s": ()}
    state = {k: random_torch(dtype, s, i) for i, (k, s) in enumerate(shapes.items())}
    v = repo.commit(state, "t")
    assert {n: t.dtype for n, t in v.tensors.items()} == {n: torch_name(dtype) for n in state}
    assert {n: t.shape for n, t in v.tensors.items()} == shapes
    fresh = reopen(repo_path)
    as_torch = fresh.load("t@1", framework="torch")
    as_numpy = fresh.load("t@1")
    for name, t in state.items():
        assert_bit_identical(t, as_torch[name])
        assert as_numpy[name].shape == tuple(t.shape)
        assert raw_bytes(as_numpy[name]) == raw_bytes(t)
    assert as_numpy["m"].dtype == (np.dtype(ml_dtypes.bfloat16) if dtype == torch.bfloat16 else t.numpy().dtype)


@pytest.mark.parametrize(
    "dtype",
    NUMPY_DTYPES,
    ids=lambda d: np.dtype(d).name,
)
def test_numpy_dtypes_round_trip(repo, repo_path, dtype):
    shapes = {"m": (6, 9), "v": (13,), "t": (3, 2, 2), "s": ()}
    arrays = {k: random_numpy(dtype, s, i) for i, (k, s) in enumerate(shapes.items())}
    v = repo.commit(arrays, "n")
    assert {n: t.shape for n, t in v.tensors.items()} == shapes
    got = reopen(repo_path).load("n@1")
    for name, a in arrays.items():
        assert_bit_identical(a, got[name])
    if np.dtype(dtype).name in ("uint16", "uint32", "uint64"):
        return  # torch has these only as storage dtypes; numpy is their home
    as_torch = reopen(repo_path).load("n@1", framework="torch")
    for name, a in arrays.items():
        assert raw_bytes(as_torch[name]) == raw_bytes(a)
        assert tuple(as_torch[name].shape) == a.shape


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=torch_name)
def test_zero_dim_tensor_keeps_its_shape(repo, dtype):
    scalar = random_torch(dtype, (), 3)
    v = repo.commit({"s": scalar}, "z")
    assert v.tensors["s"].shape == ()
    got = repo.load(v, framework="torch")["s"]
    assert got.dim() == 0
    assert_bit_identical(scalar, got)
    assert repo.load(v)["s"].shape == ()


@pytest.mark.parametrize(
    "shape",
    [
        (0,),
        (3, 0),
        (0, 4),
        (2, 0, 3),
    ],
    ids=str,
)
@pytest.mark.parametrize("framework", ["torch", "numpy"])
def test_empty_tensors_round_trip(repo, shape, framework):
    if framework == "torch":
        state = {"e": torch.zeros(shape), "f": torch.ones(3)}
    else:
        state = {"e": np.zeros(shape, np.float32), "f": np.ones(3, np.float32)}
    v = repo.commit(state, "e")
    assert v.tensors["e"].shape == shape
    got = repo.load(v, framework=framework)
    assert_bit_identical(state["e"], got["e"])
    assert_bit_identical(state["f"], got["f"])
    assert repo.fsck().ok


def test_two_empty_tensors_are_not_tied(repo):
    """Empty tensors share no memory worth tying: each name comes back with its own shape."""
    state = {"a": torch.zeros(0), "b": torch.zeros(0, 3), "c": torch.zeros(0)}
    v = repo.commit(state, "e")
    assert v.ties == {}
    got = repo.load(v, framework="torch")
    assert {k: tuple(t.shape) for k, t in got.items()} == {"a": (0,), "b": (0, 3), "c": (0,)}


def test_non_contiguous_torch_tensors(repo):
    base = torch.arange(60, dtype=torch.float32).reshape(6, 10)
    state = {
        "transposed": base.t(),
        "stepped": base[::2, 1::3],
        "column": base[:, 3],
        "expanded": torch.arange(4.0).expand(3, 4),
        "bf16_t": base.to(torch.bfloat16).t(),
        "negative_like": base.flip(0),
    }
    assert not any(t.is_contiguous() for k, t in state.items() if k != "negative_like")
    v = repo.commit(state, "nc")
    got = repo.load(v, framework="torch")
    for name, t in state.items():
        assert_bit_identical(t.contiguous(), got[name])
        assert torch.equal(t.float(), got[name].float())
    assert v.ties == {}  # views of one storage but different elements are not ties


def test_non_contiguous_numpy_arrays(repo):
    base = np.arange(60, dtype=np.int16).reshape(6, 10)
    arrays = {"T": base.T, "step": base[::2, ::3], "rev": base[::-1], "fortran": np.asfortranarray(base * 2)}
    v = repo.commit(arrays, "nc")
    got = repo.load(v)
    for name, a in arrays.items():
        assert np.array_equal(a, got[name]) and got[name].dtype == a.dtype
        assert raw_bytes(a) == raw_bytes(got[name])


FLOAT_SPECIALS = {
    np.float32: (
        np.uint32,
        [0x7FC00000, 0x7FC00001, 0xFFC00123, 0x7F800001, 0x80000000, 0x7F800000, 0xFF800000, 0x00000001],
    ),
    np.float64: (np.uint64, [0x7FF8000000000001, 0xFFF0000000000001, 0x8000000000000000, 0x7FF0000000000000, 1]),
    np.float16: (np.uint16, [0x7E01, 0xFE00, 0x7C01, 0x8000, 0x7C00, 0xFC00, 0x0001]),
    ml_dtypes.bfloat16: (np.uint16, [0x7FC1, 0xFFC0, 0x7F81, 0x8000, 0x7F80, 0xFF80, 0x0001]),
}


@pytest.mark.parametrize("dtype", list(FLOAT_SPECIALS), ids=lambda d: np.dtype(d).name)
def test_nan_inf_negative_zero_payloads_preserved(repo, dtype):
    uint, patterns = FLOAT_SPECIALS[dtype]
    bits = np.array(patterns, dtype=uint)
    arr = bits.view(dtype)
    v = repo.commit({"x": arr, "grid": np.tile(arr, (5, 1))}, "nan")
    got = repo.load(v)
    assert np.array_equal(got["x"].view(uint), bits)
    assert np.array_equal(got["grid"].view(uint), np.tile(bits, (5, 1)))
    t = repo.load(v, framework="torch")["x"]
    int_view = {np.uint64: torch.int64, np.uint32: torch.int32, np.uint16: torch.int16}[uint]
    assert np.array_equal(t.view(int_view).numpy().view(uint), bits)


def test_torch_nan_payloads_committed_from_torch(repo):
    bits = torch.tensor([0x7FC00001, -0x3FFFFF, 0x7F800001, -(2**31), 0x7F800000], dtype=torch.int32)
    x = bits.view(torch.float32)
    assert torch.isnan(x).sum() == 3
    v = repo.commit({"x": x, "b": bits[:4].to(torch.int16).view(torch.bfloat16)}, "nan")
    got = repo.load(v, framework="torch")
    assert torch.equal(got["x"].view(torch.int32), bits)
    assert torch.equal(got["b"].view(torch.int16), bits[:4].to(torch.int16))


def test_large_multichunk_tensors(repo, repo_path):
    g = torch.Generator().manual_seed(0)
    state = {
        "f32": torch.randn(3001, 1000, generator=g),  # 12 MB, odd first dim: padded edge chunk
        "bf16": torch.randn(4099, 1100, generator=g).to(torch.bfloat16),  # 9 MB
        "wide": torch.randn(3, 1_100_000, generator=g),  # rows bigger than a chunk
    }
    v = repo.commit(state, "big")
    for name in state:
        assert len(list((repo_path / "objects/tensors" / v.tensors[name].hash / "c").rglob("*"))) >= 1
    chunks = [p for p in (repo_path / "objects/tensors" / v.tensors["f32"].hash / "c").rglob("*") if p.is_file()]
    assert len(chunks) >= 2
    got = reopen(repo_path).load("big@1", framework="torch")
    for name, t in state.items():
        assert_bit_identical(t, got[name])
    assert reopen(repo_path).fsck().ok


def test_same_values_different_dtype_not_deduplicated(repo, repo_path):
    x = torch.arange(10)
    v = repo.commit({str(d): x.to(d) for d in TORCH_DTYPES}, "d")
    assert len({t.hash for t in v.tensors.values()}) == len(TORCH_DTYPES)
    assert len(tensor_objects(repo_path)) == len(TORCH_DTYPES)


# -- property-based ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memrepo():
    repo = mh.open("memory://test-dtypes-hypothesis")
    yield repo
    repo.close()


shapes = st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple)  # 0-d and empty included


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(NUMPY_DTYPES), shape=shapes, seed=st.integers(0, 2**32 - 1), stride=st.integers(1, 3))
def test_random_numpy_round_trip(memrepo, dtype, shape, seed, stride):
    a = random_numpy(dtype, shape, seed)
    if a.ndim:
        a = a[::stride]
    v = memrepo.commit({"a": a, "b": random_numpy(dtype, shape, seed + 1)}, "hyp")
    got = memrepo.load(v, keys=["a"])["a"]
    assert_bit_identical(a, got)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtype=st.sampled_from(TORCH_DTYPES), shape=shapes, seed=st.integers(0, 2**31), transpose=st.booleans())
def test_random_torch_round_trip(memrepo, dtype, shape, seed, transpose):
    t = random_torch(dtype, shape, seed)
    if transpose and t.dim() >= 2:
        t = t.transpose(0, -1)
    v = memrepo.commit({"t": t}, "hyp_t")
    got = memrepo.load(v, framework="torch")["t"]
    assert_bit_identical(t.contiguous(), got)
