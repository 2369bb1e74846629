"""Stages that map over the parts of an input (a document's sections, a file's chunks, a
clip's frames), and how often those parts repeat.

A stage whose input is a sequence of parts and whose output has one entry per part, each
depending on that part alone, can be cached per part: a section shared by two documents
(a letterhead, an unchanged paragraph of a revision) is computed once, even though the
documents themselves never repeat. A stage declares it (``meta["elementwise"] = True``, as
the nlp building blocks do) or :func:`verify_elementwise` finds it on observed inputs:
``fn((part,))[0]`` equals ``fn(parts)[i]`` for every sampled part.

How much such a cache gains is the hit rate a cold cache reaches over the workload's own
stream of parts, in the workload's order (:func:`hit_curve`): it grows with the number of
inputs a pass holds (the first sight of every part is a miss), so the curve says how many
inputs a measured pass needs before the hit rate approaches the whole stream's, and the
speedup a cached stage may show is at most ``1 / (1 - hit rate)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Stage
from pipetune.plugins.generic.cache import Unhashable, content_hash, is_elementwise

#: Pass lengths (inputs) at which the cold-cache hit rate is computed.
WINDOWS = (4, 8, 16, 32, 64, 128, 256)
#: A pass reaches "the workload's own repeat rate" at this share of the whole stream's.
NEAR_RATE = 0.8


def is_part_sequence(value: Any) -> bool:
    return isinstance(value, list | tuple) and not isinstance(value, str)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        if np.issubdtype(a.dtype, np.floating):
            return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5))
        return bool(np.array_equal(a, b))
    torch_like = hasattr(a, "detach") and hasattr(a, "numpy")
    if torch_like:
        return _same(a.detach().cpu().numpy(), np.asarray(b.detach().cpu().numpy()))
    try:
        return bool(a == b)
    except Exception:
        return False


def verify_elementwise(
    stage: Stage, inputs: Sequence[Any], outputs: Sequence[Any], *, samples: int = 3
) -> dict[str, Any] | None:
    """Whether a stage maps over the parts of its input, checked on observed inputs and
    outputs: one entry out per part in, and each part alone gives its own entry. Returns
    what was checked, or ``None`` (not a part-mapping stage, or a part's entry differs)."""
    if is_elementwise(stage):
        return {"declared": True}
    pairs = [
        (value, out)
        for value, out in zip(inputs, outputs, strict=False)
        if is_part_sequence(value) and len(value) >= 2 and _sized(out) == len(value)
    ]
    if len(pairs) < min(2, len(inputs)) or not pairs:
        return None
    checked = 0
    for value, out in pairs[:samples]:
        for position in (0, len(value) - 1):
            one = value[position]
            alone = stage((one,) if isinstance(value, tuple) else [one])
            if _sized(alone) != 1 or not _same(next(iter(alone)), list(out)[position]):
                return None
            checked += 1
    return {
        "declared": False,
        "verified_parts": checked,
        "verified_inputs": min(len(pairs), samples),
    }


def _sized(value: Any) -> int | None:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim >= 1 else None
    if is_part_sequence(value):
        return len(value)
    return None


def part_keys(inputs: Sequence[Any]) -> list[list[bytes]] | None:
    """The content hash of every part of every input, or ``None`` when one cannot be
    hashed."""
    try:
        return [[content_hash(part) for part in value] for value in inputs]
    except (Unhashable, TypeError):
        return None


def hit_curve(keys: Sequence[Sequence[bytes]]) -> dict[str, Any]:
    """Cold-cache hit rates over passes of consecutive inputs, in the workload's order:
    for each pass length, the mean over the passes that tile the stream; and over the
    whole stream. ``inputs_for_rate``: the shortest pass whose hit rate reaches
    :data:`NEAR_RATE` of the whole stream's."""
    total = sum(len(parts) for parts in keys)
    distinct = len({key for parts in keys for key in parts})
    whole = 1.0 - distinct / total if total else 0.0
    curve: dict[str, float] = {}
    for window in WINDOWS:
        if window >= len(keys):
            break
        rates = [_pass_rate(keys[i : i + window]) for i in range(0, len(keys) - window + 1, window)]
        curve[str(window)] = round(float(np.mean(rates)), 4)
    curve[str(len(keys))] = round(whole, 4)
    needed = next(
        (int(n) for n, rate in curve.items() if whole > 0 and rate >= NEAR_RATE * whole),
        len(keys),
    )
    return {
        "inputs": len(keys),
        "parts": total,
        "distinct_parts": distinct,
        "hit_rate": round(whole, 4),
        "by_pass_length": curve,
        "inputs_for_rate": needed,
    }


def _pass_rate(window: Sequence[Sequence[bytes]]) -> float:
    seen: set[bytes] = set()
    hits = total = 0
    for parts in window:
        for key in parts:
            total += 1
            if key in seen:
                hits += 1
            else:
                seen.add(key)
    return hits / total if total else 0.0
