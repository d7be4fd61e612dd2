"""The operations the crash trials kill, shared by the test (parent) and the process it kills (child).

Run as a script, this is the child: ``python crash_ops.py OP REPO HUB SEED [--follow-up]`` opens the
repository, prints ``ready``, runs the operation (or, with ``--follow-up``, what a user would run
next) and prints ``done <json>``. ``NBMH_CRASH_AT=<syscall>:<path part>`` makes the child SIGKILL
itself at that exact moment instead (``unlink-after``: right after unlinking a file whose path holds
the part; ``link-before``: right before linking one), for the worst moments a random delay rarely hits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

OPS = ("commit", "tag", "delete", "gc", "archive", "publish")

# version → the seed of its weights; what the prepared repository holds before any trial
BEFORE = {"m@1": 1, "m@2": 2, "m@3": 3, "n@1": 50}
JUNK = 60  # the seed of a version committed and deleted beforehand: gc's work


def weights(seed: int) -> dict[str, np.ndarray]:
    """A fine-tune of one base (so archive finds deltas), one tensor shared by all (dedup), one unique."""
    base = np.random.default_rng(0)
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(3):
        w = base.standard_normal((512, 512)).astype(np.float32) * 0.02
        out[f"layer{i}.weight"] = w + (rng.standard_normal(w.shape) * 1e-4).astype(np.float32)
    out["shared.weight"] = np.ones((64, 64), np.float32)
    out["head.bias"] = np.full(32, seed, np.float32)
    return out


def junk_weights() -> dict[str, np.ndarray]:
    """Large and unrelated, in several chunks each: a gc has files to remove one by one."""
    rng = np.random.default_rng(JUNK)
    return {f"junk{i}": rng.standard_normal((2560, 1024)).astype(np.float32) for i in range(3)}


def prepare(repo_path: Path, hub_path: Path) -> None:
    import nbmodelhub as mh

    with mh.open(repo_path) as repo:
        for ref, seed in BEFORE.items():
            model = ref.split("@")[0]
            repo.commit(weights(seed), model, message=f"seed {seed}")
        repo.tag("m@1", "base")
        repo.commit(junk_weights(), "junk", message="to be collected")
        repo.delete("junk@1")
        repo.publish("n@1", hub=str(hub_path))


def run(op: str, repo: Any, hub: str, seed: int) -> dict[str, Any]:
    """The operation a trial kills."""
    if op == "commit":
        return {"ref": repo.commit(weights(100 + seed), "m", message=f"trial {seed}").ref}
    if op == "tag":
        repo.tag("m@2", "prod")
        repo.tag("m@3", "base", force=True)
        return {}
    if op == "delete":
        return {"ref": repo.delete("m@2").ref}
    if op == "gc":
        return {"removed": repo.gc().removed}
    if op == "archive":
        return {"rewritten": repo.archive("m").rewritten}
    if op == "publish":
        return {"created": repo.publish("m@3", hub=hub).created}
    raise ValueError(op)


def follow_up(op: str, repo: Any, hub: str, seed: int) -> dict[str, Any]:
    """What a user runs after the crash: the same operation again (it must succeed)."""
    from nbmodelhub.errors import RefNotFound

    # Re-deleting a version already gone is one clear "not found", which is success here.
    if op == "delete" and "m@2" not in [v.ref for v in repo.versions(model="m")]:
        try:
            repo.get("m@2")
        except RefNotFound:
            return {"already": True}
        raise AssertionError("m@2 is not listed but still resolves")
    if op == "gc":
        # The killed gc may have been removing these very objects: committing the content again
        # must store it whole, never dedup against an object half gone.
        junk = repo.commit(junk_weights(), "junk", message="again")
        return {"junk": junk.ref, **run(op, repo, hub, seed)}
    return run(op, repo, hub, seed)


def _install_crash_hook(spec: str) -> None:
    when, part = spec.split(":", 1)

    def die() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if when == "unlink-after":
        real_unlink = os.unlink

        def unlink(path: Any, *args: Any, **kw: Any) -> None:
            real_unlink(path, *args, **kw)
            if part in _full(path, kw):
                die()

        os.unlink = unlink  # type: ignore[assignment]
        os.remove = unlink  # type: ignore[assignment]
    elif when == "link-before":
        real_link = os.link

        def link(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
            if part in os.fspath(dst):
                die()
            real_link(src, dst, *args, **kw)

        os.link = link  # type: ignore[assignment]
    else:
        raise ValueError(spec)


def _full(path: Any, kw: dict[str, Any]) -> str:
    """The path unlinked, also when shutil.rmtree names it relative to an open folder (dir_fd)."""
    name = os.fspath(path)
    fd = kw.get("dir_fd")
    if isinstance(name, bytes):
        name = name.decode()
    if fd is not None:
        name = os.path.join(os.readlink(f"/proc/self/fd/{fd}"), name)
    return str(name)


def main(argv: list[str]) -> None:
    import nbmodelhub as mh

    op, path, hub, seed = argv[0], argv[1], argv[2], int(argv[3])
    repo = mh.open(path)
    if os.environ.get("NBMH_CRASH_AT"):
        _install_crash_hook(os.environ["NBMH_CRASH_AT"])
    print("ready", flush=True)
    result = (follow_up if "--follow-up" in argv else run)(op, repo, hub, seed)
    print("done", json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
