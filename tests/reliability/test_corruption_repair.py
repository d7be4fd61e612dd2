"""Every kind of damage is found and named, contained, and repaired from a hub that has the objects.

tests/test_corruption.py covers tensor chunks in depth (many flip positions, swapped chunks, a
shared 10 MB tensor); this suite covers each kind of object once — tensors, files, layer graphs,
version records, refs, archived (PAS) planes — end to end: fsck, load, the CLI, and
``fsck --repair`` from a folder hub and an S3 hub.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hub.conftest import bucket, s3_hub, s3_server  # noqa: F401  (the S3 hub tests' fixtures, registered here)

import nbmodelhub as mh
from nbmodelhub import CorruptObject
from nbmodelhub.store import archived
from reliability.conftest import trials
from reliability.damage_helpers import Setup, assert_intact, flip, make_setup, only_file, run_cli

Reader = Callable[[mh.Repository, str], Any]


def _load(repo: mh.Repository, ref: str) -> Any:
    return repo.load(ref)


def _graph(repo: mh.Repository, ref: str) -> Any:
    return repo.graph(ref)


def _get(repo: mh.Repository, ref: str) -> Any:
    return repo.get(ref)


def _pull_files_to(tmp: Path) -> Reader:
    return lambda repo, ref: repo.pull_files(ref, tmp / "pulled")


@dataclass
class Case:
    affected: list[str]  # the versions that use the damaged object
    name: str  # how messages name the object
    read: Reader  # reading the object through a version


def _tensor_dir(s: Setup, ref: str, name: str) -> Path:
    return s.path / "objects/tensors" / s.tensor_hash(ref, name)


def flipped_chunk(s: Setup, tmp: Path) -> Case:
    flip(only_file(_tensor_dir(s, "victim@2", "enc.weight") / "c"), 40)
    return Case(["victim@2"], "tensor 'enc.weight'", _load)


def truncated_chunk(s: Setup, tmp: Path) -> Case:
    chunk = only_file(_tensor_dir(s, "victim@2", "head.weight") / "c")
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    return Case(["victim@1", "victim@2"], "tensor 'head.weight'", _load)


def deleted_chunk(s: Setup, tmp: Path) -> Case:
    only_file(_tensor_dir(s, "victim@2", "enc.bias") / "c").unlink()
    return Case(["victim@1", "victim@2"], "tensor 'enc.bias'", _load)


def deleted_tensor(s: Setup, tmp: Path) -> Case:
    shutil.rmtree(_tensor_dir(s, "victim@2", "enc.weight"))
    return Case(["victim@2"], "tensor 'enc.weight'", _load)


def garbled_tensor_metadata(s: Setup, tmp: Path) -> Case:
    (_tensor_dir(s, "victim@1", "enc.weight") / "zarr.json").write_text('{"zarr_format": 3, "node_')
    return Case(["victim@1"], "tensor 'enc.weight'", _load)


def deleted_graph(s: Setup, tmp: Path) -> Case:
    shutil.rmtree(s.path / "objects/graphs" / s.records["victim@1"]["graph"])
    return Case(["victim@1", "victim@2"], "layer graph", _graph)


def garbled_graph(s: Setup, tmp: Path) -> Case:
    path = s.path / "objects/graphs" / s.records["victim@2"]["graph"] / "zarr.json"
    path.write_text(path.read_text().replace('"nodes"', '"modes"', 1))
    return Case(["victim@1", "victim@2"], "layer graph", _graph)


def deleted_file(s: Setup, tmp: Path) -> Case:
    shutil.rmtree(s.path / "objects/files" / s.file_hash("victim@2", "notes.md"))
    return Case(["victim@2"], "file 'notes.md'", _pull_files_to(tmp))


def flipped_file(s: Setup, tmp: Path) -> Case:
    flip(only_file(s.path / "objects/files" / s.file_hash("victim@1", "train.py") / "c"), -3)
    return Case(["victim@1", "victim@2"], "file 'train.py'", _pull_files_to(tmp))


def garbled_version_record(s: Setup, tmp: Path) -> Case:
    path = s.path / "objects/versions" / s.records["victim@2"]["id"] / "zarr.json"
    path.write_text(path.read_text()[:-20])
    return Case(["victim@2"], "version record", _get)


def altered_version_record(s: Setup, tmp: Path) -> Case:
    path = s.path / "objects/versions" / s.records["victim@1"]["id"] / "zarr.json"
    path.write_text(path.read_text().replace('"first"', '"forged"'))
    return Case(["victim@1"], "version record", _get)


def garbled_ref(s: Setup, tmp: Path) -> Case:
    (s.path / "refs/models/victim/versions/2/zarr.json").write_text('{"zarr_format": 3, "attrib')
    return Case(["victim@2"], "ref victim@2", _get)


def archived_plane(s: Setup, tmp: Path) -> Case:
    with s.repo() as repo:
        repo.archive("victim", max_chain=0)  # every tensor whole: the damage stays in one version
    digest = s.tensor_hash("victim@2", "enc.weight")
    enc = archived.current_encoding(mh.open(s.path).store.backend, digest)
    assert enc is not None and enc.base is None
    flip(only_file(s.path / "objects/archive" / digest / enc.name / "0" / "c"), 7)
    return Case(["victim@2"], "tensor 'enc.weight'", _load)


def archived_delta_base(s: Setup, tmp: Path) -> Case:
    """A damaged delta base: every tensor read through it is affected, and named."""
    with s.repo() as repo:
        repo.archive("victim")
    v1, v2 = s.tensor_hash("victim@1", "enc.weight"), s.tensor_hash("victim@2", "enc.weight")
    backend = mh.open(s.path).store.backend
    encs = {d: archived.current_encoding(backend, d) for d in (v1, v2)}
    base = next((e.base for e in encs.values() if e is not None and e.base in (v1, v2)), None)
    assert base is not None, encs  # x2 is one exponent step: the plan stores one as a delta of the other
    enc = encs[base]
    assert enc is not None
    flip(only_file(s.path / "objects/archive" / base / enc.name / "1" / "c"), 5)
    return Case(["victim@1", "victim@2"], "tensor 'enc.weight'", _load)


CASES = {
    f.__name__: f
    for f in (
        flipped_chunk,
        truncated_chunk,
        deleted_chunk,
        deleted_tensor,
        garbled_tensor_metadata,
        deleted_graph,
        garbled_graph,
        deleted_file,
        flipped_file,
        garbled_version_record,
        altered_version_record,
        garbled_ref,
        archived_plane,
        archived_delta_base,
    )
}


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return make_setup(tmp_path)


@pytest.fixture
def hub(setup: Setup, tmp_path: Path) -> str:
    """A folder hub holding every version (published before any damage), named origin."""
    url = str(tmp_path / "hub")
    with setup.repo() as repo:
        repo.add_remote("origin", url)
        repo.publish("victim@2", "origin")
        repo.publish("good@1", "origin")
    return url


@pytest.mark.parametrize("kind", list(CASES))
def test_damage_is_found_named_and_contained(setup: Setup, tmp_path: Path, kind: str) -> None:
    case = CASES[kind](setup, tmp_path)
    with setup.repo() as repo:
        report = repo.fsck()
    assert not report.ok
    for ref in case.affected:
        assert any(ref in p and case.name in p for p in report.problems), (ref, report.problems)
    for problem in report.problems:  # nothing else is blamed
        assert case.name in problem and any(ref in problem for ref in case.affected), problem
        assert "\n" not in problem
    for ref in case.affected:
        with setup.repo() as repo, pytest.raises(CorruptObject) as exc:
            case.read(repo, ref)
        message = str(exc.value)
        assert ref in message and case.name in message and "\n" not in message, message
    for ref in set(setup.states) - set(case.affected):
        assert_intact(setup, ref, tmp_path)
    code, out, err = run_cli("--repo", str(setup.path), "fsck")
    assert code != 0
    assert out.splitlines() == report.problems
    assert err.count("\n") == 1 and f"{len(report.problems)} problem" in err


@pytest.mark.parametrize("kind", list(CASES))
def test_fsck_repair_from_a_folder_hub(setup: Setup, hub: str, tmp_path: Path, kind: str) -> None:
    case = CASES[kind](setup, tmp_path)
    hub_before = {p: p.read_bytes() for p in Path(hub).rglob("*") if p.is_file()}
    with setup.repo() as repo:
        report = repo.fsck(repair_from="origin")
    assert report.ok, report.problems
    assert report.repaired and not report.unrepaired, report
    assert all(hub in line for line in report.repaired)
    assert any(case.name in line for line in report.repaired), report.repaired
    for ref in setup.states:
        assert_intact(setup, ref, tmp_path)
    with setup.repo() as repo:
        again = repo.fsck()
    assert again.ok and again.problems == [], again
    # the hub was only read
    assert {p: p.read_bytes() for p in Path(hub).rglob("*") if p.is_file()} == hub_before


def test_cli_repair_from_the_default_remote(setup: Setup, hub: str, tmp_path: Path) -> None:
    deleted_tensor(setup, tmp_path)
    flipped_file(setup, tmp_path)
    code, out, err = run_cli("--repo", str(setup.path), "fsck", "--repair")
    assert code == 0, (out, err)
    lines = out.splitlines()
    assert sum("restored" in line and hub in line for line in lines) == 2, lines
    assert lines[-1].startswith("OK:")
    for ref in setup.states:
        assert_intact(setup, ref, tmp_path)


def test_repair_when_the_hub_lacks_the_object(setup: Setup, tmp_path: Path) -> None:
    hub = str(tmp_path / "small-hub")
    with setup.repo() as repo:
        repo.publish("good@1", hub)  # the hub never saw victim
    deleted_tensor(setup, tmp_path)
    flipped_chunk_good = setup.path / "objects/tensors" / setup.tensor_hash("good@1", "g.bias")
    flip(only_file(flipped_chunk_good / "c"), 11)
    with setup.repo() as repo:
        report = repo.fsck(repair_from=hub)
    assert [line.split(":")[0] for line in report.repaired] == ["good@1"], report.repaired
    assert len(report.unrepaired) == 1 and "victim@2: tensor 'enc.weight'" in report.unrepaired[0]
    assert "has no copy" in report.unrepaired[0] and hub in report.unrepaired[0]
    assert not report.ok and len(report.problems) == 1 and "victim@2" in report.problems[0]
    assert_intact(setup, "good@1", tmp_path)
    assert_intact(setup, "victim@1", tmp_path)
    code, out, err = run_cli("--repo", str(setup.path), "fsck", "--repair", hub)
    assert code == 1 and "not repaired" in out and "1 problem" in err


def test_repair_never_writes_a_damaged_hub_copy(setup: Setup, hub: str, tmp_path: Path) -> None:
    digest = setup.tensor_hash("victim@2", "enc.weight")
    hub_chunk = only_file(Path(hub) / "objects/tensors" / digest / "c")
    hub_chunk.write_bytes(hub_chunk.read_bytes()[:-9])  # the hub's copy is damaged too
    local_chunk = only_file(setup.path / "objects/tensors" / digest / "c")
    flip(local_chunk, 3)
    damaged = local_chunk.read_bytes()
    with setup.repo() as repo:
        report = repo.fsck(repair_from="origin")
    assert not report.ok and not report.repaired
    assert len(report.unrepaired) == 1 and "damaged too" in report.unrepaired[0]
    assert local_chunk.read_bytes() == damaged  # left as it was, for a better copy later


def test_garbled_ref_is_not_guessed_when_the_hub_numbers_differ(setup: Setup, tmp_path: Path) -> None:
    hub = str(tmp_path / "other-hub")
    with setup.repo() as repo:
        repo.publish("good@1", hub, as_name="victim")  # the hub's victim@1 is another model's version
    (setup.path / "refs/models/victim/versions/1/zarr.json").write_text("{")
    with setup.repo() as repo:
        report = repo.fsck(repair_from=hub)
    assert not report.ok and not report.repaired
    assert len(report.unrepaired) == 1 and "ref victim@1: not repaired" in report.unrepaired[0]
    assert (setup.path / "refs/models/victim/versions/1/zarr.json").read_text() == "{"
    assert_intact(setup, "victim@2", tmp_path)


def test_repaired_ref_keeps_a_trace(setup: Setup, hub: str, tmp_path: Path) -> None:
    garbled_ref(setup, tmp_path)
    with setup.repo() as repo:
        assert repo.fsck(repair_from=True).ok
    doc = json.loads((setup.path / "refs/models/victim/versions/2/zarr.json").read_text())
    assert doc["attributes"]["version"] == setup.records["victim@2"]["id"]
    assert doc["attributes"]["repaired_from"] == hub
    with setup.repo() as repo:
        assert [v.ref for v in repo.versions("victim")] == ["victim@1", "victim@2"]


def test_repair_from_an_s3_hub(setup: Setup, s3_hub: str, tmp_path: Path) -> None:  # noqa: F811
    with setup.repo() as repo:
        repo.add_remote("origin", s3_hub)
        repo.publish("victim@2", "origin")
    deleted_tensor(setup, tmp_path)
    garbled_version_record(setup, tmp_path)
    with setup.repo() as repo:
        report = repo.fsck(repair_from="origin")
    assert report.ok, report.problems
    assert len(report.repaired) == 2 and all(s3_hub in line for line in report.repaired)
    for ref in setup.states:
        assert_intact(setup, ref, tmp_path)


def test_an_archived_version_publishes_and_pulls(setup: Setup, tmp_path: Path) -> None:
    """Found by this suite: publish read an archived tensor's missing commit form and failed
    "missing at the source"; a hub now gets the tensor whole, and a pull brings it back."""
    with setup.repo() as repo:
        repo.archive("victim")
        report = repo.publish("victim@2", tmp_path / "hub")
        assert report.created == ["victim@1", "victim@2"]
    with mh.open(tmp_path / "hub") as hub:
        assert hub.fsck().ok
        got = hub.load("victim@2")
        assert all(got[n].tobytes() == a.tobytes() for n, a in setup.states["victim@2"].items())
        hub.archive("victim")  # a hub archived in its turn still serves pulls
    with mh.open(tmp_path / "elsewhere") as other:
        other.pull("victim@2", tmp_path / "hub")
        assert other.fsck().ok
        got = other.load("victim@1")
        assert all(got[n].tobytes() == a.tobytes() for n, a in setup.states["victim@1"].items())


def test_magic_fsck_repair(setup: Setup, hub: str, tmp_path: Path) -> None:
    from IPython.utils.capture import capture_output

    from nbmodelhub.magics import DlvMagics

    # The magic's own class without a shell: tests/test_magics.py owns the process's one IPython.
    magics = DlvMagics(None)
    deleted_file(setup, tmp_path)
    with capture_output() as out:
        report = magics.dlv(f"--repo {setup.path} fsck --repair origin")
    assert report.ok and len(report.repaired) == 1 and "file 'notes.md'" in report.repaired[0]
    assert "restored" in out.stdout and "OK:" in out.stdout
    assert_intact(setup, "victim@2", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(trials(20, 3)))
def test_a_killed_repair_leaves_nothing_worse(setup: Setup, hub: str, tmp_path: Path, trial: int) -> None:
    import random
    import signal
    import subprocess
    import sys
    import time

    from conftest import pythonpath_env

    for kind in ("deleted_tensor", "truncated_chunk", "flipped_file", "garbled_graph", "garbled_version_record"):
        CASES[kind](setup, tmp_path)
    r = setup.records["victim@2"]
    # A garbled record hides its objects from fsck, so "before" is what was damaged, not what fsck saw.
    before = {
        f"tensors/{r['tensors']['enc.weight']}",
        f"tensors/{r['tensors']['head.weight']}",
        f"files/{r['files']['train.py']}",
        f"graphs/{r['graph']}",
        f"versions/{r['id']}",
    }
    with setup.repo() as repo:
        assert {d.key for d in repo.fsck().damaged} <= before
    child = (
        "import sys; from nbmodelhub.cli import main; print('ready', flush=True); "
        f"sys.exit(main(['--repo', {str(setup.path)!r}, 'fsck', '--repair']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child], env=pythonpath_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(random.Random(trial).uniform(0.0, 0.5))  # the repair itself takes about 0.3 s here
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with setup.repo() as repo:
        after = {d.key for d in repo.fsck().damaged}
    assert after <= before, after - before
    assert_intact(setup, "good@1", tmp_path)
    with setup.repo() as repo:
        assert repo.fsck(repair_from="origin").ok
    for ref in setup.states:
        assert_intact(setup, ref, tmp_path)
