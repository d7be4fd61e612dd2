"""The catalog of a hub (or of any repository): every visible version with its card, and search.

The catalog is derived, never stored: it is read from the refs, version records and cards, so it
cannot go stale and concurrent publishers need not agree on an index. Records are fetched in
parallel (they are small and immutable, so they are cached per process).

A search is a list of terms, all of which must hold:

* ``word`` or ``"two words"`` — case-insensitive, in the name, message, tags, author, card text or
  the names of params and metrics;
* ``name=resnet*``, ``tag=prod``, ``author=ana``, ``framework=torch`` — glob on that field;
* ``lr<0.01``, ``params.lr=0.01``, ``metrics.acc>=0.9``, ``acc>0.9`` — compare a param or metric
  (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``; a bare key looks in params, then metrics).

A DQL ``select …`` is handed to the query language when it is installed (``Repository.query``).
"""

from __future__ import annotations

import fnmatch
import json
import math
import operator
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nbmodelhub.errors import UsageError
from nbmodelhub.hub.cards import ModelCard, build, read_fields
from nbmodelhub.store.repository import Store

_TERM = re.compile(r"^(?P<key>[A-Za-z_][\w.\-]*?)(?P<op>>=|<=|!=|=|>|<)(?P<value>.*)$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FIELDS = ("name", "model", "tag", "author", "framework", "message")


@dataclass(frozen=True)
class Term:
    key: str | None  # None: a free word
    op: str
    value: Any


def parse(text: str) -> list[Term]:
    if not isinstance(text, str):
        raise UsageError(f"search text must be a string, got {type(text).__name__}")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot read the search {text!r}: {exc} (close your quotes)") from exc
    terms = []
    for word in words:
        m = _TERM.match(word)
        if m is None:
            terms.append(Term(None, "~", word.lower()))
            continue
        key, op, raw = m.group("key"), m.group("op"), m.group("value")
        if not raw:
            raise UsageError(f"search term {word!r} has no value: write it as {key}{op}VALUE")
        if key in _FIELDS:
            if op not in ("=", "!="):
                raise UsageError(f"{key} is text: compare it with = or != (globs allowed), not {op}")
            terms.append(Term(key, op, raw))
        else:
            terms.append(Term(key, op, _value(raw)))
    return terms


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if actual is None:
        return op == "!="
    if isinstance(actual, (int, float)) and isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if isinstance(actual, float) and math.isnan(actual):
            return op == "!="
        return _OPS[op](actual, expected)
    if op in ("=", "!="):
        same = actual == expected or (isinstance(expected, str) and fnmatch.fnmatchcase(str(actual), expected))
        return same if op == "=" else not same
    return False  # an order comparison between text and a number never holds


def matches(card: ModelCard, terms: list[Term]) -> bool:
    for term in terms:
        if term.key is None:
            haystack = "\n".join(
                [card.model, card.message, card.author, card.text(), *card.tags, *card.params, *card.metrics]
            ).lower()
            if term.value not in haystack:
                return False
            continue
        key = "name" if term.key == "model" else term.key
        if key in ("name", "author", "framework", "message"):
            actual = {"name": card.model, "author": card.author, "framework": card.framework}.get(key, card.message)
            if not _compare(actual, term.op, term.value):
                return False
        elif key == "tag":
            hit = any(fnmatch.fnmatchcase(t, str(term.value)) for t in card.tags)
            if hit != (term.op == "="):
                return False
        elif not _compare(_lookup(card, key), term.op, term.value):
            return False
    return True


def _lookup(card: ModelCard, key: str) -> Any:
    for prefix, table in (("params.", card.params), ("param.", card.params), ("metrics.", card.metrics),
                          ("metric.", card.metrics)):  # fmt: skip
        if key.startswith(prefix):
            return table.get(key[len(prefix) :])
    if key in card.params:
        return card.params[key]
    return card.metrics.get(key)


def entries(store: Store) -> list[ModelCard]:
    """Every visible version of the repository as a card, newest first."""
    refs = store.refs.all_versions()
    tags: dict[str, Mapping[str, int]] = {m: store.refs.tags(m) for m in {r.model for r in refs}}
    records = list(store.pool.map(lambda r: store.get_document("versions", r.version_id, f"{r.model}@{r.number}"),
                                  refs))  # fmt: skip
    written = {m: read_fields(store, m) for m in tags}
    cards = []
    for r, record in zip(refs, records, strict=True):
        on = [t for t, n in tags[r.model].items() if n == r.number]
        cards.append(build(store, r.model, r.number, r.version_id, record, on, written[r.model]))
    cards.sort(key=lambda c: (c.created, c.model, c.ref), reverse=True)
    return cards


def search(store: Store, text: str, latest: bool = False) -> list[ModelCard]:
    """Cards of the versions matching every term of ``text`` (all versions if it is empty)."""
    terms = parse(text)
    hits = [c for c in entries(store) if matches(c, terms)]
    if latest:
        newest: dict[str, ModelCard] = {}
        for card in hits:
            newest.setdefault(card.model, card)
        hits = list(newest.values())
    return hits
