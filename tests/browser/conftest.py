"""Real-browser tests: a real JupyterLab server on loopback, driven in headless Debian Chromium.

``lab`` (session) starts ``jupyter lab`` with its own config/data/runtime dirs, a token and a repository
folder of its own (``$MODELHUB_PATH``), so nothing leaks between runs. ``notebook`` writes a notebook into
the server's root, opens it and gives back a :class:`LabNotebook` to run cells and find widgets.
Screenshots go to ``tests/browser/screenshots/`` for people to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

SCREENSHOTS = Path(__file__).parent / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CHROMIUM is not None:
        return
    # In CI a missing browser is a broken install, not a reason to skip: `./dev install` installs it.
    if os.environ.get("CI"):
        raise pytest.UsageError("browser tests need Debian's chromium: run ./dev install (apt-get install chromium)")
    skip = pytest.mark.skip(reason="chromium is not installed (./dev install installs it)")
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright launches Debian's Chromium (Playwright's own browser download does not work here)."""
    return {
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args() -> dict[str, Any]:
    return {"viewport": {"width": 1400, "height": 1000}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    repo: Path
    env: dict[str, str]

    def page_url(self, path: str) -> str:
        # ?reset: a fresh workspace, so notebooks of earlier tests are not reopened beside this one.
        return f"{self.url}/lab/tree/{path}?reset&token={self.token}"

    def api(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("lab")
    root, repo = base / "root", base / "repo"
    root.mkdir()
    env = dict(os.environ)
    for var, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ]:
        (base / sub).mkdir()
        env[var] = str(base / sub)
    # No "get Jupyter news?" toast over the screenshots.
    (base / "config" / "labconfig").mkdir()
    (base / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    # Render every cell (no windowing), so tests can find outputs of cells scrolled out of view.
    tracker = base / "settings" / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env["MODELHUB_PATH"] = str(repo)
    env["TQDM_DISABLE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    port, token = _free_port(), "nbmodelhub-test-token"
    log = (base / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab",
            "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands without menus
            "--ServerApp.disable_check_xsrf=False",
            "--LabServerApp.workspaces_dir=" + str(base / "workspaces"),
            "--LabServerApp.user_settings_dir=" + str(base / "settings"),
        ],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    server = Lab(f"http://127.0.0.1:{port}", token, root, repo, env)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.api("/api/status")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"jupyter lab did not start: {(base / 'lab.log').read_text()[-3000:]}") from None
            time.sleep(0.3)
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


class LabNotebook:
    """One notebook open in JupyterLab: run its cells, find its outputs, take screenshots."""

    def __init__(self, page: Any, lab: Lab, path: str) -> None:
        self.page, self.lab, self.path = page, lab, path
        # This notebook's panel: Lab may have other notebooks open in background tabs.
        self.panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def wait_idle(self, timeout: float = 120) -> None:
        # The status bar text is the reliable signal (TOOLCHAIN.md); the execution indicator says idle too early.
        self.page.get_by_text("| Idle").first.wait_for(timeout=timeout * 1000)

    def command(self, name: str, args: dict[str, Any] | None = None) -> None:
        self.page.evaluate("([n, a]) => window.jupyterapp.commands.execute(n, a)", [name, args or {}])

    def run_all(self, timeout: float = 300, allow_errors: bool = False) -> float:
        """Run every cell; wait until each has finished (a cell error fails the test unless ``allow_errors``).
        Returns the time.monotonic() when the last finished."""
        self.wait_idle()
        self.command("notebook:run-all-cells")
        return self.wait_cells_done(timeout, allow_errors)

    def wait_cells_done(self, timeout: float = 300, allow_errors: bool = False) -> float:
        deadline = time.monotonic() + timeout
        prompts = self.panel.locator(".jp-CodeCell .jp-InputArea-prompt")
        while time.monotonic() < deadline:
            texts = prompts.all_inner_texts()
            failed = [t for t in self.errors() if "Traceback" in t or "Error:" in t]
            if failed and not allow_errors:
                raise AssertionError(f"a cell failed in {self.path}: {failed[0][:2000]}")
            if texts and all(t.strip() not in ("[ ]:", "[*]:", "") for t in texts):
                return time.monotonic()
            time.sleep(0.1)
        raise TimeoutError(f"cells of {self.path} still running after {timeout} s: {prompts.all_inner_texts()}")

    def run_cell(self, source: str, timeout: float = 120, allow_errors: bool = False) -> float:
        """Append a cell with ``source`` at the end, run it, wait for it; returns when it finished."""
        self.command("notebook:move-cursor-down")
        self.panel.locator(".jp-Notebook").click()
        self.command("notebook:insert-cell-below")
        editor = self.panel.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content")
        editor.fill(source)
        self.command("notebook:run-cell")
        return self.wait_cells_done(timeout, allow_errors)

    def output(self, index: int) -> Any:
        """The output area of the index-th code cell (0-based)."""
        return self.panel.locator(".jp-CodeCell").nth(index).locator(".jp-OutputArea")

    def output_of(self, source: str) -> Any:
        """The output area of the one code cell whose source contains ``source``."""
        cell = self.panel.locator(".jp-CodeCell").filter(has=self.page.locator(".jp-InputArea", has_text=source))
        return cell.locator(".jp-OutputArea")

    def errors(self) -> list[str]:
        stderr = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        return self.panel.locator(stderr).all_inner_texts()

    def screenshot(self, locator: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        locator.scroll_into_view_if_needed()
        locator.screenshot(path=str(path))
        return path


def write_notebook(directory: Path, name: str, cells: list[str], kernel: str = "python3") -> str:
    """A notebook of code cells (a cell starting with '# md' is markdown) written into ``directory``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    for source in cells:
        if source.startswith("# md\n"):
            nb.cells.append(nbformat.v4.new_markdown_cell(source.removeprefix("# md\n")))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(source))
    path = directory / name
    nbformat.write(nb, path)
    return name


@pytest.fixture
def open_notebook(lab: Lab, page: Any) -> Any:
    """open_notebook(name_or_cells, name=...) → a LabNotebook open and with its kernel idle."""

    def open_(cells: list[str] | str, name: str = "test.ipynb", copy_from: Path | None = None) -> LabNotebook:
        if copy_from is not None:
            shutil.copy(copy_from, lab.root / name)
        elif isinstance(cells, list):
            write_notebook(lab.root, name, cells)
        else:
            name = cells
        page.goto(lab.page_url(name))
        nb = LabNotebook(page, lab, name)
        nb.panel.locator(".jp-Notebook").wait_for(timeout=60_000)
        nb.wait_idle()
        return nb

    yield open_
    # Shut kernels down so the next test starts clean and the 2 CPUs are not shared with idle kernels.
    try:
        for session in lab.api("/api/sessions"):
            request = urllib.request.Request(
                f"{lab.url}/api/sessions/{session['id']}",
                method="DELETE",
                headers={"Authorization": f"token {lab.token}"},
            )
            urllib.request.urlopen(request, timeout=10).close()
    except OSError:
        pass
