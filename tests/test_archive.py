"""PAS archive: lossless over every dtype and a GPT-2 training series, approximate reads, plan bounds,
unpack, gc keeping delta bases, fsck of archived encodings, plain-zarr planes, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from conftest import (
    assert_bit_identical,
    assert_state_equal,
    counting_repo,
    reopen,
    state_of,
    tiny_gpt2,
)

import nbmodelhub as mh
from nbmodelhub.cli import main as dlv
from nbmodelhub.errors import ConcurrentUpdate, UsageError
from nbmodelhub.store import archived, planes
from nbmodelhub.store.archive import LOCK
from nbmodelhub.store.documents import group_node


def drift(rng: np.random.Generator, state: dict[str, np.ndarray], scale: float = 1e-3) -> dict[str, np.ndarray]:
    """The next 'training step': small changes to every float, integers and bools left or flipped a bit."""
    out = {}
    for name, a in state.items():
        if a.dtype.kind == "f":
            size = float(np.abs(a[np.isfinite(a)]).mean()) if a.size else 1.0
            out[name] = np.asarray(a + (rng.standard_normal(a.shape) * scale * size).astype(a.dtype))
        elif a.dtype == np.bool_:
            out[name] = a ^ (rng.random(a.shape) < 0.05)
        else:
            out[name] = np.asarray(a + rng.integers(0, 2, a.shape).astype(a.dtype))
    return out


def every_dtype(rng: np.random.Generator) -> dict[str, np.ndarray]:
    w = {
        "f64": rng.standard_normal((70, 9)),
        "f32": rng.standard_normal((300, 40)).astype(np.float32) * 0.02,
        "f16": rng.standard_normal((33, 17)).astype(np.float16),
        "i64": rng.integers(-(10**12), 10**12, (50,)),
        "i32": rng.integers(-1000, 1000, (8, 8)).astype(np.int32),
        "i16": rng.integers(-1000, 1000, (40,)).astype(np.int16),
        "i8": rng.integers(-100, 100, (40,)).astype(np.int8),
        "u8": rng.integers(0, 255, (3, 5, 7)).astype(np.uint8),
        "u16": rng.integers(0, 60000, (40,)).astype(np.uint16),
        "u32": rng.integers(0, 2**31, (40,)).astype(np.uint32),
        "u64": rng.integers(0, 2**62, (40,)).astype(np.uint64),
        "bool": rng.random((64,)) < 0.5,
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 5), dtype=np.float32),
    }
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45, -3.0], dtype=np.float32)
    w["special"] = special
    return w


def bf16_series(rng: np.random.Generator, steps: int) -> list[dict[str, np.ndarray]]:
    import torch

    t = torch.randn(200, 30, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    out = []
    for _ in range(steps):
        out.append({"w": t.clone()})
        t = (t.float() + 1e-3 * torch.randn(t.shape)).to(torch.bfloat16)
    return out  # type: ignore[return-value]


@pytest.fixture
def history(repo):
    """A model with 5 versions of every dtype; returns the states in commit order."""
    rng = np.random.default_rng(0)
    states = [every_dtype(rng)]
    for _ in range(4):
        states.append(drift(rng, states[-1]))
    for i, s in enumerate(states):
        repo.commit(s, "every", message=f"step {i}")
    return states


def check_all(repo: mh.Repository, states: list[dict[str, np.ndarray]], model: str = "every") -> None:
    for i, state in enumerate(states):
        assert_state_equal(state, repo.load(f"{model}@{i + 1}"))


def test_archive_is_lossless_over_every_dtype(repo, repo_path, history):
    report = repo.archive("every", max_chain=2)
    assert report.deltas > 0 and report.whole > 0
    assert report.longest_chain <= 2
    assert report.rewritten == report.tensors
    fresh = reopen(repo_path)
    check_all(fresh, history)
    # every tensor of every version now reads from its archived form only
    committed = [
        t.hash
        for v in fresh.versions()
        for t in v.tensors.values()
        if archived.is_committed(fresh.store.backend, t.hash)
    ]
    assert committed == []
    assert fresh.fsck().ok


def test_bfloat16_and_snapshots_archive_losslessly(repo):
    series = bf16_series(np.random.default_rng(0), 4)
    repo.commit(series[-1], "bf", snapshots={i: s for i, s in enumerate(series[:-1])}, step=len(series) - 1)
    report = repo.archive("bf")
    assert report.deltas >= 1  # consecutive snapshots of one version are related
    for step, state in enumerate(series):
        assert_bit_identical(state["w"], repo.load("bf", framework="torch", snapshot=step)["w"])


def test_archived_tensors_read_through_every_reader(repo, history):
    repo.archive("every")
    v = repo.get("every@5")
    d = repo.describe("every@5", bins=8)  # stats streamed over archived chunks
    stats = {t["name"]: t for layer in d["layers"] for t in layer["tensors"].values()}
    assert stats["f32"]["max"] == pytest.approx(float(history[-1]["f32"].max()))
    assert stats["i64"]["min"] == pytest.approx(float(history[-1]["i64"].min()))
    diff = repo.diff("every@4", "every@5")
    assert "f32" in json.dumps(diff.to_dict())
    # streamed rows equal the loaded tensor, chunk by chunk
    info = v.tensors["f32"]
    rows = np.concatenate(list(repo.store.iter_tensor(info.hash, info.dtype, info.shape, "f32")))
    assert rows.tobytes() == history[-1]["f32"].tobytes()
    maxima = repo.store.map_chunks(info.hash, info.dtype, info.shape, "f32", lambda r: float(np.max(r)))
    assert max(maxima) == float(history[-1]["f32"].max())


def test_checkout_of_an_archived_gpt2_series_is_bit_identical(repo):
    import torch

    model = tiny_gpt2(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    states = []
    for _ in range(4):
        states.append(state_of(model))
        repo.commit(model, "gpt")
        x = torch.randint(0, 50, (2, 8))
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    report = repo.archive("gpt")
    assert report.deltas > 0
    assert report.bytes_after < report.bytes_before
    for i, state in enumerate(states):
        target = tiny_gpt2(99)
        repo.checkout(f"gpt@{i + 1}", target)
        assert_state_equal(state, state_of(target))


def test_bf16_read_truncates_and_reads_only_high_planes(repo_path):
    rng = np.random.default_rng(3)
    w = {"a": rng.standard_normal((512, 256)).astype(np.float32), "b": rng.standard_normal((64,))}
    w2 = drift(rng, w)
    with mh.open(repo_path) as r:
        r.commit(w, "m")
        r.commit(w2, "m")
        r.archive("m", max_chain=1)
    repo, counter = counting_repo(repo_path)
    full = repo.load("m@2")
    full_bytes = repo.store.backend.bytes_read
    counter.reset()
    approx = repo.load("m@2", precision="bf16")
    approx_bytes = repo.store.backend.bytes_read - full_bytes
    assert approx_bytes < 0.6 * full_bytes
    # only planes 0 and 1 of the float32 tensor were fetched
    plane_reads = {
        k.split("/")[4]
        for k in counter.reads
        if k.startswith("objects/archive/") and "/c/" in k and repo.get("m@2").tensors["a"].hash in k
    }
    assert plane_reads == {"0", "1"}
    expected = (w2["a"].view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    assert approx["a"].tobytes() == expected.tobytes()
    # float64 keeps 3 planes for bf16 (sign, 11 exponent bits, 12 mantissa bits)
    mask = np.uint64(0xFFFFFF0000000000)
    assert approx["b"].tobytes() == (w2["b"].view(np.uint64) & mask).view(np.float64).tobytes()
    assert full["a"].tobytes() == w2["a"].tobytes()
    fp16 = repo.load("m@2", precision="fp16")["a"]
    assert fp16.tobytes() == (w2["a"].view(np.uint32) & np.uint32(0xFFFFFF00)).view(np.float32).tobytes()


def test_approximate_read_of_a_commit_form_tensor_truncates_too(repo):
    a = np.random.default_rng(0).standard_normal((10, 10)).astype(np.float32)
    repo.commit({"a": a}, "m")
    got = repo.load("m", precision="bf16")["a"]
    assert got.tobytes() == (a.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).tobytes()
    with pytest.raises(UsageError, match="precision"):
        repo.load("m", precision="fp8")


def test_plan_respects_max_chain_and_recreate_bytes(repo, history):
    report = repo.archive("every", max_chain=1)
    assert report.longest_chain <= 1
    for v in repo.versions():
        for t in v.tensors.values():
            chain, digest = 0, t.hash
            while (enc := archived.current_encoding(repo.store.backend, digest)) and enc.base:
                chain, digest = chain + 1, enc.base
            assert chain <= 1
    whole = repo.archive("every", max_chain=0)
    assert whole.deltas == 0 and whole.rewritten > 0
    tight = repo.archive("every", max_chain=5, max_recreate_bytes=1)
    assert tight.deltas == 0  # no delta chain fits in one byte
    check_all(repo, history)


def test_unpack_restores_the_commit_form(repo, repo_path, history):
    repo.archive("every")
    report = repo.archive("every", unpack=True)
    assert report.unpacked and report.rewritten == report.tensors
    fresh = reopen(repo_path)
    check_all(fresh, history)
    assert not any((repo_path / "objects" / "archive").glob("*/zarr.json"))
    assert fresh.fsck().ok
    assert fresh.archive("every").rewritten == report.tensors  # and it archives again


def test_rearchive_switches_encodings_and_leaves_nothing_behind(repo, repo_path, history):
    repo.archive("every", max_chain=3)
    second = repo.archive("every", max_chain=3)
    assert second.rewritten == 0 and second.unchanged == second.tensors
    repo.archive("every", max_chain=0)
    check_all(reopen(repo_path), history)
    # one encoding per archived tensor: the old ones were removed after the switch
    for obj in (repo_path / "objects" / "archive").iterdir():
        if obj.is_dir():
            assert sorted(p.name for p in obj.iterdir()) == ["whole", "zarr.json"]


def test_gc_removes_a_killed_writes_temp_file_beside_an_encoding(repo, repo_path, history):
    # A local write killed midway leaves `zarr.<id>.partial` next to its target: gc clears it
    # (it is a file, not a folder) and the archived model still loads.
    repo.archive("every", max_chain=2)
    obj = next(p for p in (repo_path / "objects" / "archive").iterdir() if p.is_dir())
    stray = obj / "zarr.0123456789abcdef0123456789abcdef.partial"
    stray.write_bytes(b'{"half": ')
    report = reopen(repo_path).gc()
    assert not stray.exists()
    assert report.removed.get("archive leftovers") == 1
    check_all(reopen(repo_path), history)


def test_gc_keeps_delta_bases_of_deleted_versions(repo, repo_path, history):
    repo.archive("every", max_chain=4)
    bases = set()
    for v in repo.versions():
        for t in v.tensors.values():
            enc = archived.current_encoding(repo.store.backend, t.hash)
            if enc is not None and enc.base:
                bases.add(enc.base)
    assert bases
    # delete every version but the last: the older tensors it is a delta of must survive gc
    for n in range(1, 5):
        repo.delete(f"every@{n}")
    repo.gc()
    fresh = reopen(repo_path)
    assert_state_equal(history[-1], fresh.load("every@5"))
    assert fresh.fsck().ok
    # unpacking the survivor and collecting frees the bases
    fresh.archive("every", unpack=True)
    report = fresh.gc()
    assert report.removed.get("archive", 0) > 0
    assert_state_equal(history[-1], reopen(repo_path).load("every@5"))


def test_fsck_reports_a_damaged_plane(repo, repo_path, history):
    repo.archive("every", max_chain=1)
    digest = repo.get("every@3").tensors["f32"].hash
    enc = archived.current_encoding(repo.store.backend, digest)
    assert enc is not None
    chunk = next(p for p in (repo_path / enc.path / "3" / "c").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    report = reopen(repo_path).fsck()
    assert not report.ok
    assert any("f32" in p and ("damaged" in p or "hash" in p) for p in report.problems)


def test_fsck_checks_the_archived_form_even_when_the_commit_form_is_back(repo, repo_path, history):
    repo.archive("every", max_chain=0)
    digest = repo.get("every@2").tensors["f32"].hash
    # a commit form beside the archived one (as after a crash between switch and cleanup)
    tensor = repo.store.read_tensor(digest, "float32", (300, 40), "f32")
    repo.store.write_tensor(digest, tensor)
    enc = archived.current_encoding(repo.store.backend, digest)
    assert enc is not None
    for chunk in (repo_path / enc.path / "0" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"garbage")
    assert_state_equal(history[1], reopen(repo_path).load("every@2"))  # the commit form is read
    assert not reopen(repo_path).fsck().ok  # but the archived form is checked


def test_planes_are_plain_zarr(repo, repo_path):
    a = np.random.default_rng(0).standard_normal((1000, 33)).astype(np.float32)
    b = drift(np.random.default_rng(1), {"a": a})["a"]
    repo.commit({"a": a}, "m")
    repo.commit({"a": b}, "m")
    repo.archive("m", max_chain=1)
    root = zarr.open_group(str(repo_path), mode="r")
    ha, hb = repo.get("m@1").tensors["a"].hash, repo.get("m@2").tensors["a"].hash

    # the documented recipe: read the planes with zarr, undo the delta, interleave
    def planes_of(h: str) -> tuple[list[np.ndarray], dict]:
        group = root[f"objects/archive/{h}"]
        info = group.attrs["nbmodelhub"]
        enc = root[f"objects/archive/{h}/{info['encoding']}"]
        return [np.asarray(enc[str(j)][...]) for j in range(info["planes"])], info

    def value(h: str) -> np.ndarray:
        ps, info = planes_of(h)
        if info["base"] is not None:
            base = value(info["base"])
            bps = [base.view(np.uint8).reshape(*base.shape, 4)[..., 3 - j] for j in range(4)]
            ps = [p ^ q if info["op"] == "xor" else (p + q).astype(np.uint8) for p, q in zip(ps, bps, strict=True)]
        return np.stack(ps[::-1], axis=-1).view("<f4")[..., 0]

    encodings = [archived.current_encoding(repo.store.backend, h) for h in (ha, hb)]
    assert any(e is not None and e.base for e in encodings)
    assert value(ha).tobytes() == a.tobytes()
    assert value(hb).tobytes() == b.tobytes()


def test_plane_split_and_merge_round_trip_every_width():
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        x = rng.integers(0, np.iinfo(dtype).max, 1000, dtype=dtype)
        flat = x.view(np.uint8)
        ps = planes.split(flat, x.itemsize)
        assert ps[0].tobytes() == (x >> (8 * (x.itemsize - 1))).astype(np.uint8).tobytes()  # high byte first
        out = np.zeros_like(flat)
        planes.merge(ps, x.itemsize, out)
        assert out.tobytes() == flat.tobytes()


def test_a_second_archive_waits_for_none(repo, repo_path, history):
    repo.store.backend.create(LOCK, group_node({"time": 0, "token": "x", "host": "elsewhere", "pid": 1}))
    with pytest.raises(ConcurrentUpdate, match="another archive is running"):
        repo.archive("every")
    check_all(repo, history)


def test_archive_errors_are_one_clear_line(repo, history, capsys, repo_path):
    with pytest.raises(UsageError, match="no model 'nope'"):
        repo.archive("nope")
    with pytest.raises(UsageError, match="max_chain"):
        repo.archive("every", max_chain=-1)
    assert dlv(["--repo", str(repo_path), "archive"]) == 2
    assert "give --all" in capsys.readouterr().err
    assert dlv(["--repo", str(repo_path), "archive", "every", "--max-recreate-bytes", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err


def test_cli_archive_and_unpack(repo_path, history, capsys):
    assert dlv(["--repo", str(repo_path), "archive", "--all", "--max-chain", "2", "--max-recreate-bytes", "1MiB"]) == 0
    out = capsys.readouterr().out
    assert "archived" in out and "deltas" in out
    assert dlv(["--repo", str(repo_path), "--json", "archive", "every"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unchanged"] + report["rewritten"] == report["tensors"]
    assert dlv(["--repo", str(repo_path), "archive", "every", "--unpack"]) == 0
    assert "unpacked" in capsys.readouterr().out
    check_all(reopen(repo_path), history)
    assert dlv(["--repo", str(repo_path), "fsck"]) == 0


def test_commit_after_archive_dedups_against_archived_tensors(repo, repo_path, history):
    repo.archive("every")
    before = sorted(p.name for p in (repo_path / "objects" / "tensors").iterdir() if p.is_dir())
    repo.commit(history[2], "again")
    after = sorted(p.name for p in (repo_path / "objects" / "tensors").iterdir() if p.is_dir())
    assert before == after  # nothing rewritten: every tensor was found archived
    assert_state_equal(history[2], repo.load("again"))
