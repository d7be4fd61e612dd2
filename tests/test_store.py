"""The store's core promises: dedup, ties, plain zarr, partial loads, snapshots, inputs, bad inputs."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from conftest import (
    all_files,
    assert_bit_identical,
    assert_state_equal,
    counting_repo,
    disk_bytes,
    numpy_weights,
    reopen,
    small_mlp,
    state_of,
    tensor_objects,
    tiny_gpt2,
)
from zarr.storage import LocalStore

import nbmodelhub as mh
from nbmodelhub import ModelHubError, ReadOnlyRepository, RefNotFound, UsageError

# -- dedup --------------------------------------------------------------------------------------------


def test_same_model_twice_writes_no_new_tensor_objects(repo, repo_path):
    model = small_mlp(1)
    v1 = repo.commit(model, "mlp", message="first")
    objects = tensor_objects(repo_path)
    assert len(objects) == len(model.state_dict())  # 4 distinct tensors
    size = disk_bytes(repo_path)
    v2 = repo.commit(model, "mlp", message="same again")
    assert (v1.number, v2.number) == (1, 2)
    assert v1.id != v2.id
    assert tensor_objects(repo_path) == objects
    assert disk_bytes(repo_path) == size
    assert {n: t.hash for n, t in v1.tensors.items()} == {n: t.hash for n, t in v2.tensors.items()}


def test_same_weights_in_another_model_are_shared(repo, repo_path):
    model = small_mlp(2)
    repo.commit(model, "alpha")
    objects = tensor_objects(repo_path)
    size = disk_bytes(repo_path)
    other = repo.commit(state_of(model), "beta")  # a state dict this time: same content, same objects
    assert tensor_objects(repo_path) == objects
    assert disk_bytes(repo_path) == size
    assert set(repo.models()) == {"alpha", "beta"}
    assert_state_equal(state_of(model), repo.load(other, framework="torch"))


def test_changing_one_tensor_adds_exactly_one_object(repo, repo_path):
    model = small_mlp(3)
    v1 = repo.commit(model, "mlp")
    before = tensor_objects(repo_path)
    with torch.no_grad():
        model[2].bias.add_(1.0)
    v2 = repo.commit(model, "mlp", message="bias bump")
    after = tensor_objects(repo_path)
    assert before <= after
    assert len(after - before) == 1
    assert after - before == {v2.tensors["2.bias"].hash}
    changed = [n for n in v1.tensors if v1.tensors[n].hash != v2.tensors[n].hash]
    assert changed == ["2.bias"]
    assert_state_equal(state_of(model), repo.load(v2, framework="torch"))
    assert not np.array_equal(repo.load(v1)["2.bias"], repo.load(v2)["2.bias"])


def test_equal_bytes_different_dtype_or_shape_are_different_objects(repo, repo_path):
    a = np.arange(12, dtype=np.int32)
    v = repo.commit({"flat": a, "square": a.reshape(3, 4).copy(), "float": a.view(np.float32).copy()}, "m")
    assert len({t.hash for t in v.tensors.values()}) == 3
    assert len(tensor_objects(repo_path)) == 3
    got = repo.load(v)
    assert got["square"].shape == (3, 4) and got["float"].dtype == np.float32


# -- tied weights ---------------------------------------------------------------------------------------


def test_gpt2_tied_weights_round_trip(repo, repo_path):
    model = tiny_gpt2(0)
    assert model.lm_head.weight is model.transformer.wte.weight
    v = repo.commit(model, "gpt2", message="tiny")
    assert v.ties == {"lm_head.weight": "transformer.wte.weight"}
    assert "lm_head.weight" not in v.tensors
    # the embedding is stored once
    wte_hash = v.tensors["transformer.wte.weight"].hash
    assert wte_hash in tensor_objects(repo_path)
    assert len(tensor_objects(repo_path)) == len({t.hash for t in v.tensors.values()})

    loaded = repo.load("gpt2@1", framework="torch")
    assert set(loaded) == set(model.state_dict())
    assert loaded["lm_head.weight"] is loaded["transformer.wte.weight"]
    assert_state_equal(state_of(model), loaded)

    fresh = tiny_gpt2(123)
    assert not torch.equal(fresh.transformer.wte.weight, model.transformer.wte.weight)
    repo.checkout("gpt2@1", fresh)
    assert_state_equal(state_of(model), state_of(fresh))
    assert fresh.lm_head.weight is fresh.transformer.wte.weight
    with torch.no_grad():
        fresh.transformer.wte.weight[0, 0] = 42.0
    assert fresh.lm_head.weight[0, 0].item() == 42.0
    # same logits as the original
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, tiny_gpt2_copy(repo)(ids).logits)


def tiny_gpt2_copy(repo):
    m = tiny_gpt2(7)
    repo.checkout("gpt2@1", m)
    return m


def test_tie_in_numpy_load_and_partial_load(repo):
    model = tiny_gpt2(1)
    v = repo.commit(model, "gpt2")
    arrays = repo.load(v)  # numpy
    assert arrays["lm_head.weight"] is arrays["transformer.wte.weight"]
    only = repo.load(v, framework="torch", keys=["lm_head.weight"])
    assert list(only) == ["lm_head.weight"]
    assert_bit_identical(model.lm_head.weight, only["lm_head.weight"])


def test_checkout_into_wrong_module_is_a_usage_error(repo):
    repo.commit(small_mlp(0), "mlp")
    with pytest.raises(UsageError, match=r"mlp@1"):
        repo.checkout("mlp@1", torch.nn.Linear(3, 3))


# -- plain zarr -----------------------------------------------------------------------------------------


def test_stored_tensors_are_plain_zarr(repo, repo_path):
    rng = np.random.default_rng(0)
    bf = torch.randn(5, 7, dtype=torch.bfloat16)
    weights = {
        "f32": torch.from_numpy(rng.standard_normal((33, 5)).astype(np.float32)),
        "i8": torch.from_numpy(rng.integers(-128, 127, (9,), dtype=np.int8)),
        "bool": torch.from_numpy(rng.integers(0, 2, (4, 4)).astype(bool)),
        "bf16": bf,
    }
    v = repo.commit(weights, "plain")
    store = LocalStore(repo_path, read_only=True)
    for name, t in weights.items():
        h = v.tensors[name].hash
        arr = zarr.open_array(store, path=f"objects/tensors/{h}", mode="r")
        data = arr[...]
        if name == "bf16":
            assert arr.dtype == np.uint16
            assert arr.attrs["nbmodelhub"]["dtype"] == "bfloat16"
            assert np.array_equal(data, t.view(torch.int16).numpy().view(np.uint16))
        else:
            assert arr.attrs["nbmodelhub"]["dtype"] == str(t.dtype).removeprefix("torch.")
            assert data.dtype == t.numpy().dtype
            assert np.array_equal(data, t.numpy())


def test_large_multichunk_tensor_is_plain_zarr_with_padded_edge_chunk(repo, repo_path):
    rng = np.random.default_rng(5)
    big = rng.standard_normal((3001, 1000)).astype(np.float32)  # 12 MB, odd first dim
    v = repo.commit({"big": big}, "big")
    h = v.tensors["big"].hash
    arr = zarr.open_array(LocalStore(repo_path, read_only=True), path=f"objects/tensors/{h}", mode="r")
    assert arr.shape == big.shape
    assert arr.nchunks >= 2
    assert big.shape[0] % arr.chunks[0] != 0  # the edge chunk is partial
    assert np.array_equal(arr[...], big)
    assert np.array_equal(arr[-3:, 17], big[-3:, 17])
    assert_bit_identical(big, repo.load(v)["big"])


# -- partial load ---------------------------------------------------------------------------------------


def test_partial_load_reads_only_the_requested_tensor(repo_path):
    rng = np.random.default_rng(1)
    weights = {f"w{i}": rng.standard_normal((600, 1000)).astype(np.float32) for i in range(3)}  # 2.4 MB each
    weights["big"] = rng.standard_normal((3001, 1000)).astype(np.float32)  # several chunks
    with mh.open(repo_path) as r:
        v = r.commit(weights, "m")
    repo, store = counting_repo(repo_path)
    hashes = {n: t.hash for n, t in v.tensors.items()}
    for wanted in ("w1", "big"):
        store.reset()
        got = repo.load("m@1", keys=[wanted])
        assert list(got) == [wanted]
        assert_bit_identical(weights[wanted], got[wanted])
        tensor_keys = [k for k in store.reads if k.startswith("objects/tensors/")]
        mine = f"objects/tensors/{hashes[wanted]}/"
        assert any(k.startswith(mine + "c/") for k in tensor_keys), tensor_keys
        strangers = [k for k in tensor_keys if not k.startswith(mine)]
        assert strangers == []
        # every chunk of the wanted tensor read exactly once
        chunks = [k for k in tensor_keys if k.startswith(mine + "c/")]
        assert all(store.reads[k] == 1 for k in chunks)
    # a glob selects by name too
    store.reset()
    got = repo.load("m@1", keys="w*")
    assert sorted(got) == ["w0", "w1", "w2"]
    assert not any(k.startswith(f"objects/tensors/{hashes['big']}") for k in store.reads)
    repo.close()


def test_load_unknown_key_names_closest(repo):
    repo.commit(numpy_weights(0), "m")
    with pytest.raises(UsageError, match=r"layer1\.weight"):
        repo.load("m", keys=["layer1.weigth"])


# -- snapshots ------------------------------------------------------------------------------------------


def test_snapshots_load_by_step_and_share_unchanged_tensors(repo, repo_path):
    model = small_mlp(4)
    s0 = state_of(model)
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    s5 = state_of(model)
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    v = repo.commit(model, "snap", step=10, snapshots={0: s0, 5: s5})
    assert v.snapshot_steps == (0, 5, 10)
    assert v.step == 10
    assert_state_equal(s5, repo.load(v, framework="torch", snapshot=5))
    assert_state_equal(s0, repo.load(v, framework="torch", snapshot=0))
    assert_state_equal(state_of(model), repo.load(v, framework="torch"))
    assert_state_equal(state_of(model), repo.load(v, framework="torch", snapshot=10))
    # 4 tensors; 3 are the same at every step, 0.weight has three values
    assert len(tensor_objects(repo_path)) == 3 + 3
    with pytest.raises(UsageError, match=r"snap@1 has no snapshot at step 7"):
        repo.load(v, snapshot=7)


# -- locations ------------------------------------------------------------------------------------------


def test_memory_repository_full_cycle():
    name = "memory://test-store-cycle"
    repo = mh.open(name)
    model = small_mlp(5)
    v = repo.commit(model, "mem", params={"lr": 0.1}, metrics={"loss": 0.5})
    again = mh.open(name)  # same name, same repository within the process
    got = again.get("mem")
    assert got.id == v.id and got.params == {"lr": 0.1}
    assert_state_equal(state_of(model), again.load("mem@1", framework="torch"))
    assert again.fsck().ok
    again.delete("mem@1")
    assert again.gc().removed.get("tensors") == 4
    with pytest.raises(RefNotFound):
        mh.open(name).get("mem")


def test_read_only_refuses_commits_and_changes_nothing(repo, repo_path):
    v = repo.commit(small_mlp(0), "mlp")
    before = all_files(repo_path)
    ro = reopen(repo_path, read_only=True)
    assert ro.get("mlp").id == v.id
    assert_state_equal(state_of(small_mlp(0)), ro.load("mlp", framework="torch"))
    with pytest.raises(ReadOnlyRepository):
        ro.commit(small_mlp(1), "mlp")
    with pytest.raises(ReadOnlyRepository):
        ro.tag("mlp@1", "best")
    with pytest.raises(ReadOnlyRepository):
        ro.delete("mlp@1")
    assert all_files(repo_path) == before
    assert [x.number for x in reopen(repo_path).versions()] == [1]


def test_read_only_on_missing_folder(tmp_path):
    with pytest.raises(mh.NotARepository):
        mh.open(tmp_path / "nothing", read_only=True)
    assert not (tmp_path / "nothing").exists()


def test_open_a_folder_holding_other_data_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hi")
    with pytest.raises(mh.NotARepository):
        mh.open(tmp_path / "stuff")


# -- commit inputs ----------------------------------------------------------------------------------------


def test_commit_numpy_dict_round_trip(repo):
    w = numpy_weights(3)
    v = repo.commit(w, "np")
    assert v.framework == "numpy"
    assert_state_equal(w, repo.load(v))
    t = repo.load(v, framework="torch")
    assert all(isinstance(x, torch.Tensor) for x in t.values())
    assert all(np.array_equal(w[k], t[k].numpy()) for k in w)


def test_commit_safetensors_file_with_bfloat16(repo, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {
        "emb": torch.randn(10, 4, dtype=torch.bfloat16),
        "w": torch.randn(4, 4),
        "h": torch.randn(3, dtype=torch.float16),
        "ids": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    v = repo.commit(path, "st")
    assert v.tensors["emb"].dtype == "bfloat16"
    assert_state_equal(state, repo.load(v, framework="torch"))
    # same content as the state dict: no new objects when committed from memory
    v2 = repo.commit(state, "st2")
    assert {n: t.hash for n, t in v.tensors.items()} == {n: t.hash for n, t in v2.tensors.items()}


def test_commit_pt_file(repo, tmp_path):
    model = small_mlp(6)
    path = tmp_path / "ckpt.pt"
    torch.save(model.state_dict(), path)
    v = repo.commit(path, "pt")
    assert_state_equal(state_of(model), repo.load(v, framework="torch"))
    assert v.source == "ckpt.pt"


class Evil:
    """Any class instance: a full unpickle of it would run arbitrary code paths."""

    def __init__(self) -> None:
        self.payload = "boom"


def test_pt_with_pickled_object_is_refused(repo, repo_path, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(3), "obj": Evil()}, path)
    before = all_files(repo_path)
    with pytest.raises(UsageError, match="weights-only"):
        repo.commit(path, "evil")
    assert all_files(repo_path) == before
    assert repo.models() == []


def test_pt_that_is_not_a_state_dict_is_refused(repo, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(UsageError):
        repo.commit(path, "m")


def _package_sources() -> list[Path]:
    root = Path(mh.__file__).resolve().parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 5
    return files


def test_package_never_imports_pickle():
    offenders = []
    for path in _package_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in ("pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib"):
                    offenders.append(f"{path}:{node.lineno} imports {n}")
    assert offenders == []


def test_package_torch_load_always_weights_only():
    offenders = []
    for path in _package_sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (
                name == "load"
                and isinstance(func, ast.Attribute)
                and ast.unparse(func.value) in ("torch", "_torch()", "torch_")
            ):
                ok = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                if not ok:
                    offenders.append(f"{path}:{node.lineno}")
            if (
                name == "load"
                and ast.unparse(func).startswith(("np.", "numpy."))
                and any(
                    k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords
                )
            ):
                offenders.append(f"{path}:{node.lineno} np.load(allow_pickle)")
    # textual fallback: any torch.load( in the text must carry weights_only=True on its call
    for path in _package_sources():
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start() : text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path}: {call}")
    assert offenders == []


# -- bad input -------------------------------------------------------------------------------------------


def _snapshot(repo, repo_path):
    return (
        [(v.model, v.number, v.id) for v in reopen(repo_path).versions()],
        tensor_objects(repo_path),
        all_files(repo_path),
    )


@pytest.mark.parametrize(
    "name", ["", "a/b", "..", "x@1", "a:b", "../up", "a..b", ".hidden", " ", "a b", "x" * 200, None, 3]
)
def test_invalid_model_names_refused(repo, repo_path, name):
    repo.commit(small_mlp(0), "ok")
    before = _snapshot(repo, repo_path)
    with pytest.raises(UsageError) as exc:
        repo.commit(small_mlp(1), name)
    assert "\n" not in str(exc.value)
    assert _snapshot(repo, repo_path) == before


def test_unicode_model_name_allowed(repo):
    model = small_mlp(0)
    v = repo.commit(model, "modèle")
    assert v.ref == "modèle@1"
    assert repo.get("modèle@1").id == v.id
    assert_state_equal(state_of(model), repo.load("modèle", framework="torch"))


class Opaque:
    pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"params": {"opt": Opaque()}},
        {"params": {"lr": float("nan")}},
        {"params": {"lr": float("inf")}},
        {"params": {"nested": {"x": [1, float("-inf")]}}},
        {"params": {1: 2}},
        {"params": "lr=0.1"},
        {"metrics": {"loss": "low"}},
        {"metrics": {"loss": [(0.5, 1.0)]}},
        {"message": 3},
        {"step": "ten"},
        {"step": 1.5},
        {"snapshots": {"a": {"w": np.zeros(2, np.float32)}}},
        {"parents": ["nosuch@1"]},
        {"files": ["/definitely/not/here.txt"]},
    ],
)
def test_bad_arguments_refused_and_repository_unchanged(repo, repo_path, kwargs):
    repo.commit(small_mlp(0), "m")
    before = _snapshot(repo, repo_path)
    with pytest.raises(ModelHubError) as exc:
        repo.commit(small_mlp(1), "m", **kwargs)
    assert str(exc.value) and "\n" not in str(exc.value)
    assert _snapshot(repo, repo_path) == before


@pytest.mark.parametrize(
    "obj",
    [
        42,
        "does/not/exist.safetensors",
        {},
        {"w": [1, 2, 3]},
        {"w": np.zeros(3, dtype=np.complex64)},
        {"w": torch.zeros(3, dtype=torch.complex64)},
        {"w": np.array(["a", "b"])},
        {"w": np.zeros(3, dtype=">f4")},
        {"w": np.zeros(3, np.float32), "v": torch.zeros(3)},
        object(),
    ],
    ids=[
        "int",
        "missing-path",
        "empty",
        "list",
        "np-complex",
        "torch-complex",
        "np-str",
        "big-endian",
        "mixed",
        "object",
    ],
)
def test_unsupported_objects_refused_and_repository_unchanged(repo, repo_path, obj):
    repo.commit(small_mlp(0), "m")
    before = _snapshot(repo, repo_path)
    with pytest.raises(ModelHubError) as exc:
        repo.commit(obj, "m")
    assert str(exc.value) and "\n" not in str(exc.value)
    assert _snapshot(repo, repo_path) == before


def test_wrong_file_suffix_and_garbage_safetensors(repo, repo_path, tmp_path):
    txt = tmp_path / "weights.txt"
    txt.write_text("nope")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for path in (txt, bad, tmp_path):
        with pytest.raises(UsageError):
            repo.commit(path, "m")
    assert repo.models() == []
    assert tensor_objects(repo_path) == set()


@pytest.mark.parametrize("key", ["", 1, None])
def test_torch_state_dict_with_bad_tensor_names_refused(repo, repo_path, key):
    """The numpy adapter refuses non-string or empty names; a torch state dict must too."""
    repo.commit(small_mlp(0), "m")
    before = _snapshot(repo, repo_path)
    with pytest.raises(UsageError):
        repo.commit({key: torch.zeros(2), "ok": torch.ones(2)}, "m")
    assert _snapshot(repo, repo_path) == before


def test_nan_metrics_allowed_and_round_trip(repo, repo_path):
    v = repo.commit(
        small_mlp(0),
        "m",
        metrics={
            "loss": float("nan"),
            "ppl": float("inf"),
            "neg": float("-inf"),
            "acc": 0.9,
            "curve": [(0, 1.0), (1, float("nan"))],
        },
    )
    for version in (v, reopen(repo_path).get("m@1")):
        assert math.isnan(version.metrics["loss"])
        assert version.metrics["ppl"] == math.inf
        assert version.metrics["neg"] == -math.inf
        assert version.metrics["acc"] == 0.9
        assert version.curves["curve"][0] == (0, 1.0)
        assert math.isnan(version.curves["curve"][1][1])
        assert math.isnan(version.metrics["curve"])


def test_params_round_trip_numpy_scalars_and_tuples(repo, repo_path):
    v = repo.commit(
        small_mlp(0),
        "m",
        params={"lr": np.float32(0.5), "sizes": (1, 2), "opt": {"name": "adam", "betas": [0.9, 0.99]}, "x": None},
    )
    got = reopen(repo_path).get(v.ref).params
    assert got == {"lr": 0.5, "sizes": [1, 2], "opt": {"name": "adam", "betas": [0.9, 0.99]}, "x": None}
