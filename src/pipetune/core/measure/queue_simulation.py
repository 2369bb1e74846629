"""The queue model behind a capacity figure: an FCFS queue with ``c`` workers fed by
arrival gaps and measured service times (an M/G/c queue with Poisson gaps), its latency
quantiles after a warm-up, and the highest arrival rate whose quantiles meet every
latency bound, found by bisection with common random numbers. Why this model: see
:mod:`pipetune.core.measure.capacity`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping

import numpy as np

#: Simulated requests per evaluation (the first 10 % are warm-up).
SIM_REQUESTS = 20_000
#: The quantile a ``max_ms`` bound is checked at (a simulated maximum is one draw).
MAX_AS_QUANTILE = 0.999
#: The quantile each latency bound is checked at.
BOUND_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "max": MAX_AS_QUANTILE}


def max_rate(
    unit_gaps: np.ndarray,
    service_ms: np.ndarray,
    workers: int,
    bounds: Mapping[str, float],
    ceiling: float,
) -> float:
    """The highest rate in (0, ceiling] whose simulated quantiles meet every bound; 0 when
    none does. Common random numbers: the same unit gaps and service draws at every rate."""

    def ok(rate: float) -> bool:
        figures = simulate_quantiles(unit_gaps / rate, service_ms, workers)
        return all(figures[k] <= bound for k, bound in bounds.items())

    if ok(ceiling):
        return ceiling
    low = ceiling * 1e-4
    if not ok(low):
        return 0.0
    high = ceiling
    for _ in range(24):
        middle = math.sqrt(low * high)
        if ok(middle):
            low = middle
        else:
            high = middle
        if high / low < 1.002:
            break
    return low


def simulate_quantiles(
    gaps_s: np.ndarray, service_ms: np.ndarray, workers: int
) -> dict[str, float]:
    """Latency quantiles (ms) of an FCFS queue with ``workers`` servers, after a warm-up
    of the first 10 % of requests."""
    latency = simulate_latencies(gaps_s, service_ms, workers)
    return latency_quantiles(latency[len(latency) // 10 :])


def simulate_latencies(gaps_s: np.ndarray, service_ms: np.ndarray, workers: int) -> np.ndarray:
    """Per-request latency (ms: wait + service) of an FCFS queue with ``workers`` servers,
    for arrival gaps in seconds and service times in milliseconds."""
    arrivals = np.cumsum(gaps_s) * 1000.0
    if workers == 1:
        # Lindley's recursion in closed form: W_n = X_n - min_{k<=n} X_k.
        steps = np.concatenate([[0.0], service_ms[:-1] - np.diff(arrivals)])
        walk = np.cumsum(steps)
        wait = walk - np.minimum.accumulate(walk)
        latency = wait + service_ms
    else:
        free = [0.0] * workers
        latency = np.empty_like(service_ms)
        pairs = zip(arrivals.tolist(), service_ms.tolist(), strict=True)
        for i, (arrival, service) in enumerate(pairs):
            soonest = free[0]
            start = arrival if soonest <= arrival else soonest
            done = start + service
            heapq.heapreplace(free, done)
            latency[i] = done - arrival
    return latency


def latency_quantiles(values: np.ndarray) -> dict[str, float]:
    """``values`` at each bound's quantile (:data:`BOUND_QUANTILES`)."""
    qs = np.quantile(values, list(BOUND_QUANTILES.values()))
    return {k: float(v) for k, v in zip(BOUND_QUANTILES, qs, strict=True)}
