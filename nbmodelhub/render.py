"""Plain-text rendering for the front doors: aligned tables and humanised numbers.

No dependency beyond the standard library, so the CLI prints the same text wherever it runs,
and the magics' static fallbacks can reuse it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "compact_kv",
    "format_value",
    "human_bytes",
    "human_count",
    "jsonable",
    "percent",
    "shape_text",
    "short_time",
    "table",
    "truncate",
]


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    align: str | None = None,
    indent: int = 0,
    gap: int = 2,
) -> str:
    """Columns padded to their widest cell; ``align`` holds one ``l``/``r`` per column.

    Trailing spaces are stripped so the output diffs and greps cleanly. Cells are ``str()``-ed;
    ``None`` shows as an empty cell.
    """
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    ncols = max([len(headers)] + [len(r) for r in cells])
    head = list(headers) + [""] * (ncols - len(headers))
    cells = [r + [""] * (ncols - len(r)) for r in cells]
    widths = [max([len(head[i])] + [len(r[i]) for r in cells]) for i in range(ncols)]
    sides = (align or "").ljust(ncols, "l")
    pad = " " * indent
    sep = " " * gap

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if s == "r" else v.ljust(w) for v, w, s in zip(values, widths, sides, strict=True)]
        return (pad + sep.join(parts)).rstrip()

    out = []
    if any(head):
        out.append(line(head))
        out.append(line([("-" * w if h else " " * w) for h, w in zip(head, widths, strict=True)]))
    out += [line(r) for r in cells]
    return "\n".join(out)


def human_count(n: int | float) -> str:
    """``46`` → ``46``, ``124_439_808`` → ``124.4M`` (parameter counts)."""
    n = float(n)
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{int(n)}" if n == int(n) else f"{n:g}"


def human_bytes(n: int | float) -> str:
    """Decimal units, as disks and object stores count: ``497_759_232`` → ``497.8 MB``."""
    n = float(n)
    if abs(n) < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def percent(x: float | None) -> str:
    """A ratio as a percentage with enough digits to tell small changes apart."""
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "∞ (from zero)" if x > 0 else "-∞"
    p = x * 100
    if p == 0:
        return "0%"
    if abs(p) >= 10:
        return f"{p:.1f}%"
    if abs(p) >= 0.01:
        return f"{p:.2f}%"
    return f"{p:.1e}%"


def format_value(value: Any) -> str:
    """A param or metric value, short: floats to 4 significant digits, JSON for the rest."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False)


def compact_kv(values: Mapping[str, Any], width: int | None = None) -> str:
    """``{"lr": 1e-4, "bs": 32}`` → ``lr=0.0001 bs=32``, cut to ``width`` characters."""
    text = " ".join(f"{k}={format_value(v)}" for k, v in values.items())
    return truncate(text, width) if width else text


def truncate(text: str, width: int) -> str:
    """One line of at most ``width`` characters, ending in ``…`` when cut."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


def short_time(iso: str) -> str:
    """``2026-11-22T11:11:31.876Z`` → ``2026-11-22 12:11`` in the local time zone."""
    if not iso:
        return ""
    try:
        when = _dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso[:16]
    if when.tzinfo is not None:
        when = when.astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def shape_text(dtype: str, shape: Sequence[int]) -> str:
    """``float32[4, 8]``; scalars show as ``float32[]``."""
    return f"{dtype}[{', '.join(str(d) for d in shape)}]"


def jsonable(value: Any) -> Any:
    """Plain JSON values: tuples become lists, non-finite floats become the strings the store
    uses for them (``NaN``, ``Infinity``, ``-Infinity``) so the output stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value
