"""Lossless deltas between two tensors of the same dtype and shape, byte plane by byte plane.

Two operations, both exact on the bit patterns and both bytewise, so each plane of a delta decodes
from the same plane of its base alone (an approximate read never needs a low-order byte):

- ``xor``: ``d = x ^ base``; restored by ``d ^ base``.
- ``sub``: ``d = x - base`` per byte, modulo 256; restored by ``base + d``. Unlike XOR it turns a
  small change that crosses a power of two (…7F → …80) into a small number.

Floats are never subtracted as floats: that rounds, and the archive must restore every bit.
Measured on fine-tuning steps of GPT-2, bytewise subtraction compresses a little better than XOR
(1.54× against 1.49×) and better than whole-word subtraction, whose borrows fill the top planes.
"""

from __future__ import annotations

import numpy as np

OPS = ("xor", "sub")


def encode(x: np.ndarray, base: np.ndarray, op: str) -> np.ndarray:
    """The delta of two uint8 arrays (planes or whole byte views)."""
    if op == "xor":
        return np.bitwise_xor(x, base)
    if op == "sub":
        return np.subtract(x, base, dtype=np.uint8)  # uint8 arithmetic wraps modulo 256
    raise ValueError(f"unknown delta op {op!r}")


def apply(delta: np.ndarray, base: np.ndarray, op: str) -> np.ndarray:
    """Restore ``x`` from its delta and its base, in place in ``delta``'s buffer when writable."""
    out = delta if delta.flags.writeable else delta.copy()
    if op == "xor":
        np.bitwise_xor(out, base, out=out)
    elif op == "sub":
        np.add(out, base, out=out, dtype=np.uint8)
    else:
        raise ValueError(f"unknown delta op {op!r}")
    return out
