"""Malformed model files, fuzzed with hypothesis: safetensors headers, ONNX files, Hugging Face folders, .pt
checkpoints. Each is committed (and was valid) or gets one clear error; nothing stored changes; a lying header
never makes us allocate more than the file holds."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import nbmodelhub as mh
from nbmodelhub.errors import ModelHubError, UsageError

from .fuzz_support import fuzz, stored

# -- safetensors ------------------------------------------------------------------------------------------------


def safetensors_bytes(header: Any, body: bytes, header_len: int | None = None) -> bytes:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + body


def valid_header() -> tuple[dict[str, Any], bytes]:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(4, dtype=np.int64)
    header = {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "b": {"dtype": "I64", "shape": [4], "data_offsets": [24, 56]},
    }
    return header, a.tobytes() + b.tobytes()


BIG = [2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, 2**64 + 1, 10**30]
ints = st.one_of(st.integers(-5, 64), st.sampled_from([*BIG, -(2**63), -1]), st.integers())
dims = st.one_of(
    st.lists(ints, max_size=5),
    st.lists(st.sampled_from([2**32, 2**32, 0, 1, 3]), min_size=1, max_size=4),
    st.sampled_from([None, "3", [1.5], [True], [[2]], {"0": 2}, [], [0]]),
)
dtypes = st.one_of(
    st.sampled_from(["F32", "F64", "F16", "BF16", "I8", "U8", "BOOL", "I64", "U64", "F8_E4M3", "C64", "f32", "", None]),
    st.text(max_size=5),
    st.just(["F32"]),
)
offsets = st.one_of(st.lists(ints, min_size=0, max_size=3), st.sampled_from([None, "0,24", [0.0, 24.0], {}]))


entries = st.one_of(
    st.fixed_dictionaries({"dtype": dtypes, "shape": dims, "data_offsets": offsets}),
    st.sampled_from([None, 1, "x", [], {}, {"dtype": "F32"}, {"dtype": "F32", "shape": [2, 3]}]),
)


@st.composite
def safetensors_files(draw: Any) -> bytes:
    header, body = valid_header()
    how = draw(st.sampled_from(["entry", "header_len", "body", "raw_header", "flip", "metadata", "names"]))
    if how == "entry":
        header[draw(st.sampled_from(["a", "b", "c"]))] = draw(entries)
        return safetensors_bytes(header, body)
    if how == "header_len":
        return safetensors_bytes(
            header, body, draw(st.one_of(st.integers(0, 400), st.sampled_from([b for b in BIG if b < 2**64])))
        )
    if how == "body":
        cut = draw(st.integers(0, len(body) + 8))
        return safetensors_bytes(header, (body + b"\x00" * 8)[:cut])
    if how == "raw_header":
        raw = draw(
            st.one_of(st.binary(max_size=40), st.sampled_from([b"[]", b"null", b"1", b'"x"', b"{", b"\xff\xfe"]))
        )
        return safetensors_bytes(raw, body)
    if how == "metadata":
        header["__metadata__"] = draw(st.sampled_from([None, 1, "x", [], {"a": 1}, {"a": {"b": []}}]))
        return safetensors_bytes(header, body)
    if how == "names":
        name = draw(
            st.one_of(
                st.sampled_from(["", "../x", "/abs", "\x00", "a" * 10_000, "zarr.json", "."]), st.text(max_size=20)
            )
        )
        header[name] = header.pop("a")
        return safetensors_bytes(header, body)
    data = bytearray(safetensors_bytes(header, body))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _commit_or_refuse(repo: mh.Repository, source: Path, name: str = "fuzzed") -> mh.Version | None:
    """Commit ``source``: a version that loads back, or one clear error with nothing stored changed."""
    path = Path(repo.location)
    before = stored(path)
    try:
        version = repo.commit(source, name=name)
    except ModelHubError as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)
        assert stored(path) == before, source
        return None
    loaded = repo.load(version.ref)
    assert sorted(loaded) == sorted(version.tensors)
    return version


@fuzz(2000, 250)
@given(data=safetensors_files())
@example(data=safetensors_bytes({"e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}, b""))
@example(data=safetensors_bytes({"a": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}, b""))
@example(data=safetensors_bytes({"a": {"dtype": "U8", "shape": [2**32, 2**32, 2**32], "data_offsets": [0, 0]}}, b""))
def test_malformed_safetensors_get_one_clear_error(tmp_path: Path, data: bytes) -> None:
    repo = mh.open(tmp_path / "repo")
    source = tmp_path / "w.safetensors"
    source.write_bytes(data)
    tracemalloc.start()
    try:
        version = _commit_or_refuse(repo, source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A lying header (a shape of 2**64 elements, a header length of 2**63) must never become an allocation:
    # everything read is bounded by the file's own size (plus the store's fixed overheads).
    assert peak < 64 * 2**20 + 100 * len(data), peak
    if version is not None:
        loaded = repo.load(version.ref, framework="numpy")
        for name, array in loaded.items():
            assert array.nbytes <= len(data), name


# -- ONNX -------------------------------------------------------------------------------------------------------


def onnx_model_bytes(external: str | None = None, folder: Path | None = None) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
    if external is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "24")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


@st.composite
def onnx_files(draw: Any) -> bytes:
    data = bytearray(onnx_model_bytes())
    how = draw(st.sampled_from(["flip", "truncate", "garbage", "insert"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "garbage":
        return draw(st.binary(max_size=200))
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:])
    for _ in range(draw(st.integers(1, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@fuzz(1500, 150)
@given(data=onnx_files())
def test_malformed_onnx_files_get_one_clear_error(tmp_path: Path, data: bytes) -> None:
    pytest.importorskip("onnx")
    repo = mh.open(tmp_path / "repo")
    source = tmp_path / "m.onnx"
    source.write_bytes(data)
    tracemalloc.start()
    try:
        _commit_or_refuse(repo, source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20 + 100 * len(data), peak


@pytest.mark.parametrize("where", ["../secret.bin", "/ABS/secret.bin", "sub/../../secret.bin"])
def test_onnx_external_data_outside_the_model_folder_is_never_read(tmp_path: Path, where: str) -> None:
    """An .onnx file whose weights are 'external data' at ../secret or an absolute path: committing it must
    not copy a file from outside the model's folder into the repository (and from there to a hub)."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(6, 7.0, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    source = folder / "m.onnx"
    source.write_bytes(onnx_model_bytes(where.replace("/ABS", str(tmp_path))))
    repo = mh.open(tmp_path / "repo")
    with pytest.raises(UsageError) as info:
        repo.commit(source, name="ext")
    assert "\n" not in str(info.value)
    assert repo.versions() == []


def test_onnx_external_data_beside_the_model_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(np.arange(6, dtype=np.float32).tobytes())
    (folder / "m.onnx").write_bytes(onnx_model_bytes("w.bin"))
    repo = mh.open(tmp_path / "repo")
    version = repo.commit(folder / "m.onnx", name="ext")
    np.testing.assert_array_equal(
        repo.load(version.ref, framework="numpy")["w"], np.arange(6, dtype=np.float32).reshape(2, 3)
    )


# -- Hugging Face folders ---------------------------------------------------------------------------------------


def write_shard(path: Path, tensors: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


CONFIGS = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'{"n_layer": "two"}',
    b'{"n_layer": -1, "hidden_size": 1e999}',
    b'{"dropout": NaN}',
    b'{"n_embd": Infinity}',
    b'{"num_hidden_layers": 99999999999999999999999}',
    b'{"architectures": [null, 1, {}]}',
    b"\xff\xfe{}",
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    json.dumps({"model_type": "gpt2", "n_layer": 2, "n_embd": 4, "n_head": 2}).encode(),
]


@st.composite
def hf_folders(draw: Any) -> dict[str, bytes]:
    """A folder's files: config.json (maybe broken), shards (maybe truncated or missing), an index (maybe lying)."""
    from safetensors.numpy import save

    files: dict[str, bytes] = {}
    if draw(st.booleans()):
        files["config.json"] = draw(st.one_of(st.sampled_from(CONFIGS), st.binary(max_size=30)))
    shard1 = save({"h.0.w": np.ones((2, 2), np.float32)})
    shard2 = save({"h.1.w": np.zeros((2, 2), np.float32)})
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    kept = draw(st.sampled_from(["both", "first", "none"]))
    if kept in ("both", "first"):
        files[names[0]] = shard1[: draw(st.sampled_from([len(shard1), len(shard1) - 3, 10]))]
    if kept == "both":
        files[names[1]] = shard2
    if draw(st.booleans()):
        target = draw(st.sampled_from([names[1], "../outside.safetensors", "/etc/passwd", "missing.safetensors", ""]))
        index = {"metadata": {}, "weight_map": {"h.0.w": names[0], "h.1.w": target}}
        files["model.safetensors.index.json"] = draw(
            st.sampled_from([json.dumps(index).encode(), b"{}", b"[]", b"{", json.dumps({"weight_map": [1]}).encode()])
        )
    return files


@fuzz(1000, 120)
@given(files=hf_folders())
def test_malformed_hf_folders_get_one_clear_error(tmp_path_factory: Any, files: dict[str, bytes]) -> None:
    box = tmp_path_factory.mktemp("hf")
    folder = box / "model"
    folder.mkdir()
    write_shard(box / "outside.safetensors", {"stolen": np.full((3,), 9, np.int8)})
    for name, data in files.items():
        (folder / name).write_bytes(data)
    repo = mh.open(box / "repo")
    version = _commit_or_refuse(repo, folder)
    if version is None:
        return
    assert "stolen" not in version.tensors  # nothing from outside the folder
    index = files.get("model.safetensors.index.json")
    if index is not None:
        # A version committed from a folder with an index holds exactly the tensors the index names.
        weight_map = json.loads(index)["weight_map"]
        assert sorted(version.tensors) == sorted(weight_map)


# -- .pt checkpoints ---------------------------------------------------------------------------------------------


def pt_bytes() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(3)}, buf)
    return buf.getvalue()


@st.composite
def pt_files(draw: Any) -> bytes:
    data = bytearray(draw(st.just(None)) or pt_bytes())
    how = draw(st.sampled_from(["flip", "truncate", "garbage"]))
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if how == "garbage":
        return draw(st.binary(max_size=200))
    for _ in range(draw(st.integers(1, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@fuzz(800, 80)
@given(data=pt_files())
def test_malformed_pt_checkpoints_get_one_clear_error(tmp_path: Path, data: bytes) -> None:
    repo = mh.open(tmp_path / "repo")
    source = tmp_path / "ckpt.pt"
    source.write_bytes(data)
    _commit_or_refuse(repo, source)
