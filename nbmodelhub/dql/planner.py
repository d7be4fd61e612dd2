"""Plan a query's ``where``: cheap metadata tests first, over the catalog; layer graphs only for survivors.

A ``where`` is split at its top-level ``and``s. Conjuncts that read only metadata (name, dates,
params, metrics, …) run over every catalog entry without loading anything; ``name = "x"`` and
``name like "prefix%"`` narrow the models before that. Structural conjuncts (``has``) load a
layer graph — once per distinct graph — and run only on versions that passed the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from nbmodelhub.dql import syntax as s
from nbmodelhub.dql.predicates import Predicate, captures_of, compile_expr, is_structural, like_regex


@dataclass(frozen=True)
class Plan:
    metadata: Predicate | None  # over catalog data only
    structure: s.Expr | None  # needs layer graphs; may carry captures
    models: tuple[str, ...] | None  # names the query pins down (None: all models)
    model_prefix: str | None
    captures: tuple[str, ...]
    compiled: Predicate | None = None  # the structure expression, compiled once
    def explain(self) -> str:
        parts = []
        if self.models is not None:
            parts.append(f"models {', '.join(self.models)}")
        elif self.model_prefix:
            parts.append(f"models starting {self.model_prefix!r}")
        else:
            parts.append("all models")
        parts.append("metadata filter" if self.metadata else "no metadata filter")
        parts.append("then layer graphs" if self.structure else "no layer graphs")
        return "; ".join(parts)


def _conjuncts(expr: s.Expr | None) -> list[s.Expr]:
    if expr is None:
        return []
    if isinstance(expr, s.And):
        return [c for item in expr.items for c in _conjuncts(item)]
    return [expr]


def _is_name(node: s.Ref | s.Literal) -> bool:
    return isinstance(node, s.Ref) and [v for _, v in node.steps] in (["name"], ["model"])


def plan(where: s.Expr | None) -> Plan:
    metadata: list[s.Expr] = []
    structure: list[s.Expr] = []
    models: tuple[str, ...] | None = None
    prefix: str | None = None
    for c in _conjuncts(where):
        (structure if is_structural(c) else metadata).append(c)
        if isinstance(c, s.Compare) and c.op == "=" and _is_name(c.left) and isinstance(c.right, s.Literal):
            models = (str(c.right.value),)
        elif isinstance(c, s.Member) and not c.negated and _is_name(c.left):
            models = tuple(str(v) for v in c.values)
        elif isinstance(c, s.Like) and not c.negated and _is_name(c.left) and isinstance(c.pattern, s.Literal):
            text = str(c.pattern.value)
            literal = ""
            for ch in text:
                if ch in "%_\\":
                    break
                literal += ch
            prefix = literal or None
            like_regex(text)  # a bad pattern fails here, before any work
    meta = compile_expr(s.And(tuple(metadata))) if metadata else None
    struct = structure[0] if len(structure) == 1 else (s.And(tuple(structure)) if structure else None)
    return Plan(meta, struct, models, prefix, captures_of(struct), compile_expr(struct) if struct else None)
