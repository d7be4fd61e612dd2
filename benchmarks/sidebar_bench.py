"""Sidebar benchmark: a model with 10,000 versions, listed in the JupyterLab sidebar in headless Chromium.

    python benchmarks/sidebar_bench.py [--versions N] [--workdir DIR]

Builds (once; kept in ``--workdir``) a repository where one model, ``big``, has ``--versions``
versions (each a real commit of a small state dict with params and metrics), next to two small
models. Then starts JupyterLab on loopback with that repository as the default and measures, in
Chromium, from the moment each action starts until the rows it asks for are drawn:

- open: load JupyterLab, show the sidebar, until the model rows are there;
- expand ``big``: until its newest versions are drawn (the first page arrives from the server);
- scroll to the end: until ``big@1`` is drawn (the server pages, the tree virtualises);
- search one version's message: until that version is listed.

Each is timed twice: cold (the server has not read the records yet) and warm. The peers, measured
in the same run on the same repository: ``repo.versions("big")`` in Python (a full listing, which
a non-paging sidebar would need before drawing anything) and ``dlv list big`` end to end. The bar
(issue 5): the 10,000 versions list in the sidebar within 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import nbmodelhub as mh

ROOT = Path(__file__).resolve().parent.parent
BAR_SECONDS = 1.0


def _commit_range(path: str, start: int, stop: int) -> int:
    os.environ["TQDM_DISABLE"] = "1"
    rng = np.random.default_rng(start)
    weights = {"fc.weight": rng.standard_normal((8, 8)).astype(np.float32), "fc.bias": np.zeros(8, np.float32)}
    with mh.open(path) as repo:
        for i in range(start, stop):
            weights["fc.bias"][i % 8] = i  # a new version is new weights, not just a new ref
            repo.commit(weights, name="big", message=f"sweep point {i}", params={"lr": 1e-4 * (1 + i % 50), "seed": i},
                        metrics={"acc": 0.5 + (i % 1000) / 2000})
    return stop - start


def build_repository(path: Path, versions: int) -> int:
    """Commits until ``big`` has ``versions`` versions (resumes an interrupted build); returns how many it has."""
    if not (path / "refs").exists():
        with mh.open(path) as repo:
            repo.commit({"w": np.ones(4, np.float32)}, name="small-a", message="a")
            repo.commit({"w": np.ones(5, np.float32)}, name="small-b", message="b")
    with mh.open(path) as repo:
        have = len(repo.numbers("big")) if "big" in repo.models() else 0
    # Two committing processes (numbers are allocated by compare-and-swap, so they interleave safely).
    chunks = [(i, min(i + 250, versions)) for i in range(have, versions, 250)]
    with ProcessPoolExecutor(2) as pool, tqdm(total=versions, initial=have, desc="committing versions") as bar:
        for done in pool.map(_commit_range, [str(path)] * len(chunks), [a for a, _ in chunks], [b for _, b in chunks]):
            bar.update(done)
    with mh.open(path) as repo:
        return len(repo.numbers("big"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_lab(repo: Path, base: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = dict(os.environ, MODELHUB_PATH=str(repo), TQDM_DISABLE="1")
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        (base / var).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / var)
    (base / "root").mkdir(exist_ok=True)
    port, token = _free_port(), "sidebar-bench"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={base / 'root'}",
         "--LabApp.expose_app_in_browser=True", f"--LabServerApp.workspaces_dir={base / 'workspaces'}"],
        env=env, cwd=base / "root", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(f"{url}/api/status", headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(request, timeout=5).close()
            return proc, url, token
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("jupyter lab did not start") from None
            time.sleep(0.3)


def measure_sidebar(url: str, token: str, versions: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    out: dict[str, float] = {}
    ref, message = _middle_version(url, token, versions)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab?token={token}")
        page.wait_for_function(
            "() => window.jupyterapp?.commands.hasCommand('nbmodelhub:show-sidebar')", timeout=60_000
        )
        page.evaluate("() => window.jupyterapp.restored")  # the layout restorer runs last: show the panel after it
        side = page.locator("#nbmodelhub-sidebar")
        for run in ("cold", "warm"):
            page.evaluate("() => window.jupyterapp.commands.execute('nbmodelhub:show-sidebar')")
            start = time.perf_counter()
            side.locator("button[aria-label=refresh]").click()
            big = side.locator('.nbmh-row-model[data-model="big"]')
            big.wait_for()
            out[f"{run}: models listed"] = time.perf_counter() - start

            start = time.perf_counter()
            big.click()
            side.locator(f'[data-ref="big@{versions}"]').wait_for()
            out[f"{run}: expand big, newest rows drawn"] = time.perf_counter() - start

            start = time.perf_counter()
            side.locator(".nbmh-side-tree").evaluate("el => { el.scrollTop = el.scrollHeight; }")
            side.locator('[data-ref="big@1"]').wait_for()
            out[f"{run}: scroll to the end, big@1 drawn"] = time.perf_counter() - start
            drawn = side.locator(".nbmh-row").count()

            start = time.perf_counter()
            side.locator("input[type=search]").fill(message)
            page.wait_for_function(
                "ref => [...document.querySelectorAll('#nbmodelhub-sidebar .nbmh-row-version')]"
                ".some(r => r.dataset.ref === ref)",
                arg=ref,
            )
            out[f"{run}: search one message, its version shown"] = time.perf_counter() - start
            side.locator("input[type=search]").fill("")
            side.locator('.nbmh-row-model[data-model="big"]').wait_for()
            side.locator('.nbmh-row-model[data-model="big"]').click()  # collapse again for the next round
        out[f"rows in the DOM while scrolled (of {versions + 3})"] = float(drawn)
        browser.close()
    return out


def _middle_version(url: str, token: str, versions: int) -> tuple[str, str]:
    """The ref and message of the version halfway down the list (what the search looks for)."""
    request = urllib.request.Request(
        f"{url}/nbmodelhub/versions?model=big&offset={versions // 2}&limit=1",
        headers={"Authorization": f"token {token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        row = json.loads(response.read())["rows"][0]
    return str(row["ref"]), str(row["message"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "results" / "sidebar")
    args = parser.parse_args()
    repo_path = args.workdir / "repo"
    versions = build_repository(repo_path, args.versions)

    os.environ["TQDM_DISABLE"] = "1"
    start = time.perf_counter()
    with mh.open(repo_path, read_only=True) as repo:
        listed = len(repo.versions("big"))
    peer_python = time.perf_counter() - start
    assert listed == versions, (listed, versions)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbmodelhub", "--repo", str(repo_path), "list", "big"],
                   check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    peer_cli = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, token = start_lab(repo_path, Path(tmp))
        try:
            figures = measure_sidebar(url, token, versions)
        finally:
            proc.terminate()
            proc.wait(timeout=20)

    print(f"\nsidebar over a model of {versions:,} versions (bar: each listing step ≤ {BAR_SECONDS:.0f} s)")
    print(f"  peer: repo.versions('big') full listing, cold   {peer_python:8.3f} s")
    print(f"  peer: `dlv list big` end to end                 {peer_cli:8.3f} s")
    worst = 0.0
    for name, value in figures.items():
        if name.startswith("rows"):
            print(f"  {name:48s} {value:8.0f}")
            continue
        if "search" not in name:
            worst = max(worst, value)
        print(f"  {name:48s} {value:8.3f} s   {peer_python / value:6.1f}× faster than the full listing")
    verdict = "within" if worst <= BAR_SECONDS else "OVER"
    print(f"  slowest listing step {worst:.3f} s: {verdict} the {BAR_SECONDS:.0f} s bar")


if __name__ == "__main__":
    main()
