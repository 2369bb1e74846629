"""The statistics of paired rounds: what each ABBA round measured on either side
(:class:`Round`), each side's stage time (:class:`StageTotals`) and pooled figures
(:func:`side_summary`), the pooled speedup on a metric (:func:`pooled_ratio`) and its
expanded-percentile bootstrap interval from resampling whole rounds
(:func:`bootstrap_speedup`; why expanded: see :mod:`pipetune.core.measure.comparison`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipetune.core.measure.comparison_result import SideSummary
from pipetune.core.measure.stats import expanded_tail
from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.result import RunResult


@dataclass
class Round:
    """One round's passes: each side's latencies, wall seconds and completed inputs."""

    a_latency: list[np.ndarray] = field(default_factory=list)
    b_latency: list[np.ndarray] = field(default_factory=list)
    a_wall: float = 0.0
    b_wall: float = 0.0
    a_items: int = 0
    b_items: int = 0

    def add(self, side: str, result: RunResult) -> None:
        latency = np.asarray(result.latency_s, dtype=float)
        if side == "a":
            self.a_latency.append(latency)
            self.a_wall += result.wall_s
            self.a_items += result.completed
        else:
            self.b_latency.append(latency)
            self.b_wall += result.wall_s
            self.b_items += result.completed


class StageTotals:
    """One side's seconds per stage over its passes, the inputs they completed and the
    minor page faults they took."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.items = 0
        self.page_faults: int | None = 0  # None once a pass could not count them

    def add(self, seconds: Mapping[str, float], items: int, page_faults: int | None = None) -> None:
        for name, value in seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + value
        self.items += items
        if page_faults is None or self.page_faults is None:
            self.page_faults = None
        else:
            self.page_faults += page_faults

    def page_faults_per_item(self) -> float | None:
        if self.page_faults is None or not self.items:
            return None
        return self.page_faults / self.items

    def per_item_ms(self) -> dict[str, float]:
        n = max(self.items, 1)
        return {name: 1000.0 * value / n for name, value in self.seconds.items()}


def side_summary(
    rounds: list[Round], side: str, latency: np.ndarray, totals: StageTotals
) -> SideSummary:
    """One side's pooled figures over all rounds (two passes of each)."""
    wall = sum(getattr(r, f"{side}_wall") for r in rounds)
    n = sum(getattr(r, f"{side}_items") for r in rounds)
    pct = percentiles_ms(latency)
    return SideSummary(
        throughput_rps=n / wall if wall > 0 else 0.0,
        latency_ms=pct,
        stage_ms=totals.per_item_ms(),
        passes=2 * len(rounds),
        items=n,
        page_faults_per_item=totals.page_faults_per_item(),
    )


#: The latency percentile of each latency metric (``max`` is the 100th).
QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}


def pooled_ratio(rounds: Sequence[Round], metric: str) -> float:
    """B's speedup over A on ``metric``, pooled over ``rounds``: the throughput ratio, or
    the ratio of A's latency percentile to B's."""
    if metric == "throughput":
        a = sum(r.a_items for r in rounds) / max(sum(r.a_wall for r in rounds), 1e-12)
        b = sum(r.b_items for r in rounds) / max(sum(r.b_wall for r in rounds), 1e-12)
        return b / a if a > 0 else math.inf
    q = QUANTILES[metric]
    a = float(np.percentile(np.concatenate([x for r in rounds for x in r.a_latency]), q))
    b = float(np.percentile(np.concatenate([x for r in rounds for x in r.b_latency]), q))
    return a / b if b > 0 else math.inf


def round_metric_ratio(rnd: Round, metric: str) -> float:
    """B's speedup over A on ``metric`` in one round."""
    return pooled_ratio([rnd], metric)


def bootstrap_speedup(
    rounds: list[Round], metric: str, resamples: np.ndarray, confidence: float
) -> tuple[float, tuple[float, float]]:
    """The pooled speedup over all rounds, and its expanded-percentile bootstrap interval
    from resampling whole rounds (the pairing stays intact)."""
    point = pooled_ratio(rounds, metric)
    n = len(rounds)
    if metric == "throughput":  # vectorized: pooled items / pooled wall per side
        a_items = np.array([r.a_items for r in rounds], dtype=float)
        b_items = np.array([r.b_items for r in rounds], dtype=float)
        a_wall = np.array([r.a_wall for r in rounds])
        b_wall = np.array([r.b_wall for r in rounds])
        ratios = (b_items[resamples].sum(1) / b_wall[resamples].sum(1)) / (
            a_items[resamples].sum(1) / a_wall[resamples].sum(1)
        )
    else:
        ratios = np.array([pooled_ratio([rounds[i] for i in row], metric) for row in resamples])
    logs = np.log(np.clip(ratios, 1e-12, None))
    tail = expanded_tail(1 - confidence, n)
    low, high = np.quantile(logs, [tail, 1 - tail])
    return point, (float(math.exp(low)), float(math.exp(high)))
