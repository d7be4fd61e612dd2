"""``%dlv``: every ``dlv`` command inside a notebook, with the same arguments.

``%load_ext nbmodelhub`` registers it, and the ``%%dql`` cell magic (queries, see
:mod:`nbmodelhub.dql`). The line is parsed by the ``dlv`` parser itself; objects are
taken from the notebook by name (``%dlv commit model -n resnet`` commits the variable ``model``, and
``%dlv eval REF --function accuracy --data test_set`` calls notebook functions). The commands that show
something return a widget (``list``, ``log``, ``desc``, ``diff``, ``hist``, ``runs``); the others print what the
CLI prints and return a value for scripting (``v = %dlv commit …`` is the new Version). An error is
one line (IPython's UsageError, which also stops "run all"); ``--debug`` shows its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
from typing import Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

import nbmodelhub as mh
from nbmodelhub import cli
from nbmodelhub.errors import ModelHubError, ReadOnlyRepository

# Commands whose notebook form is a widget rather than the CLI's text.
VIEWS = ("list", "log", "desc", "diff", "hist", "runs")


def _view(args: argparse.Namespace, repo: mh.Repository) -> Any:
    if args.command == "list":
        from nbmodelhub.widgets.version_table import VersionTable

        return VersionTable(repo, repo.versions(args.model, message=args.message, last=args.last))
    if args.command == "log":
        from nbmodelhub.widgets.lineage import Lineage

        return Lineage.of(repo, args.name)
    if args.command == "desc":
        from nbmodelhub.widgets.architecture import ArchitectureGraph

        return ArchitectureGraph.of(repo, args.ref, histograms=not args.no_stats, snapshot=args.snapshot)
    if args.command == "diff":
        from nbmodelhub.widgets.version_diff import VersionDiff

        return VersionDiff.of(repo, args.a, args.b, snapshot_a=args.snapshot_a, snapshot_b=args.snapshot_b)
    if args.command == "hist":
        from nbmodelhub.widgets.histograms import WeightHistograms

        return WeightHistograms.of(repo, args.refs, layers=args.layers, bins=args.bins)
    if args.command == "runs":
        from nbmodelhub.widgets.runs_compare import RunsCompare

        active = True if args.active else None
        return RunsCompare(repo.runs(active=active, author=args.author, model=args.model, status=args.status))
    raise AssertionError(args.command)


def add_notebook_commands(command: cli.CommandAdder) -> None:
    """Commands that only make sense where a picture can be shown."""
    p = command("hist", None, "read", "weight histograms of a version, or of two overlaid on shared bins")
    p.add_argument("refs", nargs="+", metavar="REF", help="one or two versions")
    p.add_argument("--layers", nargs="+", metavar="GLOB", help="only these layers (parameter-name globs)")
    p.add_argument("--bins", type=int, default=64, metavar="N")


@magics_class
class DlvMagics(Magics):
    """The ``%dlv`` line magic. Repositories stay open for the session, so widgets can keep using them."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.location: str | None = None  # set by `%dlv init`; None is the default repository
        self._repos: dict[str | None, mh.Repository] = {}
        self._parser = cli.build_parser(extra=add_notebook_commands)

    def repository(self, location: str | None = None) -> mh.Repository:
        """The open repository at ``location`` (default: the session's, set by ``%dlv init``)."""
        key = location if location is not None else self.location
        if key not in self._repos:
            try:
                self._repos[key] = mh.open(key)
            except ReadOnlyRepository:
                self._repos[key] = mh.open(key, read_only=True)
        return self._repos[key]

    @line_magic
    def dlv(self, line: str) -> Any:
        """Run a ``dlv`` command: ``%dlv COMMAND ARGS`` (``%dlv --help`` lists them)."""
        args = self._parse(line)
        if args is None:
            return None
        debug = bool(getattr(args, "debug", False))
        try:
            return self._run(args)
        except KeyboardInterrupt:
            raise IPythonUsageError("dlv: interrupted (nothing half-done is visible)") from None
        except ModelHubError as exc:
            if debug:
                raise
            from nbmodelhub.dql import DQLSyntaxError

            if isinstance(exc, DQLSyntaxError):  # the query with a caret under the mistake: keep every line
                raise IPythonUsageError(f"dlv: {str(exc).strip()}") from None
            raise IPythonUsageError(_one_line(str(exc))) from None
        except OSError as exc:
            if debug:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            raise IPythonUsageError(_one_line(f"{exc.strerror or exc}{where}")) from None
        except Exception as exc:
            if debug:
                raise
            raise IPythonUsageError(
                _one_line(f"{type(exc).__name__}: {exc}") + " (add --debug for the traceback)"
            ) from None

    @cell_magic
    def dql(self, line: str, cell: str) -> Any:
        """Run the DQL query in the cell: ``%%dql [-o VAR] [--repo URL]``. A select (or the versions an
        evaluate committed) shows as a version table; slice and construct show each derived model's graph.
        ``-o VAR`` keeps the QueryResult in a notebook variable."""
        parser = argparse.ArgumentParser(prog="%%dql", add_help=False)
        parser.add_argument("-o", "--out", metavar="VAR")
        parser.add_argument("--repo", metavar="URL")
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                options = parser.parse_args(shlex.split(line))
        except (SystemExit, ValueError):
            raise IPythonUsageError("usage: %%dql [-o VAR] [--repo URL], then the query in the cell") from None
        namespace = self.shell.user_ns if self.shell is not None else {}
        repo = self.repository(options.repo)
        try:
            result = repo.query(cell, namespace=namespace)
        except ModelHubError as exc:  # a syntax error's caret lines are the point: keep them
            raise IPythonUsageError(f"dql: {str(exc).strip()}") from None
        if options.out:
            namespace[options.out] = result
        if result.kind in ("select", "evaluate"):
            from nbmodelhub.widgets.version_table import VersionTable

            return VersionTable(repo, result.versions)
        from IPython.display import display

        from nbmodelhub.widgets.architecture import ArchitectureGraph

        for derived in result.models:
            display(ArchitectureGraph.from_graph(derived.graph, title=derived.name or None))
        return result

    def _parse(self, line: str) -> argparse.Namespace | None:
        try:
            argv = shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            raise IPythonUsageError(f"dlv: cannot read the line: {exc}") from None
        if not argv:
            self._parser.print_help()
            return None
        if any("\x00" in a for a in argv):  # every path would fail deep in pathlib with a bare ValueError
            raise IPythonUsageError("dlv: an argument contains a NUL character: remove it")
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                return self._parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code in (0, None):  # --help was printed
                return None
            lines = errors.getvalue().strip().splitlines()
            raise IPythonUsageError(lines[-1] if lines else "dlv: cannot parse the command") from None

    def _run(self, args: argparse.Namespace) -> Any:
        if args.command == "init":
            return self._init(args)
        repo = self.repository(args.repo)
        if args.command in VIEWS and not args.json:
            return _view(args, repo)
        if args.handler is None:
            raise mh.UsageError(f"`{args.command}` shows a picture: drop --json")
        args.namespace = self.shell.user_ns if self.shell is not None else {}
        args.result = None
        args.handler(args, repo)
        return args.result

    def _init(self, args: argparse.Namespace) -> mh.Repository:
        location = args.location or args.repo
        args.namespace = self.shell.user_ns if self.shell is not None else {}
        cli.cmd_init(args, None)
        self.location = location
        repo = self.repository(location)
        if location is not None:
            from nbmodelhub.server.repositories import remember

            remember(repo.location)  # the JupyterLab sidebar offers repositories notebooks opened
        return repo


def _one_line(message: str) -> str:
    lines = message.strip().splitlines()
    return f"dlv: {lines[0] if lines else 'unknown error'}"


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(DlvMagics)
