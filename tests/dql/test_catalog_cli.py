"""The catalog stays right under other writers and damage; `dlv query` prints and emits JSON."""

from __future__ import annotations

import json

from conftest import numpy_weights

import nbmodelhub as mh
from nbmodelhub.cli import main
from nbmodelhub.store.catalog import INDEX_KEY


def test_catalog_follows_other_writers_and_rebuilds_when_damaged(repo_path):
    a = mh.open(repo_path)
    a.commit(numpy_weights(0), name="m", metrics={"acc": 0.1})
    assert [v.ref for v in a.versions()] == ["m@1"]
    b = mh.open(repo_path)  # another process, as far as caches go
    b.commit(numpy_weights(1), name="m", metrics={"acc": 0.2})
    b.commit(numpy_weights(2), name="n")
    b.tag("m@2", "best")
    b.delete("m@1")
    assert [(v.ref, v.tags) for v in a.versions()] == [("m@2", ("best",)), ("n@1", ())]
    assert a.models() == ["m", "n"]
    (repo_path / INDEX_KEY).write_bytes(b"garbage")
    c = mh.open(repo_path)
    assert [v.ref for v in c.versions()] == ["m@2", "n@1"]
    (repo_path / INDEX_KEY).unlink()
    assert [v.ref for v in mh.open(repo_path, read_only=True).versions()] == ["m@2", "n@1"]


def test_an_event_whose_ref_is_not_written_yet_stays_pending(repo_path):
    from nbmodelhub.store.catalog import note_change

    a = mh.open(repo_path)
    a.commit(numpy_weights(0), name="m")
    assert len(a.versions()) == 1
    note_change(a.store.backend, "m", "version", number=2)  # a writer between its event and its ref
    assert len(a.versions()) == 1 and a.catalog._pending
    mh.open(repo_path).commit(numpy_weights(1), name="m")
    assert [v.ref for v in a.versions()] == ["m@1", "m@2"] and not a.catalog._pending


def test_dlv_query_table_json_and_errors(repo_path, capsys):
    repo = mh.open(repo_path)
    repo.commit(numpy_weights(0), name="m", metrics={"acc": 0.9})
    repo.commit(numpy_weights(1), name="m", metrics={"acc": 0.5})
    assert main(["--repo", str(repo_path), "query", "select m where m.metrics.acc > 0.8"]) == 0
    out = capsys.readouterr().out
    assert "m@1" in out and "m@2" not in out
    assert main(["--repo", str(repo_path), "query", "select m order by m.metrics.acc", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [v["ref"] for v in doc["versions"]] == ["m@2", "m@1"]
    assert main(["--repo", str(repo_path), "query", "select m where m.acc >"]) == 2
    err = capsys.readouterr().err
    assert "DQL syntax error at line 1" in err and "^" in err and "Traceback" not in err


def test_catalog_rebuilds_after_a_deleted_versions_record_was_collected(tmp_path):
    import numpy as np

    import nbmodelhub as mh
    from nbmodelhub.store.catalog import INDEX_KEY

    repo = mh.open(tmp_path / "r")
    for i in range(3):
        repo.commit({"w": np.full(4, i, np.float32)}, "net")
    assert len(repo.versions()) == 3  # the index is saved
    repo.delete("net@2")
    repo.gc()
    (tmp_path / "r" / INDEX_KEY).unlink()  # the catalog is disposable: the next read rebuilds it
    fresh = mh.open(tmp_path / "r")
    assert [v.ref for v in fresh.versions()] == ["net@1", "net@3"]
    assert fresh.get("net@3").parent_refs == ("net@2",)  # a deleted parent is still named
