"""Run a parsed query against a repository: select, slice, construct, evaluate."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbmodelhub.dql import syntax as s
from nbmodelhub.dql.planner import Plan, plan
from nbmodelhub.dql.predicates import _MISSING, Subject, bindings, compile_expr
from nbmodelhub.errors import UsageError
from nbmodelhub.graph import LayerGraph, graph_from_tensors

if TYPE_CHECKING:  # pragma: no cover
    from nbmodelhub.api import Repository, Version
    from nbmodelhub.dql.derive import DerivedModel
    from nbmodelhub.dql.evaluate import Trial


@dataclass
class QueryResult:
    """What a query gave back. ``kind`` says which of the lists is filled.

    select → ``versions``; slice/construct → ``models`` (uncommitted ``DerivedModel``s);
    evaluate → ``trials`` (every variant) and ``versions`` (the committed top k).
    """

    kind: str
    query: str
    versions: list[Version] = field(default_factory=list)
    models: list[DerivedModel] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    plan: str = ""

    def __iter__(self) -> Any:
        return iter(self.versions if self.kind in ("select", "evaluate") else self.models)

    def __len__(self) -> int:
        return len(self.versions) if self.kind in ("select", "evaluate") else len(self.models)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "query": self.query,
            "plan": self.plan,
            "versions": [v.to_dict() for v in self.versions],
            "models": [m.to_dict() for m in self.models],
            "trials": [t.to_dict() for t in self.trials],
        }

    def __repr__(self) -> str:
        if self.kind == "select":
            return f"<QueryResult select: {len(self.versions)} versions>"
        if self.kind == "evaluate":
            return f"<QueryResult evaluate: {len(self.trials)} variants, committed {[v.ref for v in self.versions]}>"
        return f"<QueryResult {self.kind}: {len(self.models)} models>"


class _Graphs:
    """Layer graphs by id for one query: a graph shared by 1,000 versions is parsed once."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.cache: dict[str, LayerGraph] = {}

    def __call__(self, m: Subject) -> LayerGraph:
        gid = m.record.get("graph")
        if gid is None:
            snaps = m.record.get("snapshots") or [{"tensors": {}}]
            tensors = snaps[-1]["tensors"]
            return graph_from_tensors({n: (t["dtype"], tuple(t["shape"])) for n, t in tensors.items()})
        if gid not in self.cache:
            doc = self.repo.store.get_document("graphs", gid, f"{m.model}@{m.number}: layer graph")
            self.cache[gid] = LayerGraph.from_json(doc)
        return self.cache[gid]


def _subjects(repo: Repository, p: Plan, graphs: _Graphs) -> list[Subject]:
    catalog = repo.catalog
    catalog.refresh()
    known = catalog.models(fresh=False)
    if p.models is not None:
        models = [m for m in p.models if m in known]
    else:
        models = [m for m in known if not p.model_prefix or m.startswith(p.model_prefix)]
    out = []
    for model in models:
        entries = catalog.entries(model, fresh=False)
        if not entries:
            continue
        tags: dict[int, list[str]] = {}
        for tag, n in catalog.tags(model, fresh=False).items():
            tags.setdefault(n, []).append(tag)
        latest = entries[-1].number
        for e in entries:
            out.append(Subject(e.model, e.number, e.id, e.record, tuple(sorted(tags.get(e.number, []))),
                               e.number == latest, graphs))  # fmt: skip
    return out


def _names_version(expr: s.Expr | None) -> bool:
    """Does the where clause pick versions itself (by number, ref, id or latest)?"""
    from nbmodelhub.dql.parser import _refs

    return any(r.steps and r.steps[0][1] in ("number", "version", "ref", "id", "latest") for r in _refs(expr))


def select(repo: Repository, where: s.Expr | None, graphs: _Graphs) -> tuple[list[Subject], dict[str, list[Any]], Plan]:
    """Subjects passing ``where`` and, for each, the capture bindings under which it holds."""
    p = plan(where)
    subjects = _subjects(repo, p, graphs)
    if p.metadata is not None:
        meta = p.metadata
        subjects = [m for m in subjects if meta(m, {})]
    found: dict[str, list[Any]] = {}
    kept = []
    for m in subjects:
        b = bindings(p.structure, m, p.compiled) if p.structure is not None else [{}]
        if b:
            found[m.id + str(m.number) + m.model] = b
            kept.append(m)
    return kept, found, p


def _versions(repo: Repository, subjects: list[Subject]) -> list[Version]:
    from nbmodelhub.store.catalog import Entry

    return repo.versions_of(Entry(m.model, m.number, m.id, dict(m.record)) for m in subjects)


def _order_key(ref: s.Ref) -> Any:
    get = compile_expr(s.Compare(ref, "=", s.Literal(None)))  # validates the field names
    del get
    fields = tuple(v for _, v in ref.steps)

    def key(m: Subject) -> tuple[int, Any]:
        v = m.field(fields)
        if v is _MISSING or v is None:
            return (1, 0)
        return (0, v) if isinstance(v, (int, float)) else (0, str(v))

    return key


def execute(
    repo: Repository,
    query: s.Query,
    text: str,
    namespace: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
) -> QueryResult:
    graphs = _Graphs(repo)
    if isinstance(query, s.Select):
        subjects, _, p = select(repo, query.where, graphs)
        if query.order is not None:
            key = _order_key(query.order)
            present = [m for m in subjects if key(m)[0] == 0]
            absent = [m for m in subjects if key(m)[0] == 1]
            try:
                present.sort(key=key, reverse=query.descending)
            except TypeError:
                raise UsageError(f"cannot order by {query.order.text()}: its values mix numbers and text") from None
            subjects = present + absent
        else:
            subjects.sort(key=lambda m: (str(m.record.get("created", "")), m.model, m.number))
        if query.limit is not None:
            subjects = subjects[: query.limit]
        return QueryResult("select", text, versions=_versions(repo, subjects), plan=p.explain())

    if isinstance(query, (s.Slice, s.Construct)):
        from nbmodelhub.dql.derive import construct_version, slice_version

        subjects, found, p = select(repo, query.where, graphs)
        if not _names_version(query.where):
            subjects = [m for m in subjects if m.latest]
        if not subjects:
            raise UsageError(f"no version matches the query's where clause: nothing to {type(query).__name__.lower()}")
        models = []
        for m, version in zip(subjects, _versions(repo, subjects), strict=True):
            graph = m.graph
            b = found[m.id + str(m.number) + m.model]
            if isinstance(query, s.Slice):
                models += [slice_version(repo, version, graph, query, bb) for bb in b]
            else:
                models.append(construct_version(repo, version, graph, query, b))
        return QueryResult(type(query).__name__.lower(), text, models=models, plan=p.explain())

    from nbmodelhub.dql.evaluate import evaluate

    sources = _evaluate_sources(repo, query.source, graphs)
    trials = evaluate(repo, query, sources, namespace or {}, executor)
    committed = [t.version for t in trials if t.version is not None]
    return QueryResult("evaluate", text, versions=committed, trials=trials, plan=f"{len(trials)} variants")


def _evaluate_sources(repo: Repository, source: str, graphs: _Graphs) -> list[Version]:
    from nbmodelhub.dql.parser import parse

    if source.strip().lower().startswith("select"):
        inner = parse(source)
        assert isinstance(inner, s.Select)
        subjects, _, _ = select(repo, inner.where, graphs)
        if not _names_version(inner.where):
            subjects = [m for m in subjects if m.latest]
        if not subjects:
            raise UsageError(f"evaluate: {source!r} matches no version")
        return _versions(repo, subjects)
    return [repo.get(source)]
