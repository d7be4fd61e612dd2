"""ArchitectureGraph and VersionDiff in real JupyterLab, in headless Chromium: they draw the right
nodes, collapse and expand blocks, find layers, show a clicked layer's details and histograms, and
colour a diff's added and changed layers. Screenshots land in tests/browser/screenshots/."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow

SETUP = """
import copy, torch
import nbmodelhub as mh
from transformers import GPT2Config, GPT2LMHeadModel
from nbmodelhub.widgets.architecture import ArchitectureGraph
from nbmodelhub.widgets.version_diff import VersionDiff

repo = mh.open()
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=32, n_head=2, vocab_size=64, n_positions=16)).eval()
x = torch.zeros(1, 8, dtype=torch.long)
v1 = repo.commit(model, name="graph-widgets", params={"lr": 0.1, "batch": 8},
                 metrics={"loss": [(1, 3.0), (2, 2.5), (3, 2.2)]}, example_input=x)

grown = copy.deepcopy(model)  # a block inserted at 5, one layer nudged
block = copy.deepcopy(grown.transformer.h[4])
torch.manual_seed(1)
for p in block.parameters():
    torch.nn.init.normal_(p, std=0.02)
grown.transformer.h.insert(5, block)
for i, b in enumerate(grown.transformer.h):
    b.attn.layer_idx = i
grown.config.n_layer = 13
with torch.no_grad():
    grown.transformer.h[0].mlp.c_fc.weight.add_(0.05)
v2 = repo.commit(grown, name="graph-widgets", params={"lr": 0.05, "batch": 8},
                 metrics={"loss": [(1, 3.1), (2, 2.4), (3, 2.0)]}, example_input=x)
"""


def _drawn(output: Any) -> Any:
    graph = output.locator(".nbmh-graph")
    graph.locator("xpath=self::*[@data-drawn]").wait_for(timeout=30_000)
    return graph


def _search(graph: Any, text: str) -> None:
    box = graph.locator(".nbmh-graph-bar input")
    box.fill(text)
    box.press("Enter")


def test_graph_widgets(open_notebook: Any) -> None:
    # One notebook for both widgets: the GPT-2 versions are committed once.
    nb = open_notebook(
        [SETUP, "ArchitectureGraph.of(repo, v1)", "VersionDiff.of(repo, v1, v2)"], name="graph_widgets.ipynb"
    )
    nb.run_all()
    architecture_graph(nb, nb.output(1))
    version_diff(nb, nb.output(2))


def architecture_graph(nb: Any, out: Any) -> None:
    graph = _drawn(out)
    # 12 GPT-2 blocks start collapsed: a readable overview, every layer accounted for
    assert graph.locator(".nbmh-node[data-kind=group]").count() == 12
    shown = int(graph.get_attribute("data-visible"))
    assert shown == graph.locator(".nbmh-node").count() < 30
    total = int(graph.get_attribute("data-total"))
    assert total == 12 * 13 + 6
    assert "GPT2Block" in graph.locator(".nbmh-node[data-id='transformer.h.3']").text_content()
    assert graph.locator(".nbmh-legend").inner_text().count("block") == 1
    nb.screenshot(out, "architecture_graph_overview")

    # double-click a block: its 13 layers replace it
    graph.locator(".nbmh-node[data-id='transformer.h.3']").dblclick()
    graph.locator(".nbmh-node[data-id='transformer.h.3.attn.c_attn']").wait_for()
    assert int(graph.get_attribute("data-visible")) == shown + 12
    assert graph.locator(".nbmh-frame text[data-group='transformer.h.3']").count() == 1

    # search jumps to a layer hidden in a collapsed block, expands it and opens its details
    _search(graph, "h.7.mlp.c_fc")
    node = graph.locator(".nbmh-node[data-id='transformer.h.7.mlp.c_fc']")
    node.wait_for()
    assert "nbmh-selected" in (node.get_attribute("class") or "")
    panel = graph.locator(".nbmh-panel.nbmh-open")
    text = panel.inner_text()
    assert "Conv1D" in text and "transformer.h.7.mlp.c_fc" in text
    assert "32×128" in text and "float32" in text  # parameter shapes
    assert "Weight statistics" in text and "mean" in text
    assert panel.locator(".nbmh-chart svg").count() == 1  # its weight histogram
    nb.screenshot(out, "architecture_graph_details")

    # clicking another layer shows that one
    graph.locator(".nbmh-node[data-id='transformer.h.7.mlp.c_proj']").click()
    assert "transformer.h.7.mlp.c_proj" in graph.locator(".nbmh-panel").inner_text()


def version_diff(nb: Any, out: Any) -> None:
    graph = _drawn(out)
    # the inserted block is open, its 13 layers green; other blocks stay collapsed
    assert graph.locator(".nbmh-node[data-status=added]").count() == 13
    assert graph.locator(".nbmh-node[data-kind=group]").count() == 12
    assert graph.locator(".nbmh-node[data-status=removed]").count() == 0
    # h.0 holds the nudged layer: its card carries the heat of the most changed layer
    h0 = graph.locator(".nbmh-node[data-id='transformer.h.0'] rect.nbmh-box")
    assert h0.get_attribute("fill") == "rgb(153,52,4)"
    rows = out.locator("table.nbmh-params tr.nbmh-differs")
    assert rows.count() == 1 and "lr" in rows.inner_text()
    assert out.locator("table.nbmh-params tr").count() == 3  # header, lr, batch
    assert out.locator("[data-curve=loss] svg").count() == 1
    assert "+13 layers" in out.locator(".nbmh-diff-head").inner_text()
    nb.screenshot(out, "version_diff")

    _search(graph, "h.0.mlp.c_fc")
    panel = graph.locator(".nbmh-panel.nbmh-open")
    panel.locator(".nbmh-diff-hist svg").wait_for()
    text = panel.inner_text()
    assert "relative change" in text and "weight" in text
    assert "1 of 2" in text  # weight changed, bias did not
    nb.screenshot(out, "version_diff_layer")
