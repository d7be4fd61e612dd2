"""REST endpoints of the sidebar, under ``<base_url>/nbmodelhub/``. JSON in, JSON out.

Every endpoint needs an authenticated Jupyter user (no token → 403). Store work runs on a small
thread pool, never on the server's event loop. A user's mistake (a bad ref, a bad parameter)
comes back as an HTTP status with ``{"message": "…what to do next"}``; the view data is exactly
what the notebook widgets are built from (``nbmodelhub.widgets``), so both draw the same thing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from nbmodelhub.errors import (
    ConcurrentUpdate,
    CorruptObject,
    ModelHubError,
    NotARepository,
    ReadOnlyRepository,
    RefNotFound,
    UsageError,
)
from nbmodelhub.server import views
from nbmodelhub.server.repositories import Repositories

T = TypeVar("T")

# Stores are synchronous (zarr's sync face over its own loop); a few threads keep one slow
# request (histograms of a big model) from holding up the sidebar's listing.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="nbmodelhub")

_STATUS: list[tuple[type[ModelHubError], int]] = [
    (RefNotFound, 404),
    (NotARepository, 404),
    (ReadOnlyRepository, 403),
    (ConcurrentUpdate, 409),
    (UsageError, 400),
    (CorruptObject, 500),
    (ModelHubError, 400),
]


class ModelHubHandler(APIHandler):
    """Base: the shared ``Repositories``, errors as statuses with a message, work off the event loop."""

    def initialize(self, repositories: Repositories) -> None:
        self.repositories = repositories

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)
        except ModelHubError as exc:
            status = next(code for cls, code in _STATUS if isinstance(exc, cls))
            raise tornado.web.HTTPError(status, "%s", str(exc), reason=type(exc).__name__) from exc

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # One message the sidebar shows as is (the base class would add a traceback in debug mode).
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": self._reason, "status": status_code}))

    def arg(self, name: str, default: str | None = None) -> str:
        value = self.get_query_argument(name, default)
        if value is None:
            raise tornado.web.HTTPError(400, "%s", f"missing query parameter {name!r}")
        return value

    def int_arg(self, name: str, default: int, lo: int = 0, hi: int = 1_000_000) -> int:
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise tornado.web.HTTPError(400, "%s", f"{name} must be a whole number, got {text!r}") from None
        if not lo <= value <= hi:
            raise tornado.web.HTTPError(400, "%s", f"{name} must be between {lo} and {hi}, got {value}")
        return value

    def body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, "%s", "the request body must be JSON") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "%s", "the request body must be a JSON object")
        return data

    def repo_arg(self) -> str | None:
        return self.get_query_argument("repo", None)

    def reply(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, allow_nan=False, default=_jsonable))

    def require_writable(self) -> None:
        if self.repositories.read_only:
            raise tornado.web.HTTPError(
                403,
                "%s",
                "the sidebar is read-only: start Jupyter with --ModelHubServer.read_only=False "
                "to tag and delete from it (or use %dlv tag / %dlv delete in a notebook)",
            )


def _jsonable(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, (set, tuple)):
        return list(x)
    return str(x)


class RepositoriesHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        entries = await self.call(self.repositories.entries)
        self.reply({"repositories": [e.to_dict() for e in entries], "read_only": self.repositories.read_only})

    @tornado.web.authenticated
    async def post(self) -> None:
        location = self.body().get("location")
        entry = await self.call(self.repositories.add, location)
        self.reply(entry.to_dict())


class ModelsHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at = self.repo_arg()
        self.reply(await self.call(lambda: views.models(self.repositories.get(repo_at))))


class StateHandler(ModelHubHandler):
    """What the sidebar polls: a token that changes when anything commits, tags or deletes."""

    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at = self.repo_arg()
        self.reply(await self.call(lambda: views.state(self.repositories.get(repo_at))))


class VersionsHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at = self.repo_arg()
        model = self.get_query_argument("model", None) or None
        query = self.get_query_argument("q", "") or ""
        sort = self.arg("sort", "number")
        order = self.arg("order", "desc")
        offset = self.int_arg("offset", 0)
        limit = self.int_arg("limit", 100, lo=1, hi=views.MAX_PAGE)
        self.reply(
            await self.call(
                lambda: views.versions(self.repositories.get(repo_at), model, query, sort, order, offset, limit)
            )
        )


class VersionHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at, ref = self.repo_arg(), self.arg("ref")
        self.reply(await self.call(lambda: views.version(self.repositories.get(repo_at), ref)))

    @tornado.web.authenticated
    async def delete(self) -> None:
        self.require_writable()
        repo_at, ref = self.repo_arg(), self.arg("ref")
        self.reply(await self.call(lambda: self.repositories.get(repo_at).delete(ref).to_dict()))


class GraphHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at, ref = self.repo_arg(), self.arg("ref")
        stats = self.get_query_argument("stats", "1") != "0"
        self.reply(await self.call(lambda: views.graph(self.repositories.get(repo_at), ref, stats)))


class HistogramsHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at, ref = self.repo_arg(), self.arg("ref")
        other = self.get_query_argument("other", None)
        bins = self.int_arg("bins", 64, lo=1, hi=1024)
        self.reply(await self.call(lambda: views.histograms(self.repositories.get(repo_at), ref, other, bins)))


class DiffHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at, a, b = self.repo_arg(), self.arg("a"), self.arg("b")
        self.reply(await self.call(lambda: views.diff(self.repositories.get(repo_at), a, b)))


class LineageHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at, model = self.repo_arg(), self.arg("model")
        self.reply(await self.call(lambda: views.lineage(self.repositories.get(repo_at), model)))


class RunsHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        repo_at = self.repo_arg()
        active = self.get_query_argument("active", "1") != "0"
        self.reply(await self.call(lambda: views.runs(self.repositories.get(repo_at), active)))


class TagHandler(ModelHubHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        self.require_writable()
        data = self.body()
        ref, tag, force = data.get("ref"), data.get("tag"), bool(data.get("force", False))
        if not isinstance(ref, str) or not isinstance(tag, str):
            raise tornado.web.HTTPError(400, "%s", 'give {"ref": "model@N", "tag": "name"} as the JSON body')
        repo_at = data.get("repo") or self.repo_arg()
        self.reply(await self.call(lambda: self.repositories.get(repo_at).tag(ref, tag, force=force).to_dict()))


ROUTES: list[tuple[str, type[ModelHubHandler]]] = [
    ("repositories", RepositoriesHandler),
    ("models", ModelsHandler),
    ("state", StateHandler),
    ("versions", VersionsHandler),
    ("version", VersionHandler),
    ("graph", GraphHandler),
    ("histograms", HistogramsHandler),
    ("diff", DiffHandler),
    ("lineage", LineageHandler),
    ("runs", RunsHandler),
    ("tag", TagHandler),
]


def _warm_up() -> None:
    # The listing's row builder lives with the widgets (anywidget, ipywidgets): import it while the
    # server starts, not during the first request a user waits on.
    import nbmodelhub.widgets.version_table  # noqa: F401


def setup_handlers(web_app: Any, repositories: Repositories) -> None:
    _POOL.submit(_warm_up)
    base = url_path_join(web_app.settings["base_url"], "nbmodelhub")
    web_app.add_handlers(
        ".*$", [(url_path_join(base, path), handler, {"repositories": repositories}) for path, handler in ROUTES]
    )
