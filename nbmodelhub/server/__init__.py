"""The Jupyter server extension behind nbmodelhub's JupyterLab sidebar: authenticated JSON over the API.

Enabled by ``pip install nbmodelhub`` (the wheel ships ``jupyter_server_config.d/nbmodelhub.json``).
Settings, e.g. in ``jupyter_server_config.py``::

    c.ModelHubServer.repositories = {"team": "s3://bucket/models", "scratch": "/data/scratch-models"}
    c.ModelHubServer.read_only = False     # allow tag and delete from the sidebar (off by default)
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Dict, Unicode
from traitlets.config import Configurable

from nbmodelhub.server.repositories import Repositories, remember

__all__ = ["ModelHubServer", "remember"]


class ModelHubServer(Configurable):
    """Settings of the sidebar's server extension."""

    repositories = Dict(
        value_trait=Unicode(),
        key_trait=Unicode(),
        help="Repositories offered besides the default one: display name → folder path or URL.",
    ).tag(config=True)
    read_only = Bool(
        True,
        help="Serve repositories read-only. Set False to let the sidebar tag and delete versions "
        "(XSRF-protected POST/DELETE).",
    ).tag(config=True)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbmodelhub.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from nbmodelhub.server.handlers import setup_handlers
    from nbmodelhub.widgets import version_table  # noqa: F401  (imported now, not by the first listing)

    settings = ModelHubServer(parent=serverapp)
    repositories = Repositories(settings.repositories, read_only=settings.read_only)
    setup_handlers(serverapp.web_app, repositories)
    serverapp.log.info(
        "nbmodelhub sidebar: %d repositories configured, %s",
        len(settings.repositories),
        "read-only" if settings.read_only else "tag and delete allowed",
    )
