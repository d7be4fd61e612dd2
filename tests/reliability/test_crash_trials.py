"""SIGKILL at random moments during commit, tag, delete, gc, archive and publish.

Each trial copies a prepared repository (and a folder hub), runs the operation in a child process
and kills it after a seeded random delay within the operation's measured duration. Then: fsck is
clean, every version committed before loads bit-identically, the killed operation happened wholly or
not at all, running it again succeeds, and a gc leaves no debris. ``NBMH_CRASH_SEED`` changes the
seeds; a failure names the operation, seed and delay, so ``-k`` on the trial id replays it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_state_equal, pythonpath_env, reopen
from hub import conftest as hub_fixtures

import nbmodelhub as mh
from nbmodelhub.errors import RefNotFound
from reliability.conftest import trials
from reliability.crash_ops import BEFORE, OPS, junk_weights, prepare, weights

SCRIPT = str(Path(__file__).with_name("crash_ops.py"))
SEED = int(os.environ.get("NBMH_CRASH_SEED", "20261122"))
TRIALS = trials(100, 12)
S3_TRIALS = trials(10, 1)
s3_server = hub_fixtures.s3_server  # moto on loopback (tests/hub/conftest.py)

# (op, finished before the kill) of every trial, tallied at the end of the module (see with -s)
OUTCOMES: list[tuple[str, bool]] = []


@pytest.fixture(scope="module", autouse=True)
def _tally():
    yield
    for op in sorted({o for o, _ in OUTCOMES}):
        done = [f for o, f in OUTCOMES if o == op]
        print(f"\n{op}: {len(done)} trials, {len(done) - sum(done)} killed midway, {sum(done)} finished first")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crash-template")
    prepare(root / "repo", root / "hub")
    return root


def fresh_copy(template: Path, dest: Path) -> tuple[Path, Path]:
    shutil.copytree(template, dest)
    return dest / "repo", dest / "hub"


def child(op: str, repo: Path, hub: Path | str, seed: int, *extra: str, env: dict[str, str] | None = None):
    return subprocess.Popen(
        [sys.executable, SCRIPT, op, str(repo), str(hub), str(seed), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**pythonpath_env(), "TQDM_DISABLE": "1", **(env or {})},
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        _, err = proc.communicate(timeout=60)
        raise AssertionError(f"the child did not start: {line!r} {err}")


def run_to_end(op: str, repo: Path, hub: Path | str, seed: int, *extra: str) -> tuple[dict[str, Any], float]:
    """Run the operation (or its follow-up) in a child to the end: its result and its duration."""
    proc = child(op, repo, hub, seed, *extra)
    wait_ready(proc)
    start = time.perf_counter()
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "done …" when the operation ends, before the interpreter's exit
    took = time.perf_counter() - start
    out, err = proc.communicate(timeout=120)
    done = [line for line in (first + out).splitlines() if line.startswith("done ")]
    assert proc.returncode == 0 and done, f"{op} {' '.join(extra)} failed (exit {proc.returncode}):\n{err}"
    return json.loads(done[0][5:]), took


_DURATIONS: dict[str, float] = {}


def duration(op: str, template: Path, scratch: Path) -> float:
    """How long the operation takes from the child's "ready" to its "done", measured once per op."""
    if op not in _DURATIONS:
        repo, hub = fresh_copy(template, scratch / f"calibrate-{op}")
        _DURATIONS[op] = run_to_end(op, repo, hub, 0)[1]
    return _DURATIONS[op]


def kill_after(op: str, repo: Path, hub: Path | str, seed: int, delay: float) -> bool:
    """Start the operation, SIGKILL it ``delay`` s after "ready"; True if it had finished."""
    proc = child(op, repo, hub, seed)
    wait_ready(proc)
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    return "done " in out


# -- what must hold after a crash ----------------------------------------------------------------------


def refs_of(repo: mh.Repository, model: str | None = None) -> list[str]:
    return [v.ref for v in repo.versions() if model is None or v.model == model]


def check_before(repo: mh.Repository, op: str) -> None:
    """Every version committed before the trial loads bit-identically (a deleted m@2 may be gone)."""
    listed = set(refs_of(repo))
    for ref, seed in BEFORE.items():
        if op == "delete" and ref == "m@2" and ref not in listed:
            continue
        assert ref in listed, f"{ref} vanished"
        assert_state_equal(weights(seed), repo.load(ref))


def check_all_or_nothing(op: str, repo: mh.Repository, hub: Path, seed: int, finished: bool) -> None:
    m = refs_of(repo, "m")
    if op == "commit":
        assert m in (["m@1", "m@2", "m@3"], ["m@1", "m@2", "m@3", "m@4"]), m
        assert ("m@4" in m) or not finished, "the commit finished but its version is not listed"
        if "m@4" in m:
            assert repo.get("m@4").message == f"trial {seed}"
            assert_state_equal(weights(100 + seed), repo.load("m@4"))
    elif op == "tag":
        tags = repo.store.refs.tags("m")
        assert tags.get("prod") in (None, 2), tags
        assert tags.get("base") in (1, 3), tags  # moved, or still where it was: never lost
        if tags["base"] == 3 or finished:
            assert tags.get("prod") == 2, tags
        if finished:
            assert tags["base"] == 3, tags
    elif op == "delete":
        if "m@2" in m:
            assert not finished, "the delete finished but m@2 is still listed"
            assert_state_equal(weights(2), repo.load("m@2"))
        else:
            with pytest.raises(RefNotFound):
                repo.get("m@2")
    elif op in ("gc", "archive"):
        assert sorted(refs_of(repo)) == sorted(BEFORE), refs_of(repo)
    elif op == "publish":
        check_hub(hub, finished)


def check_hub(hub: Path | str, finished: bool, complete: bool = False, scratch: Path | None = None) -> None:
    """The hub is clean, holds what it held, and whatever of m it lists pulls bit-identically."""
    scratch = scratch or Path(hub).parent
    with reopen(hub) as hub_repo:
        report = hub_repo.fsck()
        assert report.ok, report.problems
        listed = refs_of(hub_repo, "m")
        # refs are made ancestors first, so a killed publish leaves a prefix of the lineage
        assert listed == ["m@1", "m@2", "m@3"][: len(listed)], listed
        if finished or complete:
            assert listed == ["m@1", "m@2", "m@3"], listed
        assert_state_equal(weights(50), hub_repo.load("n@1"))
    for i, ref in enumerate(listed):
        with mh.open(scratch / f"pulled-{i}") as pulled:
            pulled.pull(ref, hub=str(hub))
            assert_state_equal(weights(BEFORE[ref]), pulled.load(ref))


def check_follow_up(op: str, repo: mh.Repository, hub: Path, seed: int, result: dict[str, Any]) -> None:
    if op == "commit":
        assert_state_equal(weights(100 + seed), repo.load(result["ref"]))
    elif op == "tag":
        assert repo.store.refs.tags("m") == {"base": 3, "prod": 2}
    elif op == "delete":
        assert "m@2" not in refs_of(repo, "m")
    elif op == "gc":
        assert_state_equal(junk_weights(), repo.load(result["junk"]))
    elif op == "publish":
        check_hub(hub, True, complete=True)


def check_clean_after_gc(path: Path) -> None:
    """After a gc: fsck clean, no debris, only live objects on disk, no lease or lock left behind."""
    with reopen(path) as repo:
        repo.gc()
    with reopen(path) as repo:
        report = repo.fsck()
        assert report.ok, report.problems
        assert report.debris == 0
        versions = repo.versions()
        live_tensors = {t.hash for v in versions for t in v.tensors.values()}
        on_disk = {p.name for p in (path / "objects/tensors").iterdir() if p.is_dir()}
        assert on_disk <= live_tensors, f"dead tensor objects left: {sorted(on_disk - live_tensors)[:3]}"
        archived = {p.name for p in (path / "objects/archive").iterdir() if p.is_dir()}
        assert archived <= live_tensors, f"dead archive objects left: {sorted(archived - live_tensors)[:3]}"
        records = {p.name for p in (path / "objects/versions").iterdir() if p.is_dir()}
        assert records == {v.id for v in versions}
    leases = [p.name for p in (path / "refs/leases").iterdir() if p.name != "zarr.json"]
    assert leases == [], f"leases left behind: {leases}"
    for lock in ("refs/gc-lock/zarr.json", "refs/archive-lock/zarr.json"):
        assert not (path / lock).exists(), f"{lock} left behind"


# -- the trials ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_a_random_moment(trial: int, template: Path, tmp_path: Path) -> None:
    op = OPS[trial % len(OPS)]
    seed = SEED + trial
    took = duration(op, template, tmp_path)
    delay = random.Random(seed).uniform(0.0, took)
    repo_path, hub = fresh_copy(template, tmp_path / "trial")
    finished = kill_after(op, repo_path, hub, seed, delay)
    OUTCOMES.append((op, finished))
    where = f"{op} killed {delay * 1000:.1f} ms into {took * 1000:.0f} ms (seed {seed}, finished={finished})"
    try:
        with reopen(repo_path) as repo:
            report = repo.fsck()
            assert report.ok, report.problems
            check_before(repo, op)
            check_all_or_nothing(op, repo, hub, seed, finished)
        result, _ = run_to_end(op, repo_path, hub, seed, "--follow-up")
        with reopen(repo_path) as repo:
            check_follow_up(op, repo, hub, seed, result)
            check_before(repo, "delete")
        check_clean_after_gc(repo_path)
        if op == "publish":
            check_clean_after_gc(hub)
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc


# -- the worst moments, hit on purpose -------------------------------------------------------------------


def kill_at(op: str, repo: Path, hub: Path, moment: str) -> None:
    """Run the operation in a child that SIGKILLs itself at ``moment`` (see crash_ops.py)."""
    proc = child(op, repo, hub, 0, env={"NBMH_CRASH_AT": moment})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the child was not killed at {moment}: {out} {err}"


def test_gc_killed_inside_an_object_leaves_no_object_a_commit_would_dedup_against(template, tmp_path):
    """gc removing a dead tensor dies after its first chunk: the same content committed next is stored whole."""
    repo_path, hub = fresh_copy(template, tmp_path / "t")
    kill_at("gc", repo_path, hub, "unlink-after:/c/")
    with reopen(repo_path) as repo:
        v = repo.commit(junk_weights(), "junk", message="again")
        report = repo.fsck()
        assert report.ok, report.problems
        assert_state_equal(junk_weights(), repo.load(v))
    check_clean_after_gc(repo_path)


def test_tag_move_killed_before_its_ref_lands_keeps_the_old_target(template, tmp_path):
    """A killed move leaves the new ref's folder with only a partial file: the tag still points where it did."""
    repo_path, hub = fresh_copy(template, tmp_path / "t")
    kill_at("tag", repo_path, hub, "link-before:/tags/base/2/")
    assert list((repo_path / "refs/models/m/tags/base/2").iterdir())  # the partial write is there
    with reopen(repo_path) as repo:
        assert repo.store.refs.tags("m") == {"base": 1, "prod": 2}
        assert repo.get("m:base").number == 1
        repo.tag("m@3", "base", force=True)
    with reopen(repo_path) as repo:
        assert repo.get("m:base").number == 3
        assert [v.ref for v in repo.versions() if "base" in v.tags] == ["m@3"]


def test_commit_killed_before_its_ref_lands_is_absent_and_the_next_commit_works(template, tmp_path):
    repo_path, hub = fresh_copy(template, tmp_path / "t")
    kill_at("commit", repo_path, hub, "link-before:/versions/4/")
    with reopen(repo_path) as repo:
        assert refs_of(repo, "m") == ["m@1", "m@2", "m@3"]
        assert repo.get("m").number == 3
        assert repo.fsck().ok
        v = repo.commit(weights(7), "m")
        assert repo.get("m").id == v.id
        assert_state_equal(weights(7), repo.load(v))
    check_clean_after_gc(repo_path)


def test_delete_killed_before_its_tombstone_lands_is_all_or_nothing(template, tmp_path):
    repo_path, hub = fresh_copy(template, tmp_path / "t")
    kill_at("delete", repo_path, hub, "link-before:/deleted/2/")
    with reopen(repo_path) as repo:
        assert repo.fsck().ok
        check_before(repo, "delete")
        check_all_or_nothing("delete", repo, hub, 0, finished=False)
    run_to_end("delete", repo_path, hub, 0, "--follow-up")
    with reopen(repo_path) as repo:
        assert "m@2" not in refs_of(repo)
    check_clean_after_gc(repo_path)


@pytest.mark.parametrize("indexed", [False, True], ids=["rebuild", "replay"])
def test_a_version_deleted_and_collected_before_the_next_listing_stays_hidden(tmp_path, indexed):
    """Found by the gc trials: the catalog (built from scratch, or replaying the version's old event)
    met the deleted version's number ref with its record already collected, and `list` failed."""
    with mh.open(tmp_path / "r") as repo:
        repo.commit(weights(1), "keep")
        if indexed:
            repo.versions()  # saves the catalog index, so the next reader replays events
        repo.commit(weights(2), "gone")
        repo.delete("gone@1")
        repo.gc()
    assert (tmp_path / "r/catalog").exists() == indexed
    with reopen(tmp_path / "r") as repo:
        assert refs_of(repo) == ["keep@1"]
        assert repo.models() == ["keep"]


# -- publish to an S3 hub (moto) -------------------------------------------------------------------------


def check_s3_hub_clean_after_gc(url: str) -> None:
    with reopen(url) as hub_repo:
        hub_repo.gc()
    with reopen(url) as hub_repo:
        report = hub_repo.fsck()
        assert report.ok, report.problems
        assert report.debris == 0
        backend = hub_repo.store.backend
        live = {t.hash for v in hub_repo.versions() for t in v.tensors.values()}
        stored = {k.split("/")[2] for k in backend.list_prefix("objects/tensors/") if k.count("/") > 2}
        assert stored <= live, f"dead tensor objects left on the hub: {sorted(stored - live)[:3]}"
        assert list(backend.list_prefix("refs/leases/")) in ([], ["refs/leases/zarr.json"])
        assert backend.get("refs/gc-lock/zarr.json") is None


def new_s3_hub(server: Any, repo_path: Path) -> str:
    """A fresh bucket holding n@1, published from ``repo_path`` (as the folder hubs are prepared)."""
    bucket = f"crash-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/hub"
    with reopen(repo_path) as repo:
        repo.publish("n@1", hub=url)
    return url


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(S3_TRIALS))
def test_sigkill_during_publish_to_an_s3_hub(trial, template, tmp_path, s3_server, monkeypatch):
    for key, value in s3_server.env("writer").items():
        monkeypatch.setenv(key, value)
    if "s3-publish" not in _DURATIONS:
        calibrate, _ = fresh_copy(template, tmp_path / "calibrate")
        _DURATIONS["s3-publish"] = run_to_end("publish", calibrate, new_s3_hub(s3_server, calibrate), 0)[1]
    took = _DURATIONS["s3-publish"]
    repo_path, _ = fresh_copy(template, tmp_path / "trial")
    url = new_s3_hub(s3_server, repo_path)
    seed = SEED + 1000 + trial
    delay = random.Random(seed).uniform(0.0, took)
    finished = kill_after("publish", repo_path, url, seed, delay)
    OUTCOMES.append(("publish to s3", finished))
    where = f"publish to s3 killed {delay * 1000:.1f} ms into {took * 1000:.0f} ms (seed {seed}, finished={finished})"
    try:
        check_hub(url, finished, scratch=tmp_path)
        run_to_end("publish", repo_path, url, seed, "--follow-up")
        check_hub(url, True, complete=True, scratch=tmp_path / "again")
        check_s3_hub_clean_after_gc(url)
        check_clean_after_gc(repo_path)
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from exc
    except Exception as exc:
        raise AssertionError(f"{where}: {type(exc).__name__}: {exc}") from exc


def test_archive_killed_inside_removing_a_commit_form_leaves_nothing_gc_keeps(tmp_path):
    """Found by the archive trials (2 in 100): rmtree killed after the last file of a commit form it drops,
    before its folders, leaves empty folders that fsck counted as debris and gc never removed."""
    path = tmp_path / "r"
    with mh.open(path) as repo:
        for seed in (1, 2, 3):
            repo.commit(weights(seed), "m")
        repo.archive("m")
    dropped = [d.name for d in (path / "objects/archive").iterdir() if d.is_dir()]
    dropped = [d for d in dropped if not (path / "objects/tensors" / d / "zarr.json").exists()]
    assert dropped  # archive stored some tensors only in their archived form
    (path / "objects/tensors" / dropped[0] / "c").mkdir(parents=True)  # what the killed rmtree left
    assert reopen(path).fsck().debris == 1
    check_clean_after_gc(path)
    with reopen(path) as repo:
        for seed in (1, 2, 3):
            assert_state_equal(weights(seed), repo.load(f"m@{seed}"))
