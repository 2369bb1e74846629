"""Capacity planning: growth checks, scaling from the sweep, the queue model, the plan."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Growth, Requirements
from pipetune.core.kernel.results import (
    ConcurrencyPoint,
    LatencyStats,
    Machine,
    Profile,
    StageStats,
)
from pipetune.core.measure import capacity as cap
from pipetune.core.measure.growth import check_growth
from pipetune.core.measure.instance_scaling import fit_usl, scaling
from pipetune.core.measure.queue_simulation import simulate_latencies, simulate_quantiles


def points(rates: dict[int, float]) -> list[ConcurrencyPoint]:
    return [ConcurrencyPoint(c, r, 0.0, 0.0) for c, r in rates.items()]


def profile(service_ms: np.ndarray, rates: dict[int, float] | None = None) -> Profile:
    return Profile(
        pipeline="svc",
        mode="offline",
        samples=len(service_ms),
        throughput_rps=1000.0 / float(np.mean(service_ms)),
        latency_ms=LatencyStats(1, 2, 3, 4),
        stages=(StageStats("model", "inference", 1.0, 1.0), StageStats("other", "other", 0, 0)),
        machine=Machine(cpu="test cpu", cores=4),
        stage_ms=tuple((float(v), 0.0) for v in service_ms),
        concurrency=tuple(points(rates)) if rates else (),
    )


# -- growth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (None, "no growth figures"),
        ({"now_rps": -5.0}, "the rate now is -5"),
        ({"now_rps": 10.0, "in_12_months_rps": -1.0}, "in 12 months is -1"),
        ({"now_rps": float("nan")}, "finite"),
        ({"now_rps": "ten"}, "must be a number"),
        ({"peak_rps": 10.0}, "current rate"),
        ({"now_rps": 100.0, "peak_rps": 50.0}, "peak (50 rps) is below the current rate"),
        ({"now_rps": 1.0, "in_12_months_rps": 9.0, "in_24_months_rps": 4.0}, "inconsistent"),
        ({"now_rps": 0.0}, "nothing to plan"),
        ({"now_rps": 1.0, "tomorrow": 3.0}, "unknown growth"),
    ],
)
def test_bad_growth_figures_are_refused_with_the_figure(values, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_growth(values)


def test_good_growth() -> None:
    growth = check_growth(Growth(now_rps=10, peak_rps=30, in_12_months_rps=20))
    assert growth.peak_rps == 30 and growth.in_24_months_rps is None


# -- scaling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rates", "kind"),
    [
        ({1: 100, 2: 198, 4: 390}, "linear"),
        ({1: 100, 2: 160, 4: 210}, "sub-linear"),
        ({1: 100, 2: 102, 4: 101}, "flat"),
        ({1: 100, 2: 180, 4: 120}, "retrograde"),
        ({1: 100}, "unknown"),
    ],
)
def test_scaling_kinds(rates, kind) -> None:
    found = scaling(points(rates))
    assert found.kind == kind, found.sentence
    assert found.sentence.startswith(kind) or kind == "unknown"


def test_usl_fit_recovers_contention_and_coherency() -> None:
    sigma, kappa = 0.08, 0.01
    levels = np.array([1, 2, 4, 8, 16])
    rates = 100 * levels / (1 + sigma * (levels - 1) + kappa * levels * (levels - 1))
    fit = fit_usl(levels.astype(float), rates)
    assert fit is not None
    assert fit["sigma"] == pytest.approx(sigma, abs=1e-6)
    assert fit["kappa"] == pytest.approx(kappa, abs=1e-6)
    assert fit["peak_concurrency"] == pytest.approx(math.sqrt((1 - sigma) / kappa))


# -- the queue model ------------------------------------------------------------------------


def test_single_worker_simulation_matches_mm1() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    service = rng.exponential(10.0, n)  # mu = 100/s
    gaps = rng.exponential(1 / 50.0, n)  # lambda = 50/s: latency ~ Exp(50/s)
    figures = simulate_quantiles(gaps, service, 1)
    assert figures["p50"] == pytest.approx(1000 * math.log(2) / 50, rel=0.05)
    assert figures["p99"] == pytest.approx(1000 * math.log(100) / 50, rel=0.07)


def test_two_worker_simulation_matches_erlang_c() -> None:
    rng = np.random.default_rng(1)
    n = 200_000
    mu, lam, c = 100.0, 160.0, 2  # per-worker service rate, arrival rate: rho = 0.8
    service = rng.exponential(1000 / mu, n)
    gaps = rng.exponential(1 / lam, n)
    latency = simulate_latencies(gaps, service, c)[n // 10 :]
    a = lam / mu
    rho = a / c
    tail = a**c / math.factorial(c) / (1 - rho)
    p0 = 1 / (sum(a**k / math.factorial(k) for k in range(c)) + tail)
    erlang_c = tail * p0  # P(wait > 0)
    mean_latency_ms = (erlang_c / (c * mu - lam) + 1 / mu) * 1000
    assert latency.mean() == pytest.approx(mean_latency_ms, rel=0.05)
    assert np.mean(latency > service[n // 10 :] + 1e-9) == pytest.approx(erlang_c, abs=0.02)


def test_capacity_meets_the_bound_and_tighter_bounds_give_less() -> None:
    service = np.random.default_rng(2).gamma(4.0, 2.5, 400)  # mean 10 ms
    prof = profile(service, {1: 100.0, 2: 190.0, 4: 300.0})
    loose = cap.instance_capacity(prof, Requirements(p99_ms=80), requests=8000)
    tight = cap.instance_capacity(prof, Requirements(p99_ms=30), requests=8000)
    assert 0 < tight.rps < loose.rps <= 0.95 * 300.0
    assert loose.predicted_ms["p99"] <= 80 + 1e-9
    assert tight.predicted_ms["p99"] <= 30 + 1e-9
    assert loose.workers in (1, 2, 4)
    assert {p["workers"] for p in loose.per_level} == {1, 2, 4}
    assert "M/G/" in loose.method
    assert loose.scaling.kind == "sub-linear"


def test_without_a_bound_capacity_is_a_share_of_the_best_throughput() -> None:
    prof = profile(np.full(100, 10.0), {1: 100.0, 2: 150.0})
    found = cap.instance_capacity(prof, Requirements(), max_utilization=0.7)
    assert found.rps == pytest.approx(0.7 * 150.0)
    assert found.workers == 2 and "no latency bound" in found.method


def test_a_bound_below_the_service_time_is_infeasible() -> None:
    prof = profile(np.full(100, 10.0), {1: 100.0})
    found = cap.instance_capacity(prof, Requirements(p99_ms=5))
    assert not found.feasible and found.rps == 0
    assert any("no rate meets" in note for note in found.notes)
    result = cap.plan(Growth(now_rps=10), {"before": found})
    assert not result.feasible and result.horizons[0].instances["before"] is None


def test_a_profile_without_timings_is_refused() -> None:
    empty = profile(np.full(3, 1.0)).evolve(stage_ms=())
    with pytest.raises(ConfigError, match="no per-input timings"):
        cap.instance_capacity(empty, Requirements())


# -- the plan -------------------------------------------------------------------------------


def _capacity(rps: float, label: str) -> cap.InstanceCapacity:
    return cap.InstanceCapacity(
        label=label,
        pipeline="svc",
        rps=rps,
        workers=1,
        method="given",
        predicted_ms={},
        utilization=0.5,
        bounds_ms={},
        scaling=scaling([]),
        machine="test cpu",
    )


def test_plan_instances_costs_and_peaks() -> None:
    growth = Growth(now_rps=100, peak_rps=250, in_12_months_rps=200, in_24_months_rps=400)
    result = cap.plan(
        growth,
        {"before": _capacity(30, "before"), "after": _capacity(90, "after")},
        cost_per_hour=0.5,
        spare=1,
    )
    rows = {h.name: h for h in result.horizons}
    assert list(rows) == [
        "now",
        "peak",
        "12 months",
        "12 months at peak",
        "24 months",
        "24 months at peak",
    ]
    assert rows["now"].instances == {"before": 5, "after": 3}  # ceil(100/30)+1, ceil(100/90)+1
    assert rows["24 months at peak"].rps == pytest.approx(1000.0)
    assert rows["24 months at peak"].derived
    assert rows["24 months at peak"].instances == {"before": 35, "after": 13}
    assert rows["now"].monthly_cost["before"] == pytest.approx(5 * 0.5 * 730)
    assert rows["now"].per_1000["after"] == pytest.approx(3 * 0.5 * 730 / (100 * 730 * 3600 / 1000))
    assert any("2.50x" in a for a in result.assumptions)
    assert result.to_dict()["horizons"][0]["instances"]["before"] == 5


def test_plan_without_cost_gives_instances_only() -> None:
    result = cap.plan(Growth(now_rps=10), {"before": _capacity(4, "before")})
    (now,) = result.horizons
    assert now.instances == {"before": 3} and now.monthly_cost == {"before": None}
    assert any("no cost_per_hour" in a for a in result.assumptions)
