"""Before/after from histograms: quantile differences with bootstrap intervals, the U test,
and bench runs from the run store."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError, StoreError
from pipetune.core.kernel.results import LatencyStats, Machine, Profile, StageStats
from pipetune.core.loop.store import RunStore
from pipetune.monitor.compare import (
    Distribution,
    compare_distributions,
    from_run,
    mann_whitney,
)
from pipetune.monitor.histogram import Histogram


def side(values_ms: np.ndarray, label: str = "x", kind: str = "monitor export") -> Distribution:
    return Distribution(
        label=label,
        kind=kind,
        pipeline="svc",
        histogram=Histogram.from_ms(values_ms),
        what="latency",
    )


def lognormal(n: int, median_ms: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median_ms), 0.5, n)


def test_the_same_distribution_is_no_change() -> None:
    result = compare_distributions(side(lognormal(5000, 10, 1)), side(lognormal(5000, 10, 2)))
    for diff in result.quantiles:
        assert not diff.beyond_noise, diff
        assert diff.ci[0] <= 1.0 <= diff.ci[1] or abs(diff.ratio - 1) < 0.05
    assert result.regressions == []
    assert 0.45 < result.mann_whitney["p_b_slower"] < 0.55


def test_a_thirty_percent_slowdown_is_beyond_noise() -> None:
    result = compare_distributions(side(lognormal(5000, 10, 1)), side(lognormal(5000, 13, 2)))
    p50 = result.quantiles[0]
    assert p50.ratio == pytest.approx(1.3, rel=0.05)
    assert p50.beyond_noise and p50.verdict == "slower"
    assert p50.ci[0] > 1.0
    assert len(result.regressions) >= 2
    assert result.mann_whitney["p_value"] < 1e-6
    assert result.mann_whitney["p_b_slower"] > 0.6


def test_a_speedup_is_reported_as_faster_and_is_no_regression() -> None:
    result = compare_distributions(side(lognormal(3000, 20, 1)), side(lognormal(3000, 10, 2)))
    assert all(d.verdict == "faster" for d in result.quantiles)
    assert result.regressions == []


@pytest.mark.slow
def test_a_tiny_but_significant_change_is_within_resolution() -> None:
    a = lognormal(400_000, 10, 1)
    result = compare_distributions(side(a), side(a * 1.02), min_change=0.05)
    p50 = result.quantiles[0]
    assert p50.significant and not p50.beyond_noise
    assert p50.verdict == "within resolution"
    assert result.regressions == []


def test_few_samples_give_wide_intervals_and_a_note() -> None:
    result = compare_distributions(side(lognormal(40, 10, 1)), side(lognormal(40, 11, 2)))
    p99 = result.quantiles[2]
    assert p99.ci[1] / p99.ci[0] > 1.3
    assert any("P99 rests on fewer" in note for note in result.notes)


def test_mann_whitney_from_bins_matches_the_exact_statistic_without_ties() -> None:
    # values far apart: each in its own bucket, so binning loses nothing
    a = np.array([1.0, 3.0, 9.0, 27.0])
    b = np.array([2.0, 5.0, 100.0])
    stats = mann_whitney(Histogram.from_ms(a).array(), Histogram.from_ms(b).array())
    exact = sum((x > y) + 0.5 * (x == y) for x in b for y in a)
    assert stats["u"] == exact
    assert stats["p_b_slower"] == pytest.approx(exact / 12)


def test_empty_sides_are_refused() -> None:
    empty = Distribution("e", "monitor export", "svc", Histogram.empty(), "latency")
    with pytest.raises(ConfigError, match="no samples"):
        compare_distributions(empty, side(lognormal(10, 1, 1)))


def _profile(rows: list[list[float]]) -> Profile:
    return Profile(
        pipeline="svc",
        mode="offline",
        samples=len(rows),
        throughput_rps=100.0,
        latency_ms=LatencyStats(1, 2, 3, 4),
        stages=(
            StageStats("a", "other", 0.5, 1.0),
            StageStats("b", "other", 0.4, 1.0),
            StageStats("other", "other", 0.1, 0.1),
        ),
        machine=Machine(cpu="test", cores=2, fingerprint="m1"),
        stage_ms=tuple(tuple(r) for r in rows),
    )


def test_a_bench_run_becomes_a_service_time_histogram(tmp_path) -> None:
    with RunStore(tmp_path) as store:
        run = store.start_run("svc", machine_fingerprint="m1")
        store.add_profile(run, "baseline", _profile([[4.0, 5.0, 1.0]] * 10))
        store.add_profile(run, "final", _profile([[2.0, 1.0, 1.0]] * 10))
    final = from_run(run, tmp_path)
    assert final.label == f"{run}@final" and final.kind == "bench run"
    assert final.n == 10
    assert final.histogram.percentiles_ms()["p50"] == pytest.approx(4.0, rel=0.1)
    assert set(final.stages) == {"a", "b"}
    baseline = from_run(f"{run}@baseline", tmp_path)
    assert baseline.histogram.percentiles_ms()["p50"] == pytest.approx(10.0, rel=0.1)
    with pytest.raises(ConfigError, match="no profile 'after'"):
        from_run(f"{run}@after", tmp_path)
    with pytest.raises(StoreError, match="no run"):
        from_run("nope", tmp_path)
