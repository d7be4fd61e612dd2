"""The tour notebook in JupyterLab, in headless Chromium: it runs top to bottom and every widget is
visibly rendered with the right content. Screenshots: tests/browser/screenshots/tour-*.png."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOUR = Path(__file__).parents[2] / "notebooks" / "tour.ipynb"


def test_tour_runs_in_jupyterlab_with_every_widget_rendered(open_notebook) -> None:
    nb = open_notebook("tour.ipynb", name="tour.ipynb", copy_from=TOUR)
    nb.run_all(timeout=600)
    assert not [e for e in nb.errors() if "Error" in e]

    table = nb.output_of("%dlv list tour-cnn").locator(".nbmh-table")
    table.wait_for(timeout=30_000)
    assert table.locator(".nbmh-table-row").count() == 3
    nb.screenshot(table, "tour-list")

    graph = nb.output_of("%dlv desc").locator(".nbmh-graph")
    graph.locator("xpath=self::*[@data-drawn]").wait_for(timeout=30_000)
    layers = graph.locator(".nbmh-node[data-kind='layer']")
    assert layers.count() >= 9  # conv1, bn1, relu, pool1, conv2, relu, pool2, flatten, fc1, relu, fc2
    layers.filter(has_text="conv1").first.click()
    panel = graph.locator(".nbmh-panel")
    panel.get_by_text("Conv2d").first.wait_for(timeout=10_000)
    details = panel.inner_text()
    assert "Parameters · 160" in details  # version 3's conv1: 16 filters of 1×3×3, plus 16 biases
    assert "Weight histogram" in details and "L2 norm" in details
    nb.screenshot(graph, "tour-graph")

    hist = nb.output_of("%dlv hist").locator(".nbmh-hist")
    hist.wait_for(timeout=30_000)
    assert hist.locator(".nbmh-hist-cell").count() == 8  # 4 layers × (weight, bias) of version 1 and 2
    nb.screenshot(hist, "tour-hist")

    diff = nb.output_of("%dlv diff").locator(".nbmh-diff")
    diff.wait_for(timeout=30_000)
    added = diff.locator(".nbmh-node[data-status='added']")
    changed = diff.locator(".nbmh-node[data-status='changed']")
    assert added.filter(has_text="bn1").count() >= 1
    assert changed.filter(has_text="conv1").count() >= 1
    differing = diff.locator("tr[data-differs]").all_inner_texts()
    assert any("width" in row for row in differing) and any("lr" in row for row in differing)
    nb.screenshot(diff, "tour-diff")

    lineage = nb.output_of("%dlv log").locator(".nbmh-lineage")
    lineage.wait_for(timeout=30_000)
    nb.screenshot(lineage, "tour-lineage")
