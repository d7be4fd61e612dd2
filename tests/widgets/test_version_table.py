"""VersionTable: rows from a real repository, params and metrics as columns, pick two → their diff,
the static HTML table."""

from __future__ import annotations

import pytest
import torch
from conftest import numpy_weights, small_mlp

from nbmodelhub.api import Version
from nbmodelhub.errors import RefNotFound
from nbmodelhub.widgets.version_table import VersionTable


@pytest.fixture
def filled(repo):
    m = small_mlp(0)
    repo.commit(m, name="mlp", message="baseline", params={"lr": 0.1, "opt": "sgd"},
                metrics={"acc": 0.81, "loss": [(1, 0.9), (2, 0.55), (3, 0.42)]})
    with torch.no_grad():
        m[0].weight.add_(0.5)
    repo.commit(m, name="mlp", message="lr 0.05 <b>bold</b>", params={"lr": 0.05, "batch": 64}, metrics={"acc": 0.87})
    repo.tag("mlp@2", "best")
    repo.commit(numpy_weights(1), name="other", message="unrelated", params={"depth": 3})
    return repo


def test_rows_and_columns_from_the_repository(filled):
    t = VersionTable.of(filled)
    assert all(isinstance(v, Version) for v in t.versions)
    assert [v.ref for v in t.versions] == [v.ref for v in filled.versions()]
    rows = {r["ref"]: r for r in t.data["rows"]}
    assert set(rows) == {"mlp@1", "mlp@2", "other@1"}
    # Params and metrics become columns in first-seen order; a curve shows its final value.
    assert t.data["params"] == ["lr", "opt", "batch", "depth"]
    assert t.data["metrics"] == ["acc", "loss"]
    assert rows["mlp@1"]["metrics"] == {"acc": 0.81, "loss": 0.42}
    assert rows["mlp@2"]["params"] == {"lr": 0.05, "batch": 64}
    assert rows["mlp@2"]["tags"] == ["best"] and rows["mlp@1"]["tags"] == []
    assert rows["mlp@2"]["parents"] == ["mlp@1"]
    assert rows["mlp@1"]["parameters"] == sum(p.numel() for p in small_mlp().parameters())
    assert rows["other@1"]["message"] == "unrelated"


def test_one_model(filled):
    t = VersionTable.of(filled, model="mlp")
    assert [r["ref"] for r in t.data["rows"]] == ["mlp@1", "mlp@2"]
    assert "depth" not in t.data["params"]
    with pytest.raises(RefNotFound, match="mlp"):
        VersionTable.of(filled, model="mpl")


def test_picking_two_rows_computes_their_diff(filled):
    t = VersionTable.of(filled, model="mlp")
    # What the view does when two rows are clicked: set the synced `picked` traitlet.
    t.picked = ["mlp@1", "mlp@2"]
    assert t.diff["picked"] == ["mlp@1", "mlp@2"]
    assert "error" not in t.diff
    assert t.diff["a"] == "mlp@1" and t.diff["b"] == "mlp@2"
    flat = repr(t.diff)
    assert "0.weight" in flat and "lr" in flat  # the changed tensor and the differing param are in it
    # One row unpicked → no diff.
    t.picked = ["mlp@2"]
    assert t.diff == {}
    # The Python side can pick too (scripting, tests).
    assert t.pick("mlp@2", "mlp:best")["picked"] == ["mlp@2", "mlp@2"]


def test_a_diff_that_fails_is_one_line_in_place_of_the_diff(filled):
    t = VersionTable.of(filled, model="mlp")
    filled.delete("mlp@1")  # gone since the table was drawn
    t.picked = ["mlp@1", "mlp@2"]
    assert t.diff["picked"] == ["mlp@1", "mlp@2"]
    assert "mlp@1 was deleted" in t.diff["error"] and "\n" not in t.diff["error"]
    # The table keeps working: picking two live versions still diffs.
    filled.commit(small_mlp(3), name="mlp", message="third")
    t.picked = ["mlp@2", "mlp@3"]
    assert "error" not in t.diff and t.diff["b"] == "mlp@3"


def test_static_html_table_escapes_and_truncates(filled):
    t = VersionTable.of(filled)
    html = t._repr_mimebundle_()[0]["text/html"]
    assert html.count("<tr>") == 1 + 3
    for ref in ("mlp@1", "mlp@2", "other@1"):
        assert f">{ref}<" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert ">0.42<" in html and ">best<" in html
    many = VersionTable(filled, filled.versions() * 70)
    page = many.fallback()["text/html"]
    assert page.count("<tr>") == 1 + 200
    assert "and 10 more versions" in page


def test_empty_repository(repo):
    t = VersionTable.of(repo)
    assert t.data == {"rows": [], "params": [], "metrics": []}
    assert "No versions" in t.fallback()["text/html"]
