"""Compile ``where`` expressions into Python closures over one version (a :class:`Subject`).

Fields of a version ``m``: ``m.name`` (its model), ``m.number``, ``m.ref``, ``m.id``,
``m.message``, ``m.author``, ``m.created`` (compared as a date/time), ``m.framework``,
``m.source``, ``m.tags``, ``m.parents``, ``m.parameters`` (count), ``m.step``, ``m.latest``,
``m.params.<name>…`` and ``m.metrics.<name>``. A missing field makes a comparison false.

Structure: ``m["pattern"]`` names layers; ``.next`` / ``.prev`` step along data-flow edges;
``X has TYPE(...)`` holds when the layers reached (the pattern's layers, then each ``.next`` /
``.prev`` step to all successors / predecessors) include one of that type and attributes.
With captures (``$1``) an expression is judged once per captured value, and holds for the values
where it is true — a construct then mutates exactly those layers.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nbmodelhub.dql import syntax as s
from nbmodelhub.dql.layers import Pattern, compile_pattern, match_layers, type_matches
from nbmodelhub.errors import UsageError
from nbmodelhub.graph import LayerGraph

Binding = dict[str, str]
_MISSING = object()


@dataclass
class Subject:
    """One version as a query sees it: its catalog data, and its layer graph on first use."""

    model: str
    number: int
    id: str
    record: Mapping[str, Any]
    tags: tuple[str, ...]
    latest: bool
    graph_loader: Callable[[Subject], LayerGraph]
    _graph: LayerGraph | None = None

    @property
    def graph(self) -> LayerGraph:
        if self._graph is None:
            self._graph = self.graph_loader(self)
        return self._graph

    def field(self, path: tuple[str, ...]) -> Any:
        head, rest = path[0], path[1:]
        r = self.record
        if head in ("params", "hyperparameters", "config"):
            value: Any = r.get("params", {})
        elif head == "metrics":
            value = r.get("metrics", {})
        elif rest:
            return _MISSING
        elif head in ("name", "model"):
            return self.model
        elif head in ("number", "version"):
            return self.number
        elif head == "ref":
            return f"{self.model}@{self.number}"
        elif head == "id":
            return self.id
        elif head in ("message", "author", "created", "framework", "source"):
            return r.get(head, _MISSING)
        elif head == "tags":
            return list(self.tags)
        elif head == "parents":
            return list(r.get("parents", []))
        elif head == "latest":
            return self.latest
        elif head == "step":
            snaps = r.get("snapshots") or []
            return snaps[-1].get("step") if snaps else None
        elif head == "parameters":
            snaps = r.get("snapshots") or []
            total = 0
            for t in (snaps[-1]["tensors"] if snaps else {}).values():
                n = 1
                for d in t["shape"]:
                    n *= d
                total += n
            return total
        else:
            raise UsageError(
                f"a version has no field {head!r}: use name, number, ref, id, message, author, created, framework, "
                "source, tags, parents, parameters, step, latest, params.<name> or metrics.<name>"
            )
        for key in rest:
            if not isinstance(value, Mapping) or key not in value:
                return _MISSING
            value = value[key]
        if head == "metrics" and isinstance(value, str):
            value = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.get(value, value)
        return value if rest else dict(value)


Predicate = Callable[[Subject, Binding], bool]


def captures_of(expr: s.Expr | None) -> tuple[str, ...]:
    """Capture labels ($1, …) used by the layer patterns of an expression."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, s.Has):
            for kind, value in node.layers.steps:
                if kind == "layers":
                    found.extend(c for c in compile_pattern(value).captures if c not in found)
        elif isinstance(node, s.Not):
            walk(node.expr)
        elif isinstance(node, (s.And, s.Or)):
            for item in node.items:
                walk(item)

    walk(expr)
    return tuple(found)


def is_structural(expr: s.Expr) -> bool:
    return bool(
        isinstance(expr, s.Has)
        or (isinstance(expr, s.Not) and is_structural(expr.expr))
        or (isinstance(expr, (s.And, s.Or)) and any(is_structural(i) for i in expr.items))
    )


def compile_expr(expr: s.Expr) -> Predicate:
    if isinstance(expr, s.And):
        parts = [compile_expr(i) for i in expr.items]
        return lambda m, b: all(p(m, b) for p in parts)
    if isinstance(expr, s.Or):
        parts = [compile_expr(i) for i in expr.items]
        return lambda m, b: any(p(m, b) for p in parts)
    if isinstance(expr, s.Not):
        inner = compile_expr(expr.expr)
        return lambda m, b: not inner(m, b)
    if isinstance(expr, s.Compare):
        return _compare(expr)
    if isinstance(expr, s.Like):
        return _like(expr)
    if isinstance(expr, s.Member):
        get = _operand(expr.left)
        values, negated = list(expr.values), expr.negated

        def member(m: Subject, b: Binding) -> bool:
            v = get(m)
            return v is not _MISSING and ((v in values) != negated)

        return member
    return _has(expr)


def _operand(node: s.Ref | s.Literal) -> Callable[[Subject], Any]:
    if isinstance(node, s.Literal):
        value = node.value
        return lambda m: value
    fields = tuple(v for _, v in node.steps)
    if node.is_structural or not fields:
        raise UsageError(f"{node.text()} is not a value: compare fields such as {node.var}.metrics.acc")
    return lambda m: m.field(fields)


def _is_created(node: s.Ref | s.Literal) -> bool:
    return isinstance(node, s.Ref) and [v for _, v in node.steps] == ["created"]


def _when(value: Any) -> Any:
    if not isinstance(value, str):
        return _MISSING
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{value!r} is not a date: write dates as \"2025-11-22\" or \"2025-11-22T14:30\"") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
}


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)


def _compare(expr: s.Compare) -> Predicate:
    left, right = _operand(expr.left), _operand(expr.right)
    if expr.op == "in":  # "best" in m.tags: membership in a list-valued field

        def contains(m: Subject, b: Binding) -> bool:
            a, c = left(m), right(m)
            return isinstance(c, (list, dict, str)) and a is not _MISSING and a in c

        return contains
    op = _OPS[expr.op]
    if _is_created(expr.left) or _is_created(expr.right):
        convert = _when
        for side in (expr.left, expr.right):
            if isinstance(side, s.Literal):
                _when(side.value)  # a bad date is the user's error, reported once, before any version

        def dated(m: Subject, b: Binding) -> bool:
            a, c = convert(left(m)), convert(right(m))
            return a is not _MISSING and c is not _MISSING and op(a, c)

        return dated

    def compare(m: Subject, b: Binding) -> bool:
        a, c = left(m), right(m)
        if a is _MISSING or c is _MISSING or not _comparable(a, c):
            return expr.op == "!=" and a is not _MISSING and c is not _MISSING
        return op(a, c)

    return compare


def like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE: % is any run of characters, _ is one; a backslash escapes either."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _like(expr: s.Like) -> Predicate:
    get = _operand(expr.left)
    if not isinstance(expr.pattern, s.Literal) or not isinstance(expr.pattern.value, str):
        raise UsageError('like takes a string pattern on its right, as in m.name like "resnet%"')
    regex, negated = like_regex(expr.pattern.value), expr.negated

    def like(m: Subject, b: Binding) -> bool:
        v = get(m)
        return isinstance(v, str) and (regex.match(v) is not None) != negated

    return like


def _has(expr: s.Has) -> Predicate:
    steps = expr.layers.steps
    if steps[0][0] != "layers" or any(kind == "layers" for kind, _ in steps[1:]):
        raise UsageError(f'{expr.layers.text()}: write one layer pattern first, as in m["conv*"].next')
    pattern = compile_pattern(steps[0][1])
    walks = [v for _, v in steps[1:]]
    for w in walks:
        if w not in ("next", "prev"):
            raise UsageError(f"{expr.layers.text()}: after layers come .next or .prev, not .{w}")
    spec = expr.spec
    kwargs = dict(spec.kwargs)

    answers: dict[tuple[int, tuple[tuple[str, str], ...]], bool] = {}  # versions share graphs: judge each once

    def has(m: Subject, b: Binding) -> bool:
        graph = m.graph
        key = (id(graph), tuple(sorted(b.items())))
        if key not in answers:
            reached: set[str] = set()
            for layer in bound_layers(graph, pattern, b):
                reached |= walk(graph, layer, walks)
            answers[key] = any(type_matches(spec.type, spec.args, kwargs, graph.node(n)) for n in reached)
        return answers[key]

    return has


def bound_layers(graph: LayerGraph, pattern: Pattern, binding: Binding) -> list[str]:
    """Layers a pattern names whose captures agree with ``binding`` (captures it lacks are free)."""
    return [
        layer
        for layer, caps in match_layers(pattern, list(graph.graph.nodes))
        if all(binding.get(k, v) == v for k, v in caps.items())
    ]


def walk(graph: LayerGraph, layer: str, steps: list[str]) -> set[str]:
    current = {layer}
    for step in steps:
        nxt: set[str] = set()
        for n in current:
            nxt.update(graph.graph.successors(n) if step == "next" else graph.graph.predecessors(n))
        current = nxt
    return current


def bindings(expr: s.Expr | None, m: Subject, predicate: Predicate | None = None) -> list[Binding]:
    """Every capture binding under which ``expr`` holds for ``m`` (``[{}]`` if it holds without any)."""
    if expr is None:
        return [{}]
    labels = captures_of(expr)
    predicate = predicate or compile_expr(expr)
    if not labels:
        return [{}] if predicate(m, {}) else []
    candidates: list[Binding] = []

    def collect(node: Any) -> None:
        if isinstance(node, s.Has):
            pattern = compile_pattern(node.layers.steps[0][1])
            for _, caps in match_layers(pattern, list(m.graph.graph.nodes)):
                if caps and caps not in candidates:
                    candidates.append(caps)
        elif isinstance(node, s.Not):
            collect(node.expr)
        elif isinstance(node, (s.And, s.Or)):
            for item in node.items:
                collect(item)

    collect(expr)
    return [b for b in candidates if predicate(m, b)]
