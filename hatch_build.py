"""Wheel build hook: bundle the TypeScript views into the package, so users never run npm.

`pip install .` / `python -m build` run `npm ci` and `npm run build` when the bundles are missing or older
than their sources. Editable installs skip this (`./dev install` builds in place).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ViewsBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        root = Path(self.root)
        static = root / "nbmodelhub" / "widgets" / "static"
        sources = list((root / "js").rglob("*.ts"))
        bundles = list(static.glob("*.js"))
        lab = root / "nbmodelhub" / "labextension" / "package.json"
        bundles = bundles + [lab] if lab.exists() else []  # no prebuilt lab extension: build everything
        newest_source = max((p.stat().st_mtime for p in sources), default=0.0)
        if bundles and min(p.stat().st_mtime for p in bundles) >= newest_source:
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("building nbmodelhub's notebook views needs Node.js and npm (https://nodejs.org)")
        if not (root / "node_modules").exists():
            subprocess.run([npm, "ci"], cwd=root, check=True)
        subprocess.run([npm, "run", "build"], cwd=root, check=True)
