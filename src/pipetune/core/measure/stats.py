"""Small statistics used by the profiler, the validator and the fidelity metrics."""

from __future__ import annotations

import math
import statistics

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


def min_samples_for_percentile(q: float, tail_samples: int = 10) -> int:
    """How many samples a percentile needs to rest on ``tail_samples`` observations above
    it (P99 with 10 tail samples: 1,000)."""
    return math.ceil(tail_samples / (1 - q / 100.0))


#: Latency samples per side a quantile needs before it is shown: on average at least one
#: sample above it (P99: 100, P95: 20, P50: 2). Below that a "P99" is the largest value
#: seen, not a tail figure.
QUANTILE_LEVELS = {"p50": 50.0, "p95": 95.0, "p99": 99.0}


def min_samples_for_quantile(name: str) -> int:
    """Samples a quantile (``p50``/``p95``/``p99``) needs to be shown as indicative; 0
    for figures that are not quantiles (throughput, mean)."""
    level = QUANTILE_LEVELS.get(name)
    if level is None:
        return 0
    return math.ceil(100.0 / (100.0 - level) - 1e-9)


def quantile_supported(name: str, samples: int) -> bool:
    return samples >= min_samples_for_quantile(name)


def wilson_items_to_prove(value: float, n: int, threshold: float, z: float = 1.96) -> int | None:
    """How many more items, agreeing at the rate ``value`` seen on ``n``, would lift the
    Wilson lower bound to ``threshold``; 0 when it is there already, ``None`` when no
    number can (the rate itself is not above the threshold)."""
    if threshold <= 0:
        return 0
    if value <= threshold or threshold >= 1:
        return None if wilson_interval(round(value * n), n, z)[0] < threshold else 0

    def low(total: int) -> float:
        return wilson_interval(round(value * total), total, z)[0]

    if n > 0 and low(n) >= threshold:
        return 0
    high = max(n, 1)
    while low(high) < threshold:
        high *= 2
        if high > 10**9:
            return None
    lower = max(n, 1)
    while lower < high:
        mid = (lower + high) // 2
        if low(mid) >= threshold:
            high = mid
        else:
            lower = mid + 1
    return high - n


# -- small-sample statistics -------------------------------------------------------------------


def expanded_tail(alpha: float, n: int) -> float:
    """The one-sided tail probability to read bootstrap percentiles at, so that a
    two-sided ``1 - alpha`` interval has t-interval coverage with ``n`` samples
    (Hesterberg 2015, "What teachers should know about the bootstrap", §5)."""
    if n < 2:
        return alpha / 2
    z = math.sqrt(n / (n - 1)) * t_quantile(1 - alpha / 2, n - 1)
    return 1 - statistics.NormalDist().cdf(z)


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (p > 0.5), by
    bisection on the CDF integrated numerically (no scipy in the core)."""
    if df <= 0:
        raise ValueError("df must be positive")
    if p <= 0.5:
        return 0.0 if p == 0.5 else -t_quantile(1 - p, df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 2001)  # Simpson's rule on [0, x]
        dens = np.exp(log_norm - (df + 1) / 2 * np.log1p(grid * grid / df))
        h = x / 2000
        integral = h / 3 * (dens[0] + dens[-1] + 4 * dens[1:-1:2].sum() + 2 * dens[2:-1:2].sum())
        return 0.5 + float(integral)

    low, high = 0.0, 1.0
    while cdf(high) < p:
        high *= 2
        if high > 1e6:
            return high
    for _ in range(60):
        mid = (low + high) / 2
        if cdf(mid) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2
