"""What the framework callbacks share: which logged values are metrics, which settings are params."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def numeric(logs: Mapping[str, Any] | None, skip: Iterable[str] = ()) -> dict[str, float]:
    """The numbers in a framework's log dict (strings, lists and the like are not metrics)."""
    out: dict[str, float] = {}
    skipped = set(skip)
    for key, value in (logs or {}).items():
        if key in skipped or not isinstance(key, str) or not key or key.startswith("_"):
            continue
        if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value) if isinstance(value, float) or not math.isfinite(value) else value
    return out


def plain_params(settings: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The named settings whose values are plain JSON scalars (enums become their value)."""
    out: dict[str, Any] = {}
    for name in names:
        if name not in settings:
            continue
        value = getattr(settings[name], "value", settings[name])
        if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
            out[name] = value
    return out
