"""Small statistics used by the profiler, the validator and the fidelity metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (agreement, recall)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - margin), min(1.0, centre + margin))


def percentiles_ms(latencies_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """P50/P95/P99/max/mean in milliseconds (linear interpolation)."""
    values = np.asarray(latencies_s, dtype=float) * 1000.0
    if values.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def min_samples_for_percentile(q: float, tail_samples: int = 10) -> int:
    """How many samples a percentile needs to rest on ``tail_samples`` observations above
    it (P99 with 10 tail samples: 1,000)."""
    return math.ceil(tail_samples / (1 - q / 100.0))
