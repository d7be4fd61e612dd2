"""A real Jupyter server (pytest-jupyter) with the sidebar's extension over a real repository on disk.

Kept apart from the browser tests: pytest-jupyter's autouse event-loop fixtures break sync Playwright.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import small_mlp
from pytest_jupyter.jupyter_server import *  # noqa: F403  (the jp_* fixtures and their async test runner)

import nbmodelhub as mh


def build_repository(path: Path) -> dict[str, Any]:
    """Three models: mlp (3 versions, one tagged), mlp-ft (a fine-tune of mlp@2), cnn (numpy weights)."""
    with mh.open(path) as repo:
        for i in range(3):
            repo.commit(
                small_mlp(seed=i), name="mlp", message=f"mlp step {i + 1}",
                params={"lr": 0.1 / (i + 1), "batch": 32}, metrics={"acc": 0.5 + 0.1 * i},
            )
        repo.tag("mlp@2", "best")
        repo.commit(small_mlp(seed=7), name="mlp-ft", message="fine-tune on B", parents=["mlp@2"],
                    metrics={"acc": 0.9})
        rng = np.random.default_rng(0)
        repo.commit({"conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)}, name="cnn",
                    message="first cnn")
        return {"models": repo.models(), "state": repo.state()}


@pytest.fixture(scope="session")
def sample_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sidebar") / "repo"
    build_repository(path)
    return path


@pytest.fixture
def repo_dir(sample_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the sample repository, as the server's default repository."""
    path = tmp_path / "default-repo"
    shutil.copytree(sample_repo, path)
    monkeypatch.setenv("MODELHUB_PATH", str(path))
    return path


@pytest.fixture
def sidebar_settings() -> dict[str, Any]:
    """``c.ModelHubServer`` settings; modules override this fixture."""
    return {}


@pytest.fixture
def jp_server_config(repo_dir: Path, sidebar_settings: dict[str, Any]) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nbmodelhub.server": True}}, "ModelHubServer": sidebar_settings}


@pytest.fixture
def api(jp_fetch: Any) -> Callable[..., Any]:
    """``await api("versions", model="mlp")`` → (status, JSON body); errors come back, not raised."""

    async def call(path: str, method: str = "GET", body: Any = None, **params: Any) -> tuple[int, Any]:
        kw: dict[str, Any] = {"method": method, "params": params, "raise_error": False}
        if body is not None:
            kw["body"] = json.dumps(body)
        elif method == "POST":
            kw["body"] = "{}"
        response = await jp_fetch("nbmodelhub", path, **kw)
        return response.code, json.loads(response.body) if response.body else None

    return call


@pytest.fixture(autouse=True)
def _close_repositories() -> Iterator[None]:
    yield
    from nbmodelhub.server import views

    views._LISTINGS.clear()
