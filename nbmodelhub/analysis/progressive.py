"""Progressive evaluation: score a version on its high-order byte planes, read the rest only if needed.

After ModelHub's progressive query evaluation. An approximate read (``precision="bf16"``) gives
every float weight truncated toward zero: its true value lies between that truncation (low bytes
0x00) and the same with low bytes 0xFF. The scoring function runs on the midpoint and on both
ends; an example whose top class wins by more than twice the spread the ends show, and that all
three agree on, is decided. Only if some example is not decided are the low-order planes read
(nothing else is read again) and the undecided examples take their answer from the full weights.

The full-precision answer is also computed, to report the agreement; when no low-order plane was
needed, that check reads the version in full, and its bytes are not counted in ``bytes_read``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nbmodelhub import adapters
from nbmodelhub.errors import CorruptObject, UsageError
from nbmodelhub.store import planes
from nbmodelhub.store.repository import Store
from nbmodelhub.store.tensors import Tensor, tensor_hash

Items = list[tuple[str, str, tuple[int, ...], str]]


def evaluate(
    store: Store,
    items: Items,
    names: list[str],
    ties: Mapping[str, str],
    fn: Callable[[Any, Any], Any],
    module: Any,
    data: Any,
    precision: str = "bf16",
) -> dict[str, Any]:
    """Metrics of a progressive evaluation. ``items`` are the tensors to read, named by ``names``."""

    def bytes_of(read: Callable[[], list[Tensor]]) -> tuple[list[Tensor], int]:
        before = store.backend.bytes_read
        got = read()
        return got, store.backend.bytes_read - before

    approx, approx_bytes = bytes_of(lambda: store.read_tensors(items, precision=precision))
    counts = [planes.planes_for(dtype, precision) for _, dtype, _, _ in items]

    def variant(fill: int | None) -> list[Tensor]:
        """The approximate weights with their missing bytes at ``fill``, or (None) at the midpoint."""
        out = []
        for tensor, count in zip(approx, counts, strict=True):
            array = tensor.array.copy()
            itemsize = array.dtype.itemsize
            if fill is not None:
                planes.fill_low(array, count, fill)
            elif count < itemsize and array.size:
                array.reshape(-1).view(np.uint8).reshape(-1, itemsize)[:, itemsize - 1 - count] = 0x80
            out.append(Tensor(tensor.dtype, array))
        return out

    def score(tensors: list[Tensor]) -> tuple[np.ndarray, np.ndarray | None]:
        state = {n: adapters.convert(t, "torch") for n, t in zip(names, tensors, strict=True)}
        state.update({alias: state[source] for alias, source in ties.items()})
        target = state
        if module is not None:
            module.load_state_dict(state, strict=True)
            target = module
        return _scores(fn(target, data))

    mid, labels = score(variant(None))
    low, _ = score(variant(0))
    high, _ = score(variant(0xFF))
    predicted = mid.argmax(axis=1)
    ends_agree = (low.argmax(axis=1) == predicted) & (high.argmax(axis=1) == predicted)
    ordered = np.sort(mid, axis=1)
    margin = ordered[:, -1] - (ordered[:, -2] if mid.shape[1] > 1 else -np.inf)
    spread = np.maximum(np.abs(low - mid), np.abs(high - mid)).max(axis=1)
    decided = ends_agree & (margin > 2 * spread)

    rest: list[Tensor] = []
    rest_bytes = 0
    if not decided.all():
        rest, rest_bytes = bytes_of(lambda: store.read_tensors(items, beyond=precision))
        full = [_combine(a, r, item) for a, r, item in zip(approx, rest, items, strict=True)]
        check_bytes = 0
    else:
        full, check_bytes = bytes_of(lambda: store.read_tensors(items))
    exact, _ = score(full)
    exact_predicted = exact.argmax(axis=1)
    final = np.where(decided, predicted, exact_predicted)
    used = approx_bytes + rest_bytes
    metrics: dict[str, Any] = {
        "examples": len(final),
        "decided_early": float(decided.mean()) if len(final) else 1.0,
        "bytes_read": int(used),
        "full_read_bytes": int(approx_bytes + rest_bytes if rest else check_bytes),
        "agreement": float((final == exact_predicted).mean()) if len(final) else 1.0,
    }
    metrics["bytes_fraction"] = used / metrics["full_read_bytes"] if metrics["full_read_bytes"] else 1.0
    if labels is not None:
        metrics["accuracy"] = float((final == labels).mean())
        metrics["full_accuracy"] = float((exact_predicted == labels).mean())
    return metrics


def _combine(approx: Tensor, rest: Tensor, item: tuple[str, str, tuple[int, ...], str]) -> Tensor:
    """The high planes of one read and the low planes of the other, checked against the tensor's hash."""
    array = approx.array.copy()
    flat = array.reshape(-1).view(np.uint8)
    np.bitwise_or(flat, rest.array.reshape(-1).view(np.uint8), out=flat)
    tensor = Tensor(approx.dtype, array)
    digest, _, _, what = item
    if tensor_hash(tensor) != digest:
        raise CorruptObject(f"{what}: tensor {digest[:12]} does not match its hash (the stored bytes were altered)")
    return tensor


def _scores(result: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """(N × classes scores, labels or None) from what the scoring function returned."""
    labels = None
    if isinstance(result, Mapping):
        if "scores" not in result:
            raise UsageError(
                "a progressive evaluation's function returns scores (N × classes), or {'scores', 'labels'}"
            )
        labels = result.get("labels")
        result = result["scores"]
    scores = _numpy(result).astype(np.float64)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise UsageError(f"a progressive evaluation needs scores shaped (examples, classes), got {scores.shape}")
    if labels is not None:
        labels = _numpy(labels).reshape(-1)
        if labels.shape[0] != scores.shape[0]:
            raise UsageError(f"{labels.shape[0]} labels for {scores.shape[0]} examples")
    return scores, labels


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)
