"""The JupyterLab sidebar in headless Chromium: it lists a repository's models, opens a version tab and a
diff tab with the right content, refreshes when something commits, and inserts the %dlv command for what a
tab shows into the notebook. Screenshots: tests/browser/screenshots/sidebar*.png."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nbmodelhub as mh

pytestmark = pytest.mark.slow

SHOTS = Path(__file__).parent / "screenshots"


def _mlp(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


@pytest.fixture(scope="module")
def sidebar_repo(lab: Any) -> Path:
    """Models in the lab's default repository: sb-mlp (3 versions, @2 tagged), sb-ft (a fine-tune), sb-cnn."""
    with mh.open(lab.repo) as repo:
        for i, lr in enumerate([0.1, 0.05, 0.02]):
            repo.commit(_mlp(i), name="sb-mlp", message=f"train lr={lr}", params={"lr": lr, "batch": 32},
                        metrics={"acc": [(1, 0.3 + 0.1 * i), (2, 0.5 + 0.1 * i)]})
        repo.tag("sb-mlp@2", "best")
        repo.commit(_mlp(9), name="sb-ft", message="fine-tune on new data", parents=["sb-mlp@2"])
        rng = np.random.default_rng(0)
        repo.commit({"conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)}, name="sb-cnn",
                    message="first cnn")
    return lab.repo


def _shot(locator: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    locator.screenshot(path=str(SHOTS / f"{name}.png"))


def test_sidebar_lists_opens_versions_and_diffs(lab: Any, page: Any, sidebar_repo: Path, open_notebook: Any) -> None:
    nb = open_notebook(["# the sidebar inserts %dlv commands below"], name="sidebar.ipynb")
    page.wait_for_function("() => window.jupyterapp?.commands.hasCommand('nbmodelhub:show-sidebar')", timeout=60_000)
    page.evaluate("() => window.jupyterapp.restored")  # the layout restorer runs last: show the panel after it
    page.evaluate("() => window.jupyterapp.commands.execute('nbmodelhub:show-sidebar')")
    side = page.locator("#nbmodelhub-sidebar")
    side.wait_for(timeout=30_000)

    # -- the models, with version counts and tags
    mlp = side.locator('.nbmh-row-model[data-model="sb-mlp"]')
    mlp.wait_for(timeout=30_000)
    for name in ("sb-mlp", "sb-ft", "sb-cnn"):
        assert side.locator(f'.nbmh-row-model[data-model="{name}"]').count() == 1
    assert mlp.locator(".nbmh-count").inner_text() == "3"
    assert mlp.locator(".nbmh-tag").all_inner_texts() == ["best"]

    # -- expand a model: its versions, newest first, with their tags
    mlp.click()
    side.locator('[data-ref="sb-mlp@1"]').wait_for(timeout=10_000)
    refs = side.locator(".nbmh-row-version").evaluate_all("els => els.map(e => e.dataset.ref)")
    assert refs == ["sb-mlp@3", "sb-mlp@2", "sb-mlp@1"]
    assert side.locator('[data-ref="sb-mlp@2"] .nbmh-tag').inner_text() == "best"
    _shot(side, "sidebar")

    # -- a version tab: header, graph (one node per layer), metadata
    side.locator('[data-ref="sb-mlp@2"] .nbmh-msg').click()
    tab = page.locator(".nbmh-version-tab:visible")
    tab.locator("h2").wait_for(timeout=30_000)
    assert tab.locator("h2").inner_text().startswith("sb-mlp@2")
    assert "train lr=0.05" in tab.locator(".nbmh-tab-msg").inner_text()
    graph = tab.locator(".nbmh-graph")
    graph.wait_for(timeout=30_000)
    with mh.open(sidebar_repo, read_only=True) as repo:
        layers = repo.graph("sb-mlp@2").graph.number_of_nodes()
    drawn = "() => document.querySelector('.nbmh-version-tab .nbmh-graph')?.dataset.drawn"
    page.wait_for_function(drawn, timeout=30_000)
    assert graph.locator(".nbmh-node").count() == layers
    _shot(tab, "sidebar_version_graph")
    tab.locator('button[data-section="metadata"]').click()
    params = tab.locator(".nbmh-kv").first
    assert "lr" in params.inner_text() and "0.05" in params.inner_text()
    tab.locator('button[data-section="histograms"]').click()
    tab.locator(".nbmh-hist").wait_for(timeout=30_000)
    assert tab.locator(".nbmh-hist-cell").count() == 4  # two weights, two biases
    _shot(tab, "sidebar_version_histograms")

    # -- the insert action puts the command for what the tab shows into the notebook
    page.locator(".jp-MainAreaWidget:visible .jp-Toolbar").get_by_text("Insert %dlv").click()
    cells = page.locator(".jp-Notebook .jp-Cell .cm-content")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook .cm-content')]"
        ".some(e => e.textContent === '%dlv desc sb-mlp@2')",
        timeout=10_000,
    )
    assert "%dlv desc sb-mlp@2" in cells.all_inner_texts()

    # -- pick two versions: their diff opens in a tab of its own
    page.evaluate("() => window.jupyterapp.commands.execute('nbmodelhub:show-sidebar')")
    side.locator('[data-ref="sb-mlp@1"] input[type=checkbox]').click()
    side.locator('[data-ref="sb-mlp@3"] input[type=checkbox]').click()
    assert side.locator(".nbmh-side-pick code").all_inner_texts() == ["sb-mlp@1", "sb-mlp@3"]
    side.locator(".nbmh-side-pick").get_by_text("Diff").click()
    diff = page.locator(".nbmh-diff-tab:visible .nbmh-diff")
    diff.wait_for(timeout=60_000)
    text = diff.inner_text()
    assert "sb-mlp@1" in text and "sb-mlp@3" in text
    assert "0.1" in text and "0.02" in text  # lr differs, shown old → new
    assert "2 layers with new weights" in text
    page.wait_for_function("() => document.querySelector('.nbmh-diff-tab .nbmh-graph')?.dataset.drawn", timeout=30_000)
    _shot(page.locator(".nbmh-diff-tab:visible"), "sidebar_diff")
    # Same architecture, new weights: every layer is drawn, the two Linear layers with a weight-change heat.
    assert page.locator(".nbmh-diff-tab .nbmh-node").count() == 3
    assert nb.errors() == []


def test_sidebar_refreshes_when_something_commits(lab: Any, page: Any, sidebar_repo: Path) -> None:
    page.goto(f"{lab.url}/lab?token={lab.token}")
    page.wait_for_function("() => window.jupyterapp?.commands.hasCommand('nbmodelhub:show-sidebar')", timeout=60_000)
    page.evaluate("() => window.jupyterapp.restored")  # the layout restorer runs last: show the panel after it
    page.evaluate("() => window.jupyterapp.commands.execute('nbmodelhub:show-sidebar')")
    cnn = page.locator('#nbmodelhub-sidebar .nbmh-row-model[data-model="sb-cnn"]')
    cnn.wait_for(timeout=30_000)
    before = int(cnn.locator(".nbmh-count").inner_text())
    with mh.open(sidebar_repo) as repo:  # as a notebook or a training script elsewhere would
        repo.commit({"conv.weight": np.ones((4, 3, 3, 3), np.float32)}, name="sb-cnn", message="retrained")
        with mh.run("sb-cnn", repo=repo) as run:
            run.log(1, loss=0.5)
            start = time.monotonic()
            page.wait_for_function(
                "n => document.querySelector('#nbmodelhub-sidebar .nbmh-row-model[data-model=\"sb-cnn\"] .nbmh-count')"
                "?.textContent === String(n)",
                arg=before + 1,
                timeout=15_000,
            )
            cnn.locator(".nbmh-badge-live").wait_for(timeout=15_000)
            assert page.locator("#nbmodelhub-sidebar .nbmh-side-run").filter(has_text="sb-cnn").count() == 1
            _shot(page.locator("#nbmodelhub-sidebar"), "sidebar_live_run")
            assert time.monotonic() - start < 15
            run.stop()
