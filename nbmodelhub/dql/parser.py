"""Text → :mod:`nbmodelhub.dql.syntax` objects. Errors point at the line and column with a caret."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

import lark

from nbmodelhub.dql import syntax as s
from nbmodelhub.errors import UsageError

# How expected tokens read in an error message (lark's names are for grammar writers).
_READABLE = {
    "NAME": "a name",
    "STRING": 'a string in quotes ("…")',
    "INT": "a whole number",
    "SIGNED_NUMBER": "a number",
    "COMPARE": "a comparison (=, !=, <, <=, >, >=)",
    "EQ": "'='",
    "_AND": "'and'",
    "_OR": "'or'",
    "NOT": "'not'",
    "TRUE": "true",
    "FALSE": "false",
    "NULL": "null",
    "DIRECTION": "asc or desc",
    "GOAL": "min or max",
    "$END": "the end of the query",
}


class DQLSyntaxError(UsageError):
    """A query that does not parse, or names what it never defined. Says where, with a caret."""

    def __init__(self, message: str, text: str, line: int, column: int) -> None:
        self.line, self.column = line, column
        lines = text.splitlines() or [""]
        source = lines[line - 1] if 0 < line <= len(lines) else ""
        caret = " " * (max(column, 1) - 1) + "^"
        super().__init__(f"DQL syntax error at line {line}, column {column}: {message}\n  {source}\n  {caret}")


@functools.cache
def _lark() -> lark.Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return lark.Lark(grammar, parser="lalr", maybe_placeholders=True, propagate_positions=True, cache=True)


def _expected(names: set[str]) -> str:
    parser = _lark()
    patterns = {t.name: t.pattern for t in parser.terminals}
    shown = []
    for name in sorted(names):
        if name in _READABLE:
            shown.append(_READABLE[name])
        elif name in patterns and isinstance(patterns[name], lark.lexer.PatternStr):
            shown.append(f"'{patterns[name].value}'")
        else:
            shown.append(name.lower())
    unique = sorted(set(shown))
    return unique[0] if len(unique) == 1 else "one of " + ", ".join(unique)


def parse(text: str) -> s.Query:
    """Parse one DQL query. Raises :class:`DQLSyntaxError` (a ``UsageError``)."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError('a DQL query is text such as: select m where m.name like "resnet%"')
    try:
        tree = _lark().parse(text)
    except lark.UnexpectedToken as exc:
        expected = _expected(set(exc.expected))
        if exc.token.type == "$END":
            lines = text.rstrip().splitlines()
            line, column = len(lines), len(lines[-1]) + 1
            raise DQLSyntaxError(f"the query ends too early; expected {expected}", text, line, column) from None
        got = exc.token.value
        raise DQLSyntaxError(f"unexpected {got!r}; expected {expected}", text, exc.line, exc.column) from None
    except lark.UnexpectedCharacters as exc:
        allowed = _expected(set(exc.allowed)) if exc.allowed else "something else"
        char = text[exc.pos_in_stream] if exc.pos_in_stream is not None else "?"
        raise DQLSyntaxError(f"unexpected character {char!r}; expected {allowed}", text, exc.line, exc.column) from None
    except lark.UnexpectedEOF as exc:
        raise DQLSyntaxError(
            f"the query ends too early; expected {_expected(set(exc.expected))}", text, exc.line, exc.column
        ) from None
    try:
        query = _Build(text).transform(tree)
    except lark.exceptions.VisitError as exc:
        # lark wraps whatever a rule raises; our own errors (with their caret) must reach the user as they are.
        if isinstance(exc.orig_exc, UsageError):
            raise exc.orig_exc from None
        if isinstance(exc.orig_exc, (ValueError, SyntaxError)):  # a literal Python cannot read (a NUL, an escape)
            line, column = _pos(getattr(exc.obj, "meta", None))
            first = str(exc.orig_exc).strip().splitlines()[0] if str(exc.orig_exc).strip() else "unreadable"
            raise DQLSyntaxError(f"cannot read this {exc.rule}: {first}", text, line, column) from None
        raise
    _check_names(query, text)
    return query


def _unquote(token: str) -> str:
    value = ast.literal_eval(token)
    return value if isinstance(value, str) else str(value)


def _pos(meta: Any) -> s.Position:
    return (getattr(meta, "line", 1), getattr(meta, "column", 1))


@lark.v_args(meta=True)
class _Build(lark.Transformer[Any, Any]):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    # -- literals ------------------------------------------------------------------------------
    def string(self, meta: Any, c: list[Any]) -> s.Literal:
        try:
            return s.Literal(_unquote(str(c[0])))
        except (ValueError, SyntaxError) as exc:  # a NUL or a bad escape inside the quotes
            line, column = _pos(meta)
            raise DQLSyntaxError(f"bad string literal: {exc}", self.text, line, column) from None

    def number(self, meta: Any, c: list[Any]) -> s.Literal:
        text = str(c[0])
        return s.Literal(int(text) if text.lstrip("+-").isdigit() else float(text))

    def true(self, meta: Any, c: list[Any]) -> s.Literal:
        return s.Literal(True)

    def false(self, meta: Any, c: list[Any]) -> s.Literal:
        return s.Literal(False)

    def null(self, meta: Any, c: list[Any]) -> s.Literal:
        return s.Literal(None)

    def array(self, meta: Any, c: list[Any]) -> s.Literal:
        return s.Literal([x.value for x in c if x is not None])

    # -- references and layer specs ------------------------------------------------------------
    def field(self, meta: Any, c: list[Any]) -> tuple[str, str]:
        return ("field", str(c[0]))

    def layers(self, meta: Any, c: list[Any]) -> tuple[str, str]:
        return ("layers", _unquote(str(c[0])))

    def ref(self, meta: Any, c: list[Any]) -> s.Ref:
        return s.Ref(str(c[0]), tuple(c[1:]), _pos(meta))

    def keyword(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        return (str(c[0]), c[2].value)

    def _spec(self, meta: Any, c: list[Any]) -> s.LayerSpec:
        args = [a for a in c[1:] if a is not None]
        return s.LayerSpec(
            str(c[0]),
            tuple(a.value for a in args if isinstance(a, s.Literal)),
            tuple(a for a in args if isinstance(a, tuple)),
            _pos(meta),
        )

    layer = _spec
    call = _spec

    # -- expressions ---------------------------------------------------------------------------
    def compare(self, meta: Any, c: list[Any]) -> s.Compare:
        op = {"==": "=", "<>": "!="}.get(str(c[1]), str(c[1]))
        return s.Compare(c[0], op, c[2])

    def like(self, meta: Any, c: list[Any]) -> s.Like:
        return s.Like(c[0], c[2], negated=c[1] is not None)

    def member(self, meta: Any, c: list[Any]) -> s.Member:
        return s.Member(c[0], tuple(c[2].value), negated=c[1] is not None)

    def contains(self, meta: Any, c: list[Any]) -> Any:
        found = s.Compare(c[0], "in", c[2])
        return s.Not(found) if c[1] is not None else found

    def has(self, meta: Any, c: list[Any]) -> s.Has:
        if not isinstance(c[0], s.Ref) or not c[0].is_structural:
            line, column = _pos(meta)
            raise DQLSyntaxError(
                'has needs layers on its left, as in m["conv*"].next has POOL("MAX")', self.text, line, column
            )
        return s.Has(c[0], c[1])

    def negate(self, meta: Any, c: list[Any]) -> s.Not:
        return s.Not(c[-1])

    def and_(self, meta: Any, c: list[Any]) -> s.And:
        return s.And(tuple(c))

    def or_(self, meta: Any, c: list[Any]) -> s.Or:
        return s.Or(tuple(c))

    def where(self, meta: Any, c: list[Any]) -> Any:
        return c[0]

    # -- queries -------------------------------------------------------------------------------
    def order(self, meta: Any, c: list[Any]) -> tuple[s.Ref, bool]:
        return (c[0], c[1] is not None and str(c[1]).lower() == "desc")

    def limit(self, meta: Any, c: list[Any]) -> int:
        return int(c[0])

    def select(self, meta: Any, c: list[Any]) -> s.Select:
        var, where, order, limit = c
        return s.Select(str(var), where, order[0] if order else None, bool(order and order[1]), limit)

    def mutation(self, meta: Any, c: list[Any]) -> s.Mutation:
        return s.Mutation(c[0], c[2])

    def mutations(self, meta: Any, c: list[Any]) -> tuple[s.Mutation, ...]:
        return tuple(c)

    def slice(self, meta: Any, c: list[Any]) -> s.Slice:
        return s.Slice(str(c[0]), str(c[1]), c[2], c[3])

    def construct(self, meta: Any, c: list[Any]) -> s.Construct:
        return s.Construct(str(c[0]), str(c[1]), c[2], c[3])

    def setting(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        return (str(c[0]), c[2].value)

    def with_(self, meta: Any, c: list[Any]) -> dict[str, Any]:
        return dict(c)

    def axis(self, meta: Any, c: list[Any]) -> tuple[s.Ref, tuple[Any, ...]]:
        values = tuple(c[1].value)
        if not values:
            line, column = _pos(meta)
            raise DQLSyntaxError(f"{c[0].text()} varies over an empty list", self.text, line, column)
        return (c[0], values)

    def vary(self, meta: Any, c: list[Any]) -> tuple[tuple[s.Ref, tuple[Any, ...]], ...]:
        return tuple(c)

    def keep(self, meta: Any, c: list[Any]) -> s.Keep:
        k, goal, metric, at = c
        return s.Keep(int(k), metric, str(goal).lower() if goal else None, int(at) if at is not None else None)

    def evaluate(self, meta: Any, c: list[Any]) -> s.Evaluate:
        var, source, settings, axes, keep = c
        return s.Evaluate(str(var), _unquote(str(source)), settings or {}, axes or (), keep)


def _refs(node: Any) -> list[s.Ref]:
    """Every Ref inside an expression or mutation, in order."""
    if isinstance(node, s.Ref):
        return [node]
    if isinstance(node, (s.Compare,)):
        return _refs(node.left) + _refs(node.right)
    if isinstance(node, s.Like):
        return _refs(node.left) + _refs(node.pattern)
    if isinstance(node, s.Member):
        return _refs(node.left)
    if isinstance(node, s.Has):
        return [node.layers]
    if isinstance(node, s.Not):
        return _refs(node.expr)
    if isinstance(node, (s.And, s.Or)):
        return [r for item in node.items for r in _refs(item)]
    if isinstance(node, s.Mutation):
        return _refs(node.target) + _refs(node.value)
    return []


def _check_names(query: s.Query, text: str) -> None:
    """Variables must be the ones the query introduces; say which and where otherwise."""

    def check(refs: list[s.Ref], allowed: set[str]) -> None:
        for ref in refs:
            if ref.var not in allowed:
                line, column = ref.pos
                names = " or ".join(sorted(allowed))
                raise DQLSyntaxError(f"unknown name {ref.var!r}: this query speaks of {names}", text, line, column)

    if isinstance(query, s.Select):
        check(_refs(query.where) + ([query.order] if query.order else []), {query.var})
    elif isinstance(query, (s.Slice, s.Construct)):
        check(_refs(query.where), {query.source})
        for m in query.mutations:
            check(_refs(m), {query.source, query.target})
    else:
        config = {name for name, value in query.settings.items() if name != "train"}
        check([axis for axis, _ in query.axes], config or {"config"})
        if query.keep:
            check([query.keep.metric], {query.var})
