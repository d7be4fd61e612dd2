"""The parsed form of a DQL query: small immutable dataclasses the planner and executor walk."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Position = tuple[int, int]  # (line, column), both from 1


@dataclass(frozen=True)
class Ref:
    """``m.metrics.acc`` or ``m["conv*"].next``: a variable and its steps.

    A step is ``("field", name)`` or ``("layers", pattern)``.
    """

    var: str
    steps: tuple[tuple[str, str], ...]
    pos: Position = (1, 1)

    @property
    def is_structural(self) -> bool:
        return any(kind == "layers" for kind, _ in self.steps)

    def text(self) -> str:
        out = self.var
        for kind, value in self.steps:
            out += f".{value}" if kind == "field" else f'["{value}"]'
        return out


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class LayerSpec:
    """``POOL("MAX")`` or ``RELU("relu$1")`` or ``CONV(kernel_size=3)``."""

    type: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    pos: Position = (1, 1)

    def text(self) -> str:
        parts = [repr(a) if isinstance(a, str) else str(a) for a in self.args]
        parts += [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{self.type}({', '.join(parts)})"


@dataclass(frozen=True)
class Compare:
    left: Ref | Literal
    op: str  # one of = != < <= > >=, or in (a value in a list-valued field)
    right: Ref | Literal


@dataclass(frozen=True)
class Like:
    left: Ref | Literal
    pattern: Ref | Literal
    negated: bool = False


@dataclass(frozen=True)
class Member:
    left: Ref | Literal
    values: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class Has:
    layers: Ref
    spec: LayerSpec


@dataclass(frozen=True)
class Not:
    expr: Expr


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


Expr = Compare | Like | Member | Has | Not | And | Or


@dataclass(frozen=True)
class Mutation:
    target: Ref
    value: Ref | Literal | LayerSpec


@dataclass(frozen=True)
class Select:
    var: str
    where: Expr | None = None
    order: Ref | None = None
    descending: bool = False
    limit: int | None = None


@dataclass(frozen=True)
class Slice:
    target: str
    source: str
    where: Expr | None
    mutations: tuple[Mutation, ...]


@dataclass(frozen=True)
class Construct:
    target: str
    source: str
    where: Expr | None
    mutations: tuple[Mutation, ...]


@dataclass(frozen=True)
class Keep:
    k: int
    metric: Ref
    goal: str | None = None  # "min" | "max" | None: guessed from the metric's name
    at: int | None = None  # the step at which losers are stopped


@dataclass(frozen=True)
class Evaluate:
    var: str
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    axes: tuple[tuple[Ref, tuple[Any, ...]], ...] = ()
    keep: Keep | None = None


Query = Select | Slice | Construct | Evaluate
