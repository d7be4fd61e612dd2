"""The live run view in JupyterLab, in headless Chromium: the curves grow while a cell trains.
Screenshots: tests/browser/screenshots/{live_run_training,live_run_done,runs_compare}.png."""

from __future__ import annotations

import itertools
import time

import pytest

pytestmark = pytest.mark.slow

START = """
import math, time, nbmodelhub as mh
repo = mh.open("live-run-repo")
run = mh.run("live", params={"lr": 0.1, "batch": 32}, repo=repo)
run.log(0, loss=2.0, acc=0.0)
run
"""

TRAIN = """
for step in range(1, 12001):
    run.log(step, loss=2.0 * math.exp(-step / 3000) + 0.05 * math.sin(step / 40), acc=1 - math.exp(-step / 4000))
    if step % 100 == 0:
        time.sleep(0.05)   # ~6 s of "training": the view must grow meanwhile
"""

FINISH = """
import torch
from nbmodelhub.widgets.runs_compare import compare_runs
run.snapshot(torch.nn.Linear(4, 2))
run.commit()
for lr in (0.05, 0.01):
    with mh.run("live", params={"lr": lr, "batch": 32}, repo=repo, model=torch.nn.Linear(4, 2)) as other:
        for step in range(0, 12001, 10):
            other.log(step, loss=2.0 * math.exp(-step * lr / 300), acc=1 - math.exp(-step * lr / 400))
compare_runs(repo.runs())
"""


def _points(view) -> int:
    return int(view.locator(".nbmh-run-meta[data-points]").get_attribute("data-points") or 0)


def test_live_chart_grows_while_a_cell_trains(open_notebook):
    nb = open_notebook([START, TRAIN, FINISH], name="live_run.ipynb")
    # As a user would: show the run, then train. (Under run-all, JupyterLab's widget manager would
    # wait for the kernel to be idle before drawing its first widget.)
    nb.command("notebook:run-cell-and-select-next")
    nb.wait_idle()
    view = nb.output(0).locator(".nbmh-run")
    view.wait_for(timeout=60_000)
    # Start training without waiting for it (nb.command resolves when the cell has finished).
    nb.page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-cell-and-select-next'); }")
    loss = view.locator(".nbmh-run-cell[data-metric='loss'] svg path[stroke-linejoin='round']")

    # While the training cell runs, sample what the user sees: points and the drawn loss path.
    train_prompt = nb.page.locator(".jp-CodeCell").nth(1).locator(".jp-InputArea-prompt")
    samples: list[tuple[int, str]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = train_prompt.inner_text().strip() == "[*]:"
        if samples and not busy:
            break
        if busy and loss.count():
            samples.append((_points(view), loss.first.get_attribute("d") or ""))
            if len(samples) == 4:
                nb.screenshot(view, "live_run_training")
        time.sleep(0.4)
    counts = [c for c, _ in samples]
    grew = [b for a, b in itertools.pairwise(counts) if b > a]
    assert len(grew) >= 3, f"the chart should grow while the cell runs, saw point counts {counts}"
    assert counts[0] < 12001 and len({d for _, d in samples}) >= 3  # seen mid-run, path redrawn

    nb.command("notebook:run-cell")  # the last cell: commit, two more runs, the comparison
    nb.wait_cells_done(timeout=240)
    assert _points(view) == 12001
    assert view.locator(".nbmh-run-status").inner_text() == "committed"
    # 12,001 points drawn decimated: a few points per pixel column, not 12,001 segments
    assert loss.first.get_attribute("d").count("L") < 4 * 1400
    nb.screenshot(view, "live_run_done")

    compare = nb.output(2).locator(".nbmh-cmp")
    compare.wait_for(timeout=30_000)
    headers = compare.locator("th").all_inner_texts()
    assert "lr" in headers and "batch" not in headers  # only the differing param
    assert compare.locator("td.nbmh-diff").count() == 3
    assert compare.locator("svg.nbmh-cmp-spark path").count() == 6  # loss and acc for 3 runs
    boxes = compare.locator("input[data-run]")
    boxes.nth(0).check()
    boxes.nth(2).check()
    chart = compare.locator(".nbmh-cmp-chart")
    assert chart.locator("path[stroke-linejoin='round']").count() == 2  # two runs overlaid
    assert "live@1" in chart.inner_text() and "live@3" in chart.inner_text()
    compare.locator("input[type=checkbox]:not([data-run])").check()
    assert "batch" in compare.locator("th").all_inner_texts()
    nb.screenshot(compare, "runs_compare")
