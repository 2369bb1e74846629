"""A predicted capacity checked with real online runs (``pipetune capacity TARGET``):
open-loop Poisson arrivals at the predicted rate with the chosen workers, stepping the
rate down until the measured percentiles meet the latency bounds and the run keeps up.
The plan then uses the rate that held, or says that none did."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipetune.core.kernel import control
from pipetune.core.measure.capacity import InstanceCapacity, bounds_text
from pipetune.core.measure.queue_simulation import BOUND_QUANTILES, latency_quantiles
from pipetune.core.runtime.online import run_online
from pipetune.core.runtime.result import RunResult


def measure_online(
    pipeline: Any,
    items: Sequence[Any],
    capacity: InstanceCapacity,
    *,
    seconds: float = 10.0,
    tries: int = 4,
    step: float = 0.85,
    seed: int = 0,
    timeout_s: float | None = None,
) -> InstanceCapacity:
    """Check a predicted capacity with real online runs: open-loop Poisson arrivals at the
    predicted rate with the chosen workers, stepping the rate down by ``step`` until the
    measured percentiles meet the bounds and the run keeps up (at most ``tries`` runs of
    about ``seconds`` each). Returns the capacity with ``measured`` filled in."""
    if capacity.rps <= 0:
        return capacity
    rate = capacity.rps
    attempts: list[dict[str, Any]] = []
    for attempt in range(max(1, tries)):
        requests = int(min(5000, max(200, rate * seconds)))
        result = run_online(
            pipeline,
            items,
            rate=rate,
            seed=seed + attempt,
            workers=capacity.workers,
            requests=requests,
            timeout_s=timeout_s,
        )
        control.complete(result)  # a run cut short (Ctrl-C) confirms nothing
        attempts.append(_attempt(result, rate, requests, capacity.bounds_ms))
        if attempts[-1]["held"]:
            break
        rate *= step
    return _with_measured(capacity, attempts, result)


def _attempt(
    result: RunResult, rate: float, requests: int, bounds: Mapping[str, float]
) -> dict[str, Any]:
    """What one online run at ``rate`` measured, and whether it held the bounds."""
    latency = np.asarray(result.latency_s)[result.ok_mask] * 1000.0
    figures = (
        latency_quantiles(latency) if latency.size else dict.fromkeys(BOUND_QUANTILES, math.inf)
    )
    online = result.online
    overloaded = bool(online.overloaded) if online is not None else False
    held = not overloaded and all(figures[k] <= b for k, b in bounds.items())
    return {
        "rate_rps": rate,
        "requests": requests,
        "latency_ms": figures,
        "completed_rps": online.completed_rps if online is not None else None,
        "overloaded": overloaded,
        "held": held,
    }


def _with_measured(
    capacity: InstanceCapacity, attempts: list[dict[str, Any]], result: RunResult
) -> InstanceCapacity:
    """``capacity`` at the rate the last online run measured, with the runs recorded."""
    last = attempts[-1]
    held = last["held"]
    bounds = capacity.bounds_ms
    measured = {
        "rate_rps": last["rate_rps"],
        "held": held,
        "latency_ms": last["latency_ms"],
        "attempts": attempts,
        "verdict": result.online.verdict if result.online is not None else "",
    }
    notes = list(capacity.notes)
    if held:
        method = (
            f"measured online: Poisson arrivals at {last['rate_rps']:.1f} req/s with "
            f"{capacity.workers} worker(s) held "
            + (bounds_text(bounds) if bounds else "without overload")
            + f" (predicted {capacity.rps:.1f} req/s by {capacity.method})"
        )
        rps = float(last["rate_rps"])
    else:
        method = capacity.method + " (not confirmed online)"
        rps = float(last["rate_rps"])
        notes.append(
            f"online runs did not hold the requirement even at {rps:.1f} req/s "
            f"({len(attempts)} tries); the plan uses that rate, which is optimistic"
        )
    return replace(capacity, rps=rps, method=method, measured=measured, notes=tuple(notes))
