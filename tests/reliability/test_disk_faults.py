"""A full disk and a read-only mount: one clear error, nothing half-written visible, nothing lost.

Real devices: each test mounts a small tmpfs (we run as root; without the right to mount the tests
skip and say why), fills it or remounts it read-only, and drives the real store against it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import all_files

import nbmodelhub as mh
from nbmodelhub.errors import DiskFull, ReadOnlyRepository
from reliability.conftest import trials
from reliability.damage_helpers import can_mount, remount, run_cli, tmpfs


@pytest.fixture(scope="module")
def mountable(tmp_path_factory: pytest.TempPathFactory) -> None:
    reason = can_mount(tmp_path_factory.mktemp("probe"))
    if reason:
        pytest.skip(reason)


@pytest.fixture
def device(tmp_path: Path, mountable: None) -> Iterator[Path]:
    """An 8 MB tmpfs, unmounted after the test."""
    with tmpfs(tmp_path / "dev", "8m") as where:
        yield where


def _weights(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    # Random floats: the codec cannot shrink them, so each commit costs what it says.
    return {"w": rng.standard_normal((rows, 256)).astype(np.float32), "b": rng.standard_normal(rows).astype(np.float32)}


def _assert_versions(path: Path, states: dict[str, dict[str, np.ndarray]]) -> None:
    """Exactly these versions are visible, each loads bit-identically, and fsck is clean."""
    with mh.open(path) as repo:
        assert sorted(v.ref for v in repo.versions()) == sorted(states)
        for ref, state in states.items():
            got = repo.load(ref)
            assert {k: got[k].tobytes() for k in got} == {k: v.tobytes() for k, v in state.items()}, ref
        report = repo.fsck()
        assert report.ok, report.problems


def _fill_until_full(repo: mh.Repository, rng: np.random.Generator, states: dict[str, Any], rows: int) -> DiskFull:
    for _ in range(2000):
        w = _weights(rng, int(rng.integers(1, rows)))
        try:
            v = repo.commit(w, "m", params={"lr": float(rng.random())}, metrics={"loss": float(rng.random())})
        except DiskFull as exc:
            return exc
        states[v.ref] = w
    raise AssertionError("the 8 MB device never filled")


@pytest.mark.parametrize("trial", range(trials(20, 4)))
def test_disk_full_mid_commit(device: Path, trial: int) -> None:
    rng = np.random.default_rng(trial)
    path = device / "repo"
    states: dict[str, dict[str, np.ndarray]] = {}
    with mh.open(path) as repo:
        w = _weights(rng, 64)
        states[repo.commit(w, "m").ref] = w
    # A filler of random size moves the moment the device runs out. Odd trials leave a few pages and
    # commit tiny versions, so the last write may be a chunk, a zarr.json, the record, an event or the ref.
    filler = device / "other-users-file"
    free = os.statvfs(device).f_bavail * os.statvfs(device).f_frsize
    fine = trial % 2 == 1
    room = int(rng.integers(0, 200 << 10)) if fine else int(rng.integers(1 << 20, 4 << 20))
    filler.write_bytes(os.urandom(max(0, free - room)))
    with mh.open(path) as repo:
        error = _fill_until_full(repo, rng, states, 8 if fine else 1024)
    message = str(error)
    assert "\n" not in message and "full" in message and "dlv gc" in message and str(path) in message
    _assert_versions(path, states)
    code, out, _err = run_cli("--repo", str(path), "list")
    assert code == 0 and len(out.splitlines()) == len(states) + 2
    # Free space the way the message says: remove something, then gc takes back the failed write's debris.
    filler.unlink()
    with mh.open(path) as repo:
        oldest = min(states, key=lambda r: int(r.split("@")[1]))
        repo.delete(oldest)
        del states[oldest]
        repo.gc()
        w = _weights(rng, 64)
        states[repo.commit(w, "m").ref] = w
    _assert_versions(path, states)
    with mh.open(path) as repo:
        assert repo.fsck().debris == 0


def test_disk_full_reported_by_the_cli_in_one_line(device: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    big = tmp_path / "big.safetensors"
    save_file(_weights(np.random.default_rng(1), 9000), str(big))  # 9.2 MB: more than the device holds
    path = device / "repo"
    before = all_files(path) if path.exists() else {}
    code, out, err = run_cli("--repo", str(path), "commit", str(big), "-n", "big")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "is full" in err and "dlv gc" in err, err
    with mh.open(path) as repo:
        assert repo.versions() == [] and repo.fsck().ok
    assert not before or set(before) <= set(all_files(path))


def test_disk_full_mid_archive(device: Path) -> None:
    rng = np.random.default_rng(7)
    path = device / "repo"
    states: dict[str, dict[str, np.ndarray]] = {}
    with mh.open(path) as repo:
        w = _weights(rng, 1024)
        for step in range(4):  # a fine-tune: each version a small step from the last
            w = {k: (v + rng.standard_normal(v.shape).astype(np.float32) * 1e-3) for k, v in w.items()}
            states[repo.commit(w, "ft", step=step).ref] = w
    free = os.statvfs(device).f_bavail * os.statvfs(device).f_frsize
    filler = device / "filler"
    filler.write_bytes(b"\0" * max(0, free - (300 << 10)))  # leave 300 kB: archive writes beside, then switches
    with mh.open(path) as repo, pytest.raises(DiskFull) as exc:
        repo.archive("ft")
    assert "\n" not in str(exc.value)
    _assert_versions(path, states)
    filler.unlink()
    with mh.open(path) as repo:
        repo.gc()
        report = repo.archive("ft")
        assert report.tensors == 8 and report.bytes_after < report.bytes_before
    _assert_versions(path, states)


def test_disk_full_mid_pull(tmp_path: Path, mountable: None) -> None:
    rng = np.random.default_rng(3)
    hub = tmp_path / "hub"
    with mh.open(tmp_path / "src") as src:
        w = _weights(rng, 6000)  # 6 MB
        src.commit(w, "big")
        src.publish("big", hub)
    with tmpfs(tmp_path / "small", "4m") as small:
        path = small / "repo"
        keep = _weights(rng, 64)
        with mh.open(path) as repo:
            repo.commit(keep, "keep")
            with pytest.raises(DiskFull):
                repo.pull("big", hub)
        _assert_versions(path, {"keep@1": keep})
        remount(small, "size=32m")
        with mh.open(path) as repo:
            repo.gc()
            assert repo.pull("big", hub).ref == "big@1"
        _assert_versions(path, {"keep@1": keep, "big@1": w})


# -- read-only ---------------------------------------------------------------------------------------


@pytest.fixture
def read_only_repo(device: Path) -> Iterator[tuple[Path, dict[str, dict[str, np.ndarray]]]]:
    rng = np.random.default_rng(11)
    path = device / "repo"
    states = {}
    with mh.open(path) as repo:
        for _ in range(3):
            w = _weights(rng, 64)
            states[repo.commit(w, "m").ref] = w
        repo.tag("m@1", "prod")
        repo.versions()  # the catalog index exists, as in daily use
    remount(device, "ro")
    yield path, states
    remount(device, "rw")


WRITES: dict[str, Callable[[mh.Repository, Path], Any]] = {
    "commit": lambda r, _: r.commit({"w": np.ones((4, 4), np.float32)}, "m"),
    "commit-new-model": lambda r, _: r.commit({"w": np.ones((4, 4), np.float32)}, "fresh"),
    "tag": lambda r, _: r.tag("m@2", "dev"),
    "move-tag": lambda r, _: r.tag("m@3", "prod", force=True),
    "delete": lambda r, _: r.delete("m@1"),
    "gc": lambda r, _: r.gc(),
    "archive": lambda r, _: r.archive("m"),
    "copy": lambda r, _: r.copy("m@1", "c"),
    "add": lambda r, p: r.add([p]),
    "set-card": lambda r, _: r.set_card("m", description="x"),
}


@pytest.mark.parametrize("op", list(WRITES))
def test_read_only_mount(read_only_repo: tuple[Path, dict[str, Any]], tmp_path: Path, op: str) -> None:
    path, states = read_only_repo
    before = all_files(path)
    (tmp_path / "notes.txt").write_text("notes")
    with mh.open(path) as repo, pytest.raises(ReadOnlyRepository) as exc:
        WRITES[op](repo, tmp_path / "notes.txt")
    assert "\n" not in str(exc.value) and "Read-only file system" in str(exc.value)
    # reading still works, and nothing changed on disk
    _assert_versions(path, states)
    with mh.open(path) as repo:
        assert repo.get("m:prod").ref == "m@1"
        assert repo.diff("m@1", "m@2") is not None
        assert repo.describe("m@3") is not None
    assert all_files(path) == before


@pytest.mark.parametrize(
    "argv",
    [["tag", "m@2", "dev"], ["delete", "m@1"], ["gc"], ["archive", "m"], ["copy", "m@1", "c"]],
    ids=lambda a: a[0],
)
def test_read_only_mount_cli(read_only_repo: tuple[Path, dict[str, Any]], argv: list[str]) -> None:
    path, _ = read_only_repo
    before = all_files(path)
    code, out, err = run_cli("--repo", str(path), *argv)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "Read-only file system" in err, err
    for reading in (["list"], ["fsck"], ["diff", "m@1", "m@3"], ["log", "m"]):
        assert run_cli("--repo", str(path), *reading)[0] == 0, reading
    assert all_files(path) == before
