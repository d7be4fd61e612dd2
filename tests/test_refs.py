"""References: resolution, tags, delete + gc, copy, lineage, listing filters."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import assert_state_equal, numpy_weights, object_dirs, reopen, tensor_objects

from nbmodelhub import RefNotFound, UsageError


def _commit_three(repo):
    vs = []
    for i in range(3):
        vs.append(repo.commit(numpy_weights(i), "net", message=f"round {i}", params={"i": i}))
    return vs


def test_ref_forms_resolve(repo):
    v1, v2, v3 = _commit_three(repo)
    assert repo.get("net").id == v3.id  # latest
    assert repo.get("net@1").id == v1.id
    assert repo.get("net@2").id == v2.id
    assert repo.get(v2).id == v2.id
    assert repo.get(v1.id[:10]).id == v1.id
    assert repo.get(v1.id).id == v1.id
    assert repo.get(v1.id[:10]).ref == "net@1"
    repo.tag("net@2", "best")
    assert repo.get("net:best").id == v2.id
    assert repo.get("net@2").tags == ("best",)
    assert_state_equal(numpy_weights(1), repo.load("net:best"))
    assert repo.get(" net@1 ").id == v1.id


def test_unknown_refs_list_the_closest(repo):
    _commit_three(repo)
    repo.tag("net@1", "baseline")
    with pytest.raises(RefNotFound, match=r"closest: .*\bnet\b"):
        repo.get("nett")
    with pytest.raises(RefNotFound, match=r"net@3"):
        repo.get("net@9")
    with pytest.raises(RefNotFound, match=r"net:baseline"):
        repo.get("net:baselin")
    with pytest.raises(RefNotFound, match=r"no version 'zzzzqqq'"):
        repo.get("zzzzqqq")
    with pytest.raises(UsageError):
        repo.get("net@x")
    with pytest.raises(UsageError):
        repo.get("")
    with pytest.raises(RefNotFound):
        repo.get("ffffffffffff")  # an id prefix that matches nothing


def test_empty_repository_says_so(repo):
    with pytest.raises(RefNotFound, match="empty"):
        repo.get("anything")
    assert repo.models() == [] and repo.versions() == []


def test_tags_move_only_with_force(repo):
    v1, v2, _ = _commit_three(repo)
    repo.tag("net@1", "prod")
    with pytest.raises(UsageError, match=r"net:prod already points at net@1"):
        repo.tag("net@2", "prod")
    assert repo.get("net:prod").id == v1.id
    repo.tag("net@1", "prod")  # same target: fine, no change
    moved = repo.tag("net@2", "prod", force=True)
    assert moved.id == v2.id and "prod" in moved.tags
    assert reopen(repo.location).get("net:prod").id == v2.id
    assert repo.get("net@1").tags == ()
    for bad in ("", "a/b", "x:y", "a@1"):
        with pytest.raises(UsageError):
            repo.tag("net@1", bad)


def test_delete_hides_and_gc_reclaims_only_unshared(repo, repo_path):
    shared = numpy_weights(0)
    v1 = repo.commit(shared, "net")
    mine = dict(shared)
    mine["only_v2"] = np.full((50, 50), 3.0, np.float32)
    v2 = repo.commit(mine, "net", message="adds a tensor")
    v3 = repo.commit(shared, "net", message="back to shared")
    objects = tensor_objects(repo_path)
    assert len(objects) == 4

    repo.delete("net@2")
    with pytest.raises(RefNotFound, match=r"net@2 was deleted"):
        repo.get("net@2")
    assert [v.number for v in repo.versions()] == [1, 3]
    assert [v.number for v in repo.versions(model="net")] == [1, 3]
    assert repo.get("net").id == v3.id
    assert v2.id not in {v.id for v in repo.versions()}
    with pytest.raises(RefNotFound):
        repo.get(v2.id[:12])
    # nothing reclaimed until gc
    assert tensor_objects(repo_path) == objects

    report = repo.gc()
    assert report.removed.get("tensors") == 1
    assert report.removed.get("versions") == 1
    assert report.bytes_freed > 0
    assert tensor_objects(repo_path) == objects - {v2.tensors["only_v2"].hash}
    assert v2.id not in object_dirs(repo_path, "versions")
    for v in (v1, v3):
        assert_state_equal(shared, reopen(repo_path).load(v.ref))
    assert reopen(repo_path).fsck().ok
    # numbers are never reused
    assert repo.commit(mine, "net").number == 4
    # a second gc finds nothing more to do
    assert reopen(repo_path).gc().removed == {}


def test_delete_everything_then_get(repo):
    repo.commit(numpy_weights(0), "one")
    repo.delete("one@1")
    with pytest.raises(RefNotFound, match="deleted"):
        repo.get("one")
    assert "one" not in repo.models()


def test_tag_on_deleted_version(repo):
    _commit_three(repo)
    repo.tag("net@2", "best")
    repo.delete("net@2")
    with pytest.raises(RefNotFound, match="deleted"):
        repo.get("net:best")


def test_gc_keeps_objects_shared_with_another_model(repo, repo_path):
    w = numpy_weights(5)
    repo.commit(w, "a")
    repo.commit(w, "b")
    repo.delete("a@1")
    report = repo.gc()
    assert report.removed.get("tensors", 0) == 0
    assert_state_equal(w, reopen(repo_path).load("b"))


def test_copy_shares_objects_and_records_lineage(repo, repo_path):
    _, v2, _ = _commit_three(repo)
    objects = tensor_objects(repo_path)
    c = repo.copy("net@2", "fork")
    assert c.ref == "fork@1"
    assert c.parents == (v2.id,)
    assert c.to_dict()["parents"] == ["net@2"]
    assert c.message == "copy of net@2"
    assert c.params == v2.params
    assert {n: t.hash for n, t in c.tensors.items()} == {n: t.hash for n, t in v2.tensors.items()}
    assert tensor_objects(repo_path) == objects
    assert_state_equal(numpy_weights(1), repo.load("fork"))
    # the copy survives deleting its source
    repo.delete("net@2")
    repo.gc()
    assert_state_equal(numpy_weights(1), reopen(repo_path).load("fork@1"))
    with pytest.raises(UsageError):
        repo.copy("net@1", "bad/name")


def test_cross_model_lineage_in_log(repo):
    base1 = repo.commit(numpy_weights(0), "base", message="pretrain")
    base2 = repo.commit(numpy_weights(1), "base", message="pretrain more")
    ft1 = repo.commit(numpy_weights(2), "ft", message="fine-tune", parents=["base@1"])
    ft2 = repo.commit(numpy_weights(3), "ft", message="fine-tune 2")
    assert ft1.parents == (base1.id,)
    assert ft1.to_dict()["parents"] == ["base@1"]
    assert ft2.parents == (ft1.id,)  # default parent: the model's latest
    log = repo.log("ft")
    assert [v.ref for v in log] == ["ft@2", "ft@1", "base@1"]
    assert base2.ref not in [v.ref for v in log]
    assert [v.ref for v in repo.log("base")] == ["base@2", "base@1"]
    with pytest.raises(RefNotFound):
        repo.log("nosuch")


def test_versions_filters(repo):
    for i in range(4):
        repo.commit(numpy_weights(i), "a", message=f"A run {i}")
        time.sleep(0.002)
    repo.commit(numpy_weights(9), "b", message="B run warmup")
    assert [v.ref for v in repo.versions()] == ["a@1", "a@2", "a@3", "a@4", "b@1"]
    assert [v.ref for v in repo.versions(model="b")] == ["b@1"]
    assert [v.ref for v in repo.versions(message="run 2")] == ["a@3"]
    assert [v.ref for v in repo.versions(message="WARMUP")] == ["b@1"]
    assert [v.ref for v in repo.versions(last=2)] == ["a@4", "b@1"]
    assert [v.ref for v in repo.versions(model="a", last=1)] == ["a@4"]
    assert repo.versions(last=0) == []
    assert repo.versions(message="nothing like it") == []
    with pytest.raises(UsageError):
        repo.versions(last=-1)
    with pytest.raises(RefNotFound):
        repo.versions(model="c")


def test_version_metadata_round_trips(repo, repo_path):
    v = repo.commit(numpy_weights(0), "m", message="hello", params={"lr": 0.1}, metrics={"acc": 0.5}, author="ada")
    got = reopen(repo_path).get("m@1")
    assert (got.message, got.author, got.params, got.metrics) == ("hello", "ada", {"lr": 0.1}, {"acc": 0.5})
    assert got.created == v.created and got.created.endswith("Z")
    assert got.parameter_count == 3 * 16 * 8
    assert got.nbytes == 3 * 16 * 8 * 4
    d = got.to_dict()
    assert d["ref"] == "m@1" and d["tensors"] == 3


def test_id_prefixes(repo):
    ids = [repo.commit(numpy_weights(i), "m").id for i in range(5)]
    for n, vid in enumerate(ids, start=1):
        assert repo.get(vid[:8]).ref == f"m@{n}"
    # fewer than 4 characters are not taken as an id prefix
    with pytest.raises(RefNotFound):
        repo.get(ids[0][:3])


# -- numbering without listing -------------------------------------------------------------------------


def _hint_file(repo_path):
    return repo_path / "refs" / "models" / "net" / "versions" / "zarr.json"


def test_a_commit_does_not_list_the_versions_folder(repo, repo_path, monkeypatch):
    # Listing costs O(versions) per commit; the hint and a probe make numbering O(1).
    _commit_three(repo)
    from nbmodelhub.store.backend import Backend

    listed: list[str] = []
    real = Backend.list_dir
    monkeypatch.setattr(Backend, "list_dir", lambda self, prefix: listed.append(prefix) or real(self, prefix))
    fresh = reopen(repo_path)
    assert fresh.commit(numpy_weights(9), "net").number == 4
    assert fresh.get("net").number == 4
    assert not [p for p in listed if p.endswith("/versions/")]


@pytest.mark.parametrize(
    "hint", [b'{"zarr_format": 3, "node_type": "group", "attributes": {"highest": 1}}', b"{garbled", None]
)
def test_a_stale_garbled_or_missing_hint_still_numbers_right(repo, repo_path, hint):
    vs = _commit_three(repo)
    if hint is None:
        _hint_file(repo_path).unlink()
    else:
        _hint_file(repo_path).write_bytes(hint)
    fresh = reopen(repo_path)
    assert fresh.get("net").id == vs[-1].id
    assert fresh.commit(numpy_weights(9), "net").number == 4
    assert [v.number for v in reopen(repo_path).versions("net")] == [1, 2, 3, 4]


def test_a_process_sees_numbers_another_process_allocated(repo, repo_path):
    _commit_three(repo)
    other = reopen(repo_path)
    assert other.commit(numpy_weights(7), "net").number == 4
    assert other.commit(numpy_weights(8), "net").number == 5
    # `repo` cached 3 as the highest: it probes past it rather than reusing 4
    assert repo.commit(numpy_weights(9), "net").number == 6
    assert repo.get("net").number == 6


def test_latest_skips_deleted_versions_beyond_a_batch(repo):
    vs = [repo.commit(numpy_weights(i), "net") for i in range(12)]
    for n in range(3, 13):
        repo.delete(f"net@{n}")
    assert repo.get("net").id == vs[1].id
    assert repo.commit(numpy_weights(99), "net").number == 13
