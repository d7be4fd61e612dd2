"""Attached files: add/stage, commit, list, pull back with content and mtime, never outside dest."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from conftest import numpy_weights, object_dirs, reopen

from nbmodelhub import CorruptObject, UsageError


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "src" / "pkg" / "model.py").write_text("class Net: pass\n" * 50)
    (root / "src" / "pkg" / "data.bin").write_bytes(os.urandom(3000))
    (root / "README.md").write_text("# readme\n")
    for i, p in enumerate(sorted(root.rglob("*"))):
        if p.is_file():
            os.utime(p, (1_600_000_000 + i * 1000.25, 1_600_000_000 + i * 1000.25))
    return root


def test_add_stage_commit_list_and_pull(repo, repo_path, project, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    staged = repo.add(["train.py", "src"])
    assert sorted(e.name for e in staged) == ["src/pkg/data.bin", "src/pkg/model.py", "train.py"]
    assert [f.name for f in repo.staged()] == ["src/pkg/data.bin", "src/pkg/model.py", "train.py"]
    v = repo.commit(numpy_weights(0), "m", files=["README.md"])
    assert [f.name for f in v.files] == ["README.md", "src/pkg/data.bin", "src/pkg/model.py", "train.py"]
    assert repo.staged() == []  # the commit consumed the staging area

    listed = repo.files("m@1")
    by_name = {f.name: f for f in listed}
    for name, entry in by_name.items():
        src = project / name
        assert entry.size == src.stat().st_size
        assert entry.mtime == pytest.approx(src.stat().st_mtime, abs=1e-6)
        assert len(entry.hash) >= 32
    assert [f.name for f in repo.files("m", include="*.py")] == ["src/pkg/model.py", "train.py"]
    assert [f.name for f in repo.files("m", include="src/*")] == ["src/pkg/data.bin", "src/pkg/model.py"]
    sizes = [f.size for f in repo.files("m", sortby="size")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    mtimes = [f.mtime for f in repo.files("m", sortby="mod")]
    assert mtimes == sorted(mtimes)
    with pytest.raises(UsageError):
        repo.files("m", sortby="colour")

    dest = tmp_path / "out"
    written = reopen(repo_path).pull_files("m@1", dest)
    assert sorted(p.relative_to(dest.resolve()).as_posix() for p in written) == sorted(by_name)
    for name, entry in by_name.items():
        out = dest / name
        assert out.read_bytes() == (project / name).read_bytes()
        assert out.stat().st_mtime == pytest.approx(entry.mtime, abs=1e-6)
    # only some names
    dest2 = tmp_path / "out2"
    repo.pull_files("m@1", dest2, names=["train.py"])
    assert [p.name for p in dest2.rglob("*") if p.is_file()] == ["train.py"]
    with pytest.raises(UsageError, match=r"trian\.py"):
        repo.pull_files("m@1", dest2, names=["trian.py"])


def test_staged_files_go_to_one_commit_only(repo, project, monkeypatch):
    monkeypatch.chdir(project)
    repo.add("train.py")
    v1 = repo.commit(numpy_weights(0), "m")
    v2 = repo.commit(numpy_weights(1), "m")
    assert [f.name for f in v1.files] == ["train.py"]
    assert v2.files == ()


def test_same_file_content_stored_once(repo, repo_path, project, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    copy = project / "copy_of_train.py"
    copy.write_bytes((project / "train.py").read_bytes())
    v = repo.commit(numpy_weights(0), "m", files=["train.py", "copy_of_train.py"])
    assert len({f.hash for f in v.files}) == 1
    assert len(object_dirs(repo_path, "files")) == 1
    repo.commit(numpy_weights(0), "other", files=["train.py"])
    assert len(object_dirs(repo_path, "files")) == 1


def test_files_outside_cwd_keep_their_folder_name(repo, project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    v = repo.commit(numpy_weights(0), "m", files=[project / "src"])
    assert [f.name for f in v.files] == ["src/pkg/data.bin", "src/pkg/model.py"]


def test_add_missing_path_refused(repo, repo_path):
    with pytest.raises(UsageError, match="no such file"):
        repo.add("/no/such/file/here")
    assert repo.staged() == []


def _version_with_file_name(repo, name: str, data: bytes = b"evil payload") -> str:
    """Craft a version whose file entry is called ``name`` through the store's own layer
    (the public API never produces such names)."""
    digest = repo.store.put_file(data)
    record = {
        "kind": "version",
        "model": "crafted",
        "message": "crafted",
        "author": "test",
        "created": "2024-01-01T00:00:00Z",
        "parents": [],
        "params": {},
        "metrics": {},
        "curves": {},
        "snapshots": [{"step": None, "tensors": {}, "ties": {}}],
        "files": [{"name": name, "size": len(data), "mtime": 1_600_000_000.0, "hash": digest}],
        "graph": None,
        "framework": "numpy",
        "source": None,
        "nonce": uuid.uuid4().hex,
    }
    vid = repo.store.put_document("versions", record)
    number = repo.store.refs.allocate("crafted", vid)
    return f"crafted@{number}"


@pytest.mark.parametrize("evil", ["../evil", "../../evil", "a/../../evil", "/tmp/evil-abs-{u}", "sub/../../evil"])
def test_file_names_escaping_dest_are_never_written(repo, tmp_path, evil):
    evil = evil.format(u=uuid.uuid4().hex)
    ref = _version_with_file_name(repo, evil)
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(CorruptObject, match="escape"):
        repo.pull_files(ref, dest)
    assert {p for p in tmp_path.rglob("*")} == before
    if evil.startswith("/"):
        assert not Path(evil).exists()


def test_file_name_through_symlink_in_dest_is_not_followed_outside(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside, target_is_directory=True)
    ref = _version_with_file_name(repo, "link/pwned.txt")
    with pytest.raises(CorruptObject):
        repo.pull_files(ref, dest)
    assert list(outside.iterdir()) == []


def test_damaged_file_object_detected_on_pull(repo, repo_path, project, tmp_path, monkeypatch):
    monkeypatch.chdir(project)
    v = repo.commit(numpy_weights(0), "m", files=["README.md", "train.py"])
    entry = next(f for f in v.files if f.name == "train.py")
    chunk = next(
        p for p in (repo_path / "objects/files" / entry.hash).rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01
    chunk.write_bytes(bytes(data))
    fresh = reopen(repo_path)
    with pytest.raises(CorruptObject, match=r"m@1.*train\.py"):
        fresh.pull_files("m@1", tmp_path / "out", names=["train.py"])
    assert not (tmp_path / "out" / "train.py").exists()
    report = fresh.fsck()
    assert not report.ok
    assert any("train.py" in p and "m@1" in p for p in report.problems)
    # the other file is fine
    fresh.pull_files("m@1", tmp_path / "out", names=["README.md"])
    assert (tmp_path / "out" / "README.md").read_text() == "# readme\n"
