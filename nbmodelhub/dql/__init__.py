"""DQL, the model query language: select, slice, construct, evaluate (after ModelHub's DQL).

    import nbmodelhub as mh
    repo = mh.open()
    repo.query('select m where m.name like "alexnet%" and m.metrics.acc > 0.9')
    nbmodelhub.dql.run(repo, text, namespace=globals())     # the same; evaluate finds config/train here

The pieces: ``grammar.lark`` and ``parser.py`` (text → syntax objects, errors with a caret),
``planner.py`` (cheap metadata tests first), ``predicates.py`` (fields, layer patterns, ``has``),
``derive.py`` and ``rebuild.py`` (slice/construct → new models and torch modules),
``evaluate.py`` (hyperparameter grids on any executor), ``executor.py`` (runs a query).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from nbmodelhub.dql.derive import DerivedModel
from nbmodelhub.dql.evaluate import StopTrial, Trial, register_trainer
from nbmodelhub.dql.executor import QueryResult
from nbmodelhub.dql.parser import DQLSyntaxError, parse

if TYPE_CHECKING:  # pragma: no cover
    from nbmodelhub.api import Repository

__all__ = [
    "DQLSyntaxError",
    "DerivedModel",
    "QueryResult",
    "StopTrial",
    "Trial",
    "parse",
    "register_trainer",
    "run",
]


def run(
    repo: Repository, text: str, namespace: Mapping[str, Any] | None = None, executor: Executor | None = None
) -> QueryResult:
    """Parse and run one DQL query. ``namespace``: the notebook's variables (configs, training functions)."""
    from nbmodelhub.dql.executor import execute

    return execute(repo, parse(text), text, namespace, executor)
