"""What a change's speed comparison says, in words: the verdict on the requirement's metric
(faster, slower, gain not proven, or too few samples to judge), warm state leaking
between passes (a cached stage faster than its hit rate allows), and requirements the
current pipeline met that a faster candidate breaks. The validator keeps a change only
when all three agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pipetune.core.kernel.model import Pipeline, Requirements
from pipetune.core.kernel.state import cache_stats
from pipetune.core.measure.comparison_result import Comparison
from pipetune.core.measure.stats import min_samples_for_quantile


def speed_verdict(comparison: Comparison, metric: str, gate: float) -> str:
    """The speed verdict in words: ``faster: ...`` when accepted, the reason otherwise.
    Every figure says what it rests on."""
    low, high = comparison.primary_ci
    label = metric_label(metric)
    if not comparison.shown(metric):
        note = f"; {comparison.coverage_note}" if comparison.coverage_note else ""
        return (
            f"{label} cannot be judged on {comparison.samples_per_side} latency samples "
            f"per side (it needs {min_samples_for_quantile(metric)}): "
            f"{comparison.coverage}{note}"
        )
    figure = f"{comparison.primary:.2f}x [{low:.2f}, {high:.2f}] on {label} ({comparison.coverage})"
    if comparison.primary < 1.0 and high < 1.0:
        return f"slower: {figure}"
    if not low > gate:
        return f"gain not proven: {figure}; the lower bound must beat {gate:.2f}x"
    return f"faster: {figure}"


def cache_leak(
    current: Pipeline,
    comparison: Comparison,
    hit_rates: Mapping[str, Mapping[str, float]],
    tolerance: float,
) -> str:
    """Warm state leaking between passes, seen two ways: the timed passes missed the
    cache far less often than the cold held-out pass did (each pass starts from a
    reset, so they cannot beat a cold pass by much), or a cached stage measured faster
    than ``1 / (1 - hit rate)`` of its timed passes allows. Both allow ``tolerance`` (the
    validator's ``cache_tolerance``) for noise: a timed pass covers a part of the split."""
    before = cache_stats(current)
    for stage, figures in hit_rates.items():
        if stage in before:  # the cache was there already: not this change's cache
            continue
        rate = float(figures.get("hit_rate", 0.0))
        timed = comparison.b_cache.get(stage, {})
        if timed.get("hits", 0) + timed.get("misses", 0):
            timed_rate = float(timed["hit_rate"])
            if (1.0 - timed_rate) * tolerance < 1.0 - rate:
                return (
                    f"error: stage {stage!r} hit its cache on {timed_rate:.0%} of the "
                    f"timed passes' lookups, but on {rate:.0%} in a cold pass over the "
                    "held-out inputs: warm state must have leaked between passes (a "
                    "cache that does not implement pipetune_reset?)"
                )
            rate = timed_rate
        measured = comparison.stage_speedup(stage)
        if measured is None:
            continue
        bound = math.inf if rate >= 1.0 else 1.0 / (1.0 - rate)
        if measured > bound * tolerance:
            return (
                f"error: stage {stage!r} measured {measured:.2f}x faster, but a "
                f"{rate:.0%} hit rate allows at most {bound:.2f}x: warm state must have "
                "leaked between passes (a cache that does not implement pipetune_reset?)"
            )
    return ""


def broken_requirements(requirements: Requirements, comparison: Comparison) -> list[str]:
    """Requirements the current pipeline met in this comparison and the candidate
    does not."""
    broken = []
    a, b = comparison.a, comparison.b
    misses_a = set(_miss_keys(requirements, a.throughput_rps, a.latency_ms))
    for key, text in _misses(requirements, b.throughput_rps, b.latency_ms):
        if key not in misses_a:
            broken.append(text)
    return broken


def _misses(
    requirements: Requirements, throughput: float, latency_ms: Mapping[str, float]
) -> list[tuple[str, str]]:
    out = []
    for metric in ("p50", "p95", "p99", "max"):
        bound = getattr(requirements, f"{metric}_ms")
        value = latency_ms.get(metric)
        if bound is not None and value is not None and value > bound:
            out.append((metric, f"{metric.upper()} <= {bound:g} ms ({value:.1f} ms)"))
    if requirements.min_throughput_rps is not None and throughput < requirements.min_throughput_rps:
        out.append(
            (
                "throughput",
                f"throughput >= {requirements.min_throughput_rps:g}/s ({throughput:.1f}/s)",
            )
        )
    return out


def _miss_keys(
    requirements: Requirements, throughput: float, latency_ms: Mapping[str, float]
) -> list[str]:
    return [key for key, _ in _misses(requirements, throughput, latency_ms)]


def metric_label(metric: str) -> str:
    return "throughput" if metric == "throughput" else f"{metric.upper()} latency"
