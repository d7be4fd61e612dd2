"""The notebooks in notebooks/ run top to bottom headlessly (nbclient, a real kernel), and every widget
they show also carries its static picture, so the executed notebook reads right where no widget runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

import nbmodelhub as mh

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("MODELHUB_PATH", str(tmp_path / "repo"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("NBMODELHUB_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode, marker: str) -> list[Any]:
    """The outputs of the code cell whose source contains ``marker``."""
    cells = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"{len(cells)} cells contain {marker!r}"
    return list(cells[0].outputs)


def widget(nb: nbformat.NotebookNode, marker: str) -> dict[str, Any]:
    """The widget a cell shows: its MIME bundle, checked to carry a static picture beside the widget."""
    shown = [o for o in outputs(nb, marker) if WIDGET in o.get("data", {})]
    assert len(shown) == 1, f"the cell with {marker!r} shows no widget: {outputs(nb, marker)}"
    data = shown[0]["data"]
    assert {"image/png", "text/html"} & set(data), f"no static fallback for {marker!r}: {sorted(data)}"
    return dict(data)


def text(nb: nbformat.NotebookNode, marker: str) -> str:
    return "".join(o.get("text", "") for o in outputs(nb, marker) if o.output_type == "stream")


@pytest.mark.slow
def test_tour_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute("tour.ipynb", tmp_path, monkeypatch)
    assert "committed tour-cnn@1" in text(nb, "v1 = %dlv commit")
    assert "committed tour-cnn@3" in text(nb, "v3 = %dlv commit")
    assert "<VersionTable 3 versions>" in widget(nb, "%dlv list tour-cnn")["text/plain"]
    assert "ArchitectureGraph tour-cnn@3" in widget(nb, "%dlv desc")["text/plain"]
    widget(nb, "%dlv hist")
    diff = widget(nb, "%dlv diff")["text/plain"]
    assert "tour-cnn@2 → tour-cnn@3" in diff and "+1 " in diff  # the BatchNorm was added
    widget(nb, "%dlv log")
    repo = mh.open(tmp_path / "repo", read_only=True)
    versions = repo.versions("tour-cnn")
    assert [v.ref for v in versions] == ["tour-cnn@1", "tour-cnn@2", "tour-cnn@3"]
    assert versions[1].params["lr"] == 0.005 and versions[2].params["width"] == 16
    assert len(versions[0].curves["acc"]) == 3 and len(versions[1].curves["acc"]) == 5
    assert [e.function for e in repo.evaluations("tour-cnn@3")] == ["accuracy"]


@pytest.mark.slow
def test_gpt2_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute("gpt2.ipynb", tmp_path, monkeypatch)
    assert "committed gpt2-base@1" in text(nb, "v_base = %dlv commit")
    assert "committed gpt2-full@1" in text(nb, "v_full = %dlv commit")
    widget(nb, "%dlv desc")
    assert "<VersionTable 3 versions>" in widget(nb, "%dlv list")["text/plain"]
    widget(nb, "%dlv diff")
    widget(nb, "%dlv hist")
    widget(nb, "%dlv log")
    repo = mh.open(tmp_path / "repo", read_only=True)
    base, full, top = (repo.get(n) for n in ("gpt2-base", "gpt2-full", "gpt2-top"))
    assert full.parents == (base.id,) and top.parents == (base.id,)
    # Only the top block and the final norm moved in the second way; every weight in the first.
    base_t, top_t, full_t = (v.tensors for v in (base, top, full))
    moved_top = {n for n in top_t if top_t[n].hash != base_t[n].hash}
    assert moved_top and all(n.startswith(("transformer.h.3.", "transformer.ln_f")) for n in moved_top)
    assert sum(full_t[n].hash != base_t[n].hash for n in full_t) > len(moved_top)
    assert len(full.curves["loss"]) == 4 and full.params["trainable"] == "all"
