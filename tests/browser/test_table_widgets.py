"""WeightHistograms, VersionTable and Lineage in JupyterLab, in headless Chromium: they render with
the right content and respond to clicks. Screenshots: tests/browser/screenshots/{histograms,version_table,
version_table_diff,lineage}.png."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow

SETUP = """
import torch, nbmodelhub as mh
from nbmodelhub.widgets.histograms import WeightHistograms
from nbmodelhub.widgets.version_table import VersionTable
from nbmodelhub.widgets.lineage import Lineage

repo = mh.open("table-widgets-repo")
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10))
for i, lr in enumerate([0.1, 0.05, 0.02]):
    with torch.no_grad():
        net[0].weight.mul_(1.5)
    repo.commit(net, name="cnn", message=f"train lr={lr}", params={"lr": lr, "batch": 32},
                metrics={"acc": [(1, 0.3 + 0.1 * i), (2, 0.6 + 0.1 * i)], "loss": 1.0 - 0.2 * i})
repo.tag("cnn@3", "best")
repo.commit(net, name="cnn-ft", message="fine-tune on new data", parents=["cnn@2"],
            params={"lr": 0.001}, metrics={"acc": 0.95})
repo.copy("cnn@3", "cnn-release")
"""


def _texts(locator) -> list[str]:
    # SVG <text> has no innerText; its textContent is what is drawn.
    return locator.evaluate_all("ns => ns.map(n => n.textContent)")


def test_histograms_table_and_lineage_render_and_respond(open_notebook):
    nb = open_notebook(
        [
            SETUP,
            'WeightHistograms.of(repo, ["cnn@1", "cnn@3"])',
            "VersionTable.of(repo)",
            'Lineage.of(repo, "cnn")',
        ],
        name="table_widgets.ipynb",
    )
    nb.run_all(timeout=240)

    # -- weight histograms: every tensor a small multiple, two versions overlaid, log toggle, filter, click.
    hist = nb.output(1).locator(".nbmh-hist")
    hist.wait_for(timeout=30_000)
    cells = hist.locator(".nbmh-hist-cell")
    assert cells.count() == 4  # conv weight + bias, linear weight + bias
    main = hist.locator(".nbmh-hist-main")
    assert main.locator("svg path[fill-opacity]").count() == 2  # cnn@1 and cnn@3 on shared bins
    assert main.locator(".nbmh-chart-title").inner_text() == "3.weight"  # the biggest tensor first
    cells.filter(has_text="0.weight").first.click()
    assert main.locator(".nbmh-chart-title").inner_text() == "0.weight"
    linear_ticks = _texts(main.locator("svg text"))
    hist.locator("input[type=checkbox]").check()
    log_ticks = _texts(main.locator("svg text"))
    assert log_ticks != linear_ticks and "10" in log_ticks
    hist.locator("input[type=search]").fill("bias")
    assert hist.locator(".nbmh-hist-count").inner_text() == "2 of 4 tensors"
    assert cells.locator("visible=true").count() == 2
    hist.locator("input[type=search]").fill("")
    cells.filter(has_text="0.weight").first.click()  # the one the two versions differ in, for the picture
    box = main.locator("svg").bounding_box()
    main.locator("svg").hover(position={"x": box["width"] / 2, "y": 100})
    tip = main.locator(".nbmh-chart-tip")
    assert "cnn@1" in tip.inner_text() and "cnn@3" in tip.inner_text()
    nb.screenshot(hist, "histograms")

    # -- version table: rows, sorting, filtering, picking two rows → their diff below.
    table = nb.output(2).locator(".nbmh-vt")
    table.wait_for(timeout=30_000)
    rows = table.locator(".nbmh-table-row")
    assert rows.count() == 5
    assert "5 versions" in table.locator(".nbmh-table-status").inner_text()
    header = table.locator(".nbmh-table-head")
    assert header.locator("[data-key='param:lr']").count() == 1
    header.locator("[data-key='metric:acc']").click()
    header.locator("[data-key='metric:acc']").click()  # descending
    first = rows.first
    assert first.get_attribute("data-key") == "cnn-ft@1"  # acc 0.95, the best
    # A curve shows its final value: cnn@3's acc curve ends at 0.8.
    assert table.locator(".nbmh-table-row[data-key='cnn@3'] [data-key='metric:acc']").inner_text() == "0.8"
    search = table.locator("input[type=search]")
    search.fill("lr=0.05")
    assert rows.count() == 1 and rows.first.get_attribute("data-key") == "cnn@2"
    search.fill("")
    nb.screenshot(table, "version_table")
    table.locator(".nbmh-table-row[data-key='cnn@1']").click()
    table.locator(".nbmh-table-row[data-key='cnn@3']").click()
    assert table.locator(".nbmh-picked").count() == 2
    diff = table.locator(".nbmh-vt-diff")
    diff.locator(".nbmh-diff").wait_for(timeout=30_000)  # Python answered; the diff view drew it
    assert "cnn@1" in diff.inner_text() and "cnn@3" in diff.inner_text()
    assert re.search(r"\blr\b", diff.inner_text())  # the differing hyperparameter is listed
    nb.screenshot(nb.output(2), "version_table_diff")

    # -- lineage: the DAG across models, click → details.
    lineage = nb.output(3).locator(".nbmh-lineage")
    lineage.wait_for(timeout=30_000)
    nodes = lineage.locator(".nbmh-node")
    assert sorted(nodes.evaluate_all("ns => ns.map(n => n.dataset.ref)")) == [
        "cnn-ft@1", "cnn-release@1", "cnn@1", "cnn@2", "cnn@3",
    ]
    assert lineage.locator(".nbmh-edge").count() == 4
    assert lineage.locator(".nbmh-edge.nbmh-cross").count() == 2  # the fine-tune and the copy
    assert "acc 0.8" in lineage.locator(".nbmh-node[data-ref='cnn@3']").text_content()
    lineage.locator(".nbmh-node[data-ref='cnn-ft@1']").click()
    details = lineage.locator(".nbmh-lineage-details")
    assert details.locator("h4").inner_text() == "cnn-ft@1"
    assert "fine-tune on new data" in details.inner_text() and "cnn@2" in details.inner_text()
    nb.screenshot(lineage, "lineage")
    assert not nb.errors()
