"""The code is `ruff` and `mypy` clean: part of the test suite, so the one test command checks it too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "nbmodelhub", "tests", "benchmarks"],
        ["mypy", "nbmodelhub"],
    ],
    ids=["ruff", "mypy"],
)
def test_clean(command: list[str]) -> None:
    run = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(command)} found problems:\n{run.stdout}{run.stderr}"
