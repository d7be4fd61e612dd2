"""RunCurves and RunsCompare: data built from real runs, live deltas, static pictures."""

from __future__ import annotations

import base64
import io
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import pythonpath_env, small_mlp

import nbmodelhub as mh
from nbmodelhub.errors import UsageError
from nbmodelhub.widgets.run_curves import RunCurves
from nbmodelhub.widgets.runs_compare import RunsCompare, compare_data, compare_runs, decimate


def capture(widget: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    widget.send = sent.append
    return sent


def test_live_curves_send_only_new_points_then_the_full_state(repo: mh.Repository) -> None:
    run = mh.run("mlp", params={"lr": 0.1}, repo=repo, model=small_mlp())
    run.log(0, loss=1.0, acc=0.1)
    view = RunCurves(run, live=False)
    sent = capture(view)
    assert view.data["status"] == "running" and view.data["curves"] == {"loss": [[0], [1.0]], "acc": [[0], [0.1]]}
    assert view.data["params"] == {"lr": 0.1}

    for step in range(1, 4):
        run.log(step, loss=1.0 / (step + 1))
    run.log(4, loss=math.nan, acc=0.5)
    assert view.pump() is True
    [delta] = sent
    assert delta["kind"] == "append" and delta["last_step"] == 4 and delta["points"] == 5
    assert delta["curves"]["loss"] == [[1, 2, 3, 4], [0.5, 1 / 3, 0.25, None]]  # NaN travels as null
    assert delta["curves"]["acc"] == [[4], [0.5]]
    assert view.pump() is True and len(sent) == 1  # nothing new: nothing sent

    run.commit()  # the run ends: the view gets its final status and the whole curves as state
    assert sent[-1]["status"] == "committed"
    assert view.data["status"] == "committed" and len(view.data["curves"]["loss"][0]) == 5


def test_live_thread_follows_a_run_in_this_process(repo: mh.Repository) -> None:
    run = mh.run("mlp", repo=repo)
    view = RunCurves(run, interval=0.02)
    sent = capture(view)
    for step in range(200):
        run.log(step, loss=float(step))
    deadline = time.monotonic() + 5
    while sum(len(m["curves"].get("loss", [[]])[0]) for m in sent) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    steps = [s for m in sent for s in m["curves"].get("loss", [[]])[0]]
    assert steps == list(range(200))  # every point once, in order
    run.discard()
    assert view._thread is not None
    view._thread.join(timeout=5)
    assert not view._thread.is_alive()


WRITER = r"""
import sys, time, nbmodelhub as mh
run = mh.run("other", repo=mh.open(sys.argv[1]))
print(run.id, flush=True)
for step in range(50):
    run.log(step, loss=step * 2.0)
print("half", flush=True)
sys.stdin.readline()
for step in range(50, 80):
    run.log(step, loss=step * 2.0)
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_curves_of_a_run_written_by_another_process(repo_path: Path) -> None:
    mh.open(repo_path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(repo_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=pythonpath_env(),
    )
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.readline()
    assert proc.stdout.readline().strip() == "half"
    repo = mh.open(repo_path)
    [info] = repo.runs(active=True)
    view = RunCurves(info, live=False)
    sent = capture(view)
    assert view.data["curves"]["loss"][0] == list(range(50)) and view.data["status"] == "running"
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"
    assert view.pump() is True
    assert sent[-1]["curves"]["loss"] == [list(range(50, 80)), [s * 2.0 for s in range(50, 80)]]
    proc.stdin.write("\n")
    proc.stdin.close()
    proc.wait(timeout=30)  # exits without committing: interrupted
    assert view.pump() is False and view.data["status"] == "interrupted"
    repo.close()


def test_run_curves_static_picture(repo: mh.Repository) -> None:
    from PIL import Image

    run = mh.run("mlp", repo=repo)
    for step in range(20):
        run.log(step, loss=1 / (step + 1), acc=step / 20, lr=0.1)
    view = run.show()
    png = base64.b64decode(view.fallback()["image/png"])
    image = Image.open(io.BytesIO(png))
    assert image.width > 600 and image.height > 150  # three panels side by side
    bundle, _ = run._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    run.discard()
    empty = mh.run("mlp", repo=repo)
    assert "no points logged yet" in RunCurves(empty, live=False).fallback()["text/html"]
    empty.discard()


def make_runs(repo: mh.Repository) -> list[Any]:
    for lr, batch in [(0.1, 32), (0.01, 32), (0.001, 32)]:
        with mh.run("mlp", params={"lr": lr, "batch": batch, "opt": "sgd"}, repo=repo, model=small_mlp()) as run:
            for step in range(1500):
                run.log(step, loss=math.exp(-lr * step) + 0.01 * math.sin(step))
    return repo.runs()


def test_compare_shows_differing_params_and_decimated_curves(repo: mh.Repository) -> None:
    runs = make_runs(repo)
    data = compare_data(runs)
    assert [r["label"] for r in data["runs"]] == ["mlp@1", "mlp@2", "mlp@3"]
    assert data["params"] == ["batch", "lr", "opt"] and data["differing"] == ["lr"]
    assert data["metrics"] == ["loss"]
    xs, _ = data["runs"][0]["curves"]["loss"]
    assert 100 < len(xs) <= 600 and xs[0] == 0 and xs[-1] == 1499 and xs == sorted(xs)
    assert data["runs"][2]["metrics"]["loss"] == pytest.approx(math.exp(-1.499) + 0.01 * math.sin(1499))
    # versions compare the same way as runs, and a run in progress joins in
    live = mh.run("mlp", params={"lr": 0.5, "batch": 64}, repo=repo)
    live.log(0, loss=2.0, acc=0.3)
    mixed = compare_data([repo.get("mlp@1"), live])
    assert mixed["differing"] == ["batch", "lr", "opt"] and mixed["metrics"] == ["loss", "acc"]
    assert mixed["runs"][1]["status"] == "running"
    live.discard()


def test_decimate_keeps_spikes_and_ends() -> None:
    xs = list(range(100_000))
    ys = [0.0] * 100_000
    ys[54_321] = 9.0
    dx, dy = decimate(xs, ys, 400)
    assert len(dx) <= 400 and dx[0] == 0 and dx[-1] == 99_999 and 54_321 in dx and max(dy) == 9.0


def test_compare_static_table_and_errors(repo: mh.Repository) -> None:
    runs = make_runs(repo)
    widget = compare_runs(runs)
    assert isinstance(widget, RunsCompare)
    page = widget.fallback()["text/html"]
    assert page.count("<tr>") == 4 and page.count("<svg") == 3 and "same in every run: batch, opt" in page
    assert "background:#fff3cd" in page and ">0.01<" in page
    assert compare_runs(["mlp@1", "mlp@3"], repo=repo).data["differing"] == ["lr"]
    with pytest.raises(UsageError, match="no runs to compare"):
        compare_runs([], repo=repo)
    with pytest.raises(UsageError, match="got a int"):
        compare_runs([3], repo=repo)  # type: ignore[list-item]
    assert np.isfinite(widget.data_bytes())
