"""Graph widget benchmark in real JupyterLab and headless Chromium (Playwright).

    python benchmarks/widget_bench.py [--layers 2000] [--repeats 3] [--chromium PATH]

Starts ``jupyter lab`` on loopback with throw-away config and a throw-away repository, opens a
notebook, and measures, for each widget cell, the time from the cell finishing (its prompt turns
from ``[*]`` to ``[n]``) to the graph's ``data-drawn`` marker (set once layout and paint are done):

- GPT-2 small (``GPT2Config()``, random weights, committed to the repository) as
  ``ArchitectureGraph.of(repo, "gpt2")`` with per-layer statistics and histograms;
- a synthetic graph of ``--layers`` layers (blocks of 20 with a residual add each) as
  ``ArchitectureGraph.from_graph(graph)``;
- the peer, measured the same way in the same run: an ``ipywidgets.HTML`` widget (the least any
  widget costs to appear after its cell).

It also prints the bytes of widget data for GPT-2 (the ArchitectureGraph with histograms plus a
VersionDiff of two GPT-2 versions), next to the peer: GPT-2's bare layer-graph JSON as stored.
Bars (issue 4): GPT-2 drawn ≤ 0.5 s, 2,000 layers ≤ 2 s, GPT-2 widget data ≤ 2 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parent.parent

SETUP = """
import json, torch, ipywidgets
import nbmodelhub as mh
from transformers import GPT2Config, GPT2LMHeadModel
from nbmodelhub.graph import LayerGraph
from nbmodelhub.widgets.architecture import ArchitectureGraph
from nbmodelhub.widgets.version_diff import VersionDiff

repo = mh.open()
torch.manual_seed(0)
gpt2 = GPT2LMHeadModel(GPT2Config()).eval()
x = torch.zeros(1, 16, dtype=torch.long)
repo.commit(gpt2, name="gpt2", message="random init", params={"lr": 1e-4}, example_input=x)
with torch.no_grad():
    for p in gpt2.transformer.h[-2:].parameters():
        p.add_(torch.randn_like(p) * 1e-3)
repo.commit(gpt2, name="gpt2", message="last two blocks nudged", params={"lr": 5e-5}, example_input=x)

def synthetic(layers):
    g = LayerGraph("fx")
    g.add_group("", "Net"); g.add_group("blocks", "ModuleList")
    g.add_layer("stem", "Conv2d"); prev = "stem"
    kinds = ["Linear", "LayerNorm", "GELU", "Dropout"]
    for b in range((layers - 1) // 20):
        path = f"blocks.{b}"; g.add_group(path, "Block"); first = prev
        for i in range(19):
            lid = f"{path}.l{i}"
            params = {f"{lid}.weight": {"shape": [64, 64], "dtype": "float32", "count": 4096}} if i % 4 == 0 else {}
            g.add_layer(lid, kinds[i % 4], group=path, params=params); g.add_edge(prev, lid); prev = lid
        g.add_layer(f"{path}:add", "add", kind="op", group=path)
        g.add_edge(first, f"{path}:add"); g.add_edge(prev, f"{path}:add"); prev = f"{path}:add"
    g.ensure_groups()
    return g

big = synthetic(LAYERS)
arch = ArchitectureGraph.of(repo, "gpt2@1")
diff = VersionDiff.of(repo, "gpt2@1", "gpt2@2")
print(json.dumps({"arch": arch.data_bytes(), "diff": diff.data_bytes(), "layers": len(big),
                  "raw": len(repo.graph("gpt2@1").canonical_bytes())}))
"""

# Records, in the page, when a cell's prompt shows its execution count: the cell has finished.
WATCH = """([index]) => {
  const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[index];
  const prompt = cell.querySelector('.jp-InputArea-prompt');
  window.__cellEnd = null;
  window.__cellStart = performance.now();
  const seen = () => {
    if (/\\[\\d+\\]/.test(prompt.textContent) && window.__cellEnd === null) window.__cellEnd = performance.now();
  };
  new MutationObserver(seen).observe(prompt, {childList: true, subtree: true, characterData: true});
  // the peer's moment of appearing, caught the same way (no polling delay)
  window.__peerAt = null;
  const peer = () => {
    if (window.__peerAt === null && cell.querySelector('[data-peer]')) window.__peerAt = performance.now();
  };
  new MutationObserver(peer).observe(cell, {childList: true, subtree: true});
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_lab(base: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = dict(os.environ)
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        (base / var).mkdir()
        env[var] = str(base / var)
    (base / "JUPYTER_CONFIG_DIR" / "labconfig").mkdir()
    (base / "JUPYTER_CONFIG_DIR" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env.update(MODELHUB_PATH=str(base / "repo"), TQDM_DISABLE="1", PYTHONPATH=str(ROOT))
    port, token = _free_port(), "widget-bench"
    root = base / "root"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
         f"--LabServerApp.workspaces_dir={base / 'workspaces'}"],
        env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            req = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(req, timeout=5).close()
            return proc, url, token
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("jupyter lab did not start") from None
            time.sleep(0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2000, help="layers of the synthetic graph (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each widget cell; the median is shown")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
    if not args.chromium:
        raise SystemExit("needs Chromium: apt-get install chromium (or --chromium PATH)")
    from playwright.sync_api import sync_playwright

    cells = {
        "setup": SETUP.replace("LAYERS", str(args.layers + 1)),
        "gpt2": "ArchitectureGraph.of(repo, 'gpt2@1')",
        "synthetic": "ArchitectureGraph.from_graph(big)",
        "peer": "ipywidgets.HTML('<b data-peer=1>a widget</b>')",
    }
    with tempfile.TemporaryDirectory(prefix="nbmh-widget-bench-") as tmp:
        base = Path(tmp)
        proc, url, token = start_lab(base)
        try:
            nb = nbformat.v4.new_notebook()
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            nb.cells = [nbformat.v4.new_code_cell(cells["setup"])]
            nbformat.write(nb, base / "root" / "bench.ipynb")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=args.chromium, headless=True,
                    args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"],
                )  # fmt: skip
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/lab/tree/bench.ipynb?token={token}")
                page.get_by_text("| Idle").first.wait_for(timeout=120_000)
                print("committing two GPT-2 small versions and building the widgets' data in the kernel …")
                sizes = run_cell(page, 0, None, timeout=900)
                times: dict[str, list[tuple[float, float]]] = {k: [] for k in ("gpt2", "synthetic", "peer")}
                for _ in range(args.repeats):
                    for name in times:
                        times[name].append(run_widget(page, cells[name], name == "peer"))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    data = json.loads(sizes)

    def median(name: str, which: int) -> float:
        return statistics.median(t[which] for t in times[name])

    peer = median("peer", 1)
    print(f"\nmedians of {args.repeats} runs; peer: an ipywidgets.HTML widget, shown {peer * 1000:.0f} ms after"
          f" its cell started ({median('peer', 0) * 1000:.0f} ms after it ended)")  # fmt: skip
    for name, label, bar in (("gpt2", "GPT-2 small graph", 0.5), ("synthetic", f"{data['layers']}-layer graph", 2.0)):
        end, start = median(name, 0), median(name, 1)
        print(f"  {label:<22} drawn {end * 1000:6.0f} ms after its cell ended"
              f" ({start * 1000:6.0f} ms after it started, {start / peer:4.1f}× the peer)"
              f"   bar ≤ {bar * 1000:.0f} ms: {'met' if end <= bar else 'MISSED'}")  # fmt: skip
    total = data["arch"] + data["diff"]
    print(f"widget data for GPT-2 small: graph with histograms {data['arch'] / 1e6:.2f} MB"
          f" + diff {data['diff'] / 1e6:.2f} MB"
          f" = {total / 1e6:.2f} MB ({total / data['raw']:.1f}× the bare layer-graph JSON, {data['raw'] / 1e6:.2f} MB)"
          f"   bar ≤ 2 MB: {'met' if total <= 2e6 else 'MISSED'}")  # fmt: skip


def run_cell(p: Any, index: int, source: str | None, timeout: float = 120) -> str:
    """Run code cell ``index`` (appending one with ``source`` first if given); returns its text output."""
    if source is not None:
        p.evaluate("() => window.jupyterapp.commands.execute('notebook:move-cursor-down')")
        p.evaluate("() => window.jupyterapp.commands.execute('notebook:insert-cell-below')")
        p.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content").fill(source)
    p.evaluate(WATCH, [index])
    p.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
    p.wait_for_function("() => window.__cellEnd !== null", timeout=timeout * 1000)
    cell = p.locator(".jp-Notebook .jp-CodeCell").nth(index)
    return str(cell.locator(".jp-OutputArea-output").last.inner_text())


def run_widget(p: Any, source: str, peer: bool) -> tuple[float, float]:
    """Seconds from the widget cell's end, and from its start, to its drawing being done."""
    index = p.locator(".jp-Notebook .jp-CodeCell").count()
    run_cell(p, index, source)
    out = p.locator(".jp-Notebook .jp-CodeCell").nth(index)
    if peer:
        out.locator("[data-peer]").wait_for(timeout=60_000)
        drawn = p.evaluate("() => window.__peerAt")
    else:
        graph = out.locator(".nbmh-graph[data-drawn]")
        graph.wait_for(timeout=60_000)
        drawn = float(graph.get_attribute("data-drawn-at"))
    start, end = p.evaluate("() => [window.__cellStart, window.__cellEnd]")
    return max(0.0, (float(drawn) - float(end)) / 1000), (float(drawn) - float(start)) / 1000


if __name__ == "__main__":
    main()
