"""Small JSON documents (version records, layer graphs, refs) stored as zarr v3 group nodes.

Each document is the ``attributes`` of a group's ``zarr.json``, so the whole repository stays one
browsable zarr hierarchy. JSON has no NaN or infinity; metric values can be both (a diverged loss),
so they travel as the strings zarr itself uses for such fill values.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Mapping
from typing import Any

import blake3

from nbmodelhub.errors import CorruptObject, UsageError

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# Model and tag names become key segments and appear in refs like ``name@3`` and ``name:tag``.
NAME_PATTERN = re.compile(r"^[^\W_][\w.+-]{0,127}$", re.UNICODE)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def _show(value: Any) -> str:
    """A bounded repr for error messages: a huge or deeply nested value must not become a huge line or a
    RecursionError of its own."""
    return _REPR.repr(value)


def _label(key: str) -> str:
    """A param or metric name as shown in a message: itself when printable, else its bounded repr, so a key
    with a newline cannot split the one-line error."""
    return key if key.isprintable() and len(key) <= 80 else _show(key)


def check_name(name: object, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise UsageError(
            f"invalid {what} {_show(name)}: use letters, digits and . _ + - (starting with a letter or digit, "
            "at most 128 characters, no '..', '/', '@' or ':')"
        )
    # A name is a key segment beside the group's own zarr.json: a model or tag of that name would collide
    # with it (and, on case-insensitive disks, with ZARR.JSON too).
    if name.lower() == "zarr.json":
        raise UsageError(f"invalid {what} {_show(name)}: zarr.json is reserved for the store's own metadata")
    return name


def check_file_name(name: object) -> str:
    """An attached file's stored name: a relative '/'-separated path that stays inside any folder it is
    pulled into (no absolute path, no '..' or '.' or empty segment, no NUL), on POSIX and Windows alike."""
    if (
        not isinstance(name, str)
        or not name
        or "\x00" in name
        or name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")  # C:\… on Windows
        or any(part in ("", ".", "..") for part in re.split(r"[/\\]", name))
    ):
        raise UsageError(
            f"invalid file name {_show(name)}: use a relative path like configs/train.yaml "
            "(no leading '/', no '..', '.' or empty parts)"
        )
    return name


def canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def content_id(doc: Mapping[str, Any]) -> str:
    return blake3.blake3(canonical(doc)).hexdigest()


def group_node(attributes: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": attributes},
        sort_keys=True,
        ensure_ascii=False,
        allow_nan=False,
    ).encode()


def parse_group_node(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
        attributes = doc["attributes"]
        if doc.get("node_type") != "group" or not isinstance(attributes, dict):
            raise ValueError("not a group node")
        return attributes
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(f"{what} is garbled ({exc}): run `dlv fsck` to see the damage") from exc


def check_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Hyperparameters must be finite JSON values: they are shown, compared and queried."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise UsageError(f"params must be a dict of name → value, got {type(params).__name__}")
    out = {}
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"param names must be non-empty strings, got {_show(key)}")
        out[key] = _plain(value, f"param {_label(key)}", 0)
    try:
        canonical(out)
    except ValueError as exc:
        raise UsageError(f"params are not storable: {exc}") from exc
    return out


# Deeper than this is a mistake, not a hyperparameter; without a bound, Python's recursion limit (here or
# in json) would surface as a RecursionError traceback instead of one line.
MAX_DEPTH = 64


def _plain(value: Any, what: str, depth: int) -> Any:
    """Convert numpy/torch scalars and tuples to JSON values; refuse what JSON cannot hold."""
    if depth > MAX_DEPTH:
        raise UsageError(f"{what} is nested more than {MAX_DEPTH} levels deep: flatten it")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{what} is {value}: hyperparameters must be finite numbers")
        return value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return _plain(value.item(), what, depth)
    if isinstance(value, (list, tuple)):
        return [_plain(v, what, depth + 1) for v in value]
    if isinstance(value, Mapping):
        # JSON keys are strings: str(k) would read 1 back as "1", and {1: a, "1": b} would silently lose a.
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise UsageError(
                f"{what} has a key {_show(bad[0])} that is not a string: JSON keys are strings, use str keys"
            )
        return {k: _plain(v, f"{what}.{_label(k)}", depth + 1) for k, v in value.items()}
    raise UsageError(
        f"{what} has a value of type {type(value).__name__} that cannot be stored as JSON: "
        "pass a number, string, list or dict"
    )


def _metric_number(value: Any, what: str) -> float | int | str:
    # numpy/torch scalars only: .item() of a 3-element array raises a bare ValueError
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{what} must be a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def check_metrics(metrics: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, list[list[Any]]]]:
    """Split metrics into final values and per-step curves.

    A value is a number (final) or a sequence of ``(step, value)`` pairs / a ``{step: value}``
    dict (a curve whose last point is also the final value).
    """
    final: dict[str, Any] = {}
    curves: dict[str, list[list[Any]]] = {}
    if metrics is None:
        return final, curves
    if not isinstance(metrics, Mapping):
        raise UsageError(f"metrics must be a dict of name → number, got {type(metrics).__name__}")
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"metric names must be non-empty strings, got {_show(key)}")
        if isinstance(value, (Mapping, list, tuple)):
            pairs = list(value.items()) if isinstance(value, Mapping) else list(value)
            curve = []
            for pair in pairs:
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise UsageError(
                        f"metric {_label(key)}: a curve is a list of (step, value) pairs, got {_show(pair)}"
                    )
                step, number = pair
                if isinstance(step, bool) or not isinstance(step, int):
                    raise UsageError(f"metric {_label(key)}: steps must be integers, got {_show(step)}")
                curve.append([step, _metric_number(number, f"metric {_label(key)} at step {step}")])
            curve.sort(key=lambda p: p[0])
            curves[key] = curve
            if curve:
                final[key] = curve[-1][1]
        else:
            final[key] = _metric_number(value, f"metric {_label(key)}")
    return final, curves


def decode_number(value: Any) -> Any:
    return _NON_FINITE.get(value, value) if isinstance(value, str) else value
