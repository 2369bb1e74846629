"""When the requests of an online or stream run arrive, and which item each one replays.

Both open-loop modes draw the same schedule: Poisson arrivals at a rate (exponential gaps
drawn with a seed) or the offsets of a recorded :class:`~pipetune.core.kernel.model.Trace`,
for as many requests as asked (:func:`schedule_requests`); a trace that recorded request
sizes is replayed with production's mix of sizes (:func:`match_sizes`). This module only
plans arrivals; serving them is :mod:`.online`'s and :mod:`.stream`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Trace
from pipetune.core.runtime.observe import input_size


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """``n`` Poisson arrival offsets at ``rate`` per second, the first at 0."""
    if not (rate > 0 and np.isfinite(rate)):
        raise ConfigError(f"arrival rate must be a positive number, got {rate!r}")
    if n <= 0:
        return np.zeros(0)
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def arrival_schedule(
    n: int,
    *,
    rate: float | None = None,
    trace: Trace | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, str, float]:
    """Arrival offsets for ``n`` requests: ``(offsets, source, offered_rps)``.

    A trace wins over a rate; a trace shorter than ``n`` gives only its own arrivals.
    """
    if trace is not None:
        offsets = np.asarray(trace.arrivals_s[:n], dtype=float)
        offsets = offsets - offsets[0]
        return offsets, "trace", float(trace.rate)
    if rate is None:
        raise ConfigError(
            "online and stream modes need an arrival process: give rate= (requests per second, "
            "Poisson) or trace= (a recorded Trace)"
        )
    return poisson_arrivals(n, rate, seed), "poisson", float(rate)


def match_sizes(items: Sequence[Any], sizes: Sequence[int]) -> np.ndarray | None:
    """For each recorded request size, the index of a workload item of about that size.

    The nearest size wins; items within 10 % of that size take turns (so a trace of many
    similar requests does not replay one item over and over, which a cache would
    flatter). ``None`` when an item has no measurable size
    (:func:`pipetune.core.runtime.observe.input_size`).
    """
    measured = [input_size(item) for item in items]
    if not measured or any(m is None for m in measured):
        return None
    values = np.array([m[1] for m in measured if m is not None], dtype=float)
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    turns: dict[int, int] = {}
    out = np.empty(len(sizes), dtype=np.int64)
    for row, wanted in enumerate(np.asarray(sizes, dtype=float)):
        right = int(np.searchsorted(ranked, wanted))
        left = max(0, right - 1)
        right = min(right, len(ranked) - 1)
        nearest = right if abs(ranked[right] - wanted) < abs(ranked[left] - wanted) else left
        size = ranked[nearest]
        low = int(np.searchsorted(ranked, size * 0.9, side="left"))
        high = int(np.searchsorted(ranked, size * 1.1, side="right"))
        turn = turns.get(nearest, 0)
        turns[nearest] = turn + 1
        out[row] = order[low + (nearest - low + turn) % max(1, high - low)]
    return out


def schedule_requests(
    n_items: int,
    *,
    trace: Trace | None,
    rate: float | None,
    seed: int,
    requests: int | None,
) -> tuple[np.ndarray, str, float]:
    """The arrival schedule of a run over ``n_items`` items: ``requests`` requests (default:
    one per item, or the trace's length), as :func:`arrival_schedule` returns it."""
    default_n = len(trace.arrivals_s) if trace is not None else n_items
    n = default_n if requests is None else int(requests)
    if n < 1:
        raise ConfigError("requests must be >= 1")
    return arrival_schedule(n, rate=rate, trace=trace, seed=seed)
