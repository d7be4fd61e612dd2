"""What every nbmodelhub widget shares: plain-JSON data, its ESM view and a static fallback.

A widget's data is one JSON document in the ``data`` traitlet: graph JSON, histogram bins, statistics,
never tensors. Its view is one bundled ES module in ``static/`` (built from ``js/src/widgets/<name>.ts``).
Alongside the live widget, ``_repr_mimebundle_`` adds a static picture (PNG and/or HTML) so a notebook
exported, executed headlessly or viewed on a code host still shows something true.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from nbmodelhub.errors import ModelHubError

STATIC = Path(__file__).parent / "static"


class WidgetBuildMissing(ModelHubError):
    """The bundled views are missing: a source checkout that was never built."""


def esm(name: str) -> Path:
    """The bundled view module for ``js/src/widgets/<name>.ts``."""
    path = STATIC / f"{name}.js"
    if not path.exists():
        raise WidgetBuildMissing(
            f"the notebook views are not built ({path} is missing): run `npm ci && npm run build` "
            "in the source checkout, or `./dev install`"
        )
    return path


class ModelHubWidget(anywidget.AnyWidget):
    """Base class. Subclasses set ``_esm = esm("<view name>")`` and implement ``fallback``."""

    data = traitlets.Dict().tag(sync=True)
    # Pixel height of the widget's main area; the view may grow it (e.g. a details panel).
    height = traitlets.Int(520).tag(sync=True)

    def fallback(self) -> dict[str, str]:
        """Static representations, keyed by MIME type ("image/png" base64 text, "text/html")."""
        return {}

    def data_bytes(self) -> int:
        """Size of what the view receives, as JSON: what a notebook and its saved state carry."""
        return len(json.dumps(self.data, separators=(",", ":")).encode())

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        try:
            data.update(self.fallback())
        except Exception as exc:  # a picture that cannot be drawn must not hide the live widget
            data["text/plain"] = f"{data.get('text/plain', '')} (no static picture: {type(exc).__name__}: {exc})"
        return data, metadata


def figure_png(fig: Any, dpi: int = 110) -> str:
    """A matplotlib Figure as base64 PNG text (for a MIME bundle). Build figures with
    ``matplotlib.figure.Figure`` (not pyplot), so nothing leaks into the notebook's inline backend."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")
