"""What every fuzz test checks: one clear error, and nothing stored changed.

Shared by test_fuzz_inputs.py, test_fuzz_formats.py and test_security.py.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from conftest import all_files
from hypothesis import HealthCheck, settings

from nbmodelhub.cli import main
from nbmodelhub.errors import ModelHubError

from .conftest import trials

# CI runs hypothesis derandomized so a failure there reproduces on any machine; off CI it explores.
DERANDOMIZE = os.environ.get("CI", "") not in ("", "0", "false")


def fuzz(full: int, reduced: int) -> settings:
    """Hypothesis settings for one fuzz test: ``full`` examples with NBMH_RELIABILITY_FULL=1, else ``reduced``."""
    return settings(
        max_examples=trials(full, reduced),
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def stored(path: Path) -> dict[str, bytes]:
    """Every file of a repository folder except the catalog, a disposable index any read may refresh."""
    return {k: v for k, v in all_files(path).items() if not k.startswith("catalog/")}


@contextlib.contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """The block may fail or succeed, but must leave every stored file as it was."""
    before = stored(path)
    yield
    after = stored(path)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), (
        f"store changed: added {added[:5]}, removed {removed[:5]}, changed {changed[:5]}"
    )


@contextlib.contextmanager
def scratch_cwd(factory: Any) -> Iterator[Path]:
    """Run in an empty folder whose parent is empty too: a fuzzed relative path ('x', '..') lands there,
    never in the repository, the checkout or all of /tmp."""
    here = factory.mktemp("cwd") / "here"
    here.mkdir()
    before = Path.cwd()
    os.chdir(here)
    try:
        yield here
    finally:
        os.chdir(before)


def clean_error(call: Callable[[], Any]) -> ModelHubError | None:
    """Run ``call``: it returns (None) or raises one ModelHubError with a one-line-or-more non-empty message.

    Any other exception propagates and fails the test: it is a bug (a traceback a user would see).
    """
    try:
        call()
    except ModelHubError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return exc
    return None


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``dlv argv`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_cli_clean(code: int, err: str, argv: list[str]) -> None:
    """A CLI failure is exit 1 or 2 with exactly one line on stderr, not a traceback and not a bug report."""
    if code == 0:
        return
    assert code in (1, 2), (argv, code, err)
    if code == 1 and "--debug" in argv:
        # --debug asks for the traceback: it comes first, then the same one error line
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("dlv: error: ") and "for the traceback" not in err, (argv, err)
        return
    assert "Traceback" not in err, (argv, err)
    # main() tags an unexpected exception with this hint: that is a bug reaching the user.
    assert "for the traceback" not in err, (argv, err)
    if code == 1:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("dlv: error: "), (argv, err)
    else:  # argparse's usage errors: the usage lines, then one "dlv …: error: …" line
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if ": error: " in line]
        assert len(errors) == 1, (argv, err)
