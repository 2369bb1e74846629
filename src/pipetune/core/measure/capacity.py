"""Capacity planning: instances and monthly cost for the traffic now, at peak and in 12 and 24
months, before and after optimization (``pipetune capacity``).

Inputs:

* the requirements' **growth** figures (:class:`~pipetune.core.kernel.model.Growth`: requests per
  second now, at peak, in 12 and in 24 months), ``cost_per_hour`` and the latency bounds;
* a **profile** per side (before / after) with its per-input service times
  (``Profile.stage_ms``) and its closed-loop concurrency sweep (``Profile.concurrency``).

**Throughput per instance at the latency requirement.** A closed-loop sweep measures how
much an instance can do flat out; users arrive open-loop, and a latency bound is met only
below saturation. For each swept concurrency ``c`` (workers per instance) the instance is
modelled as an M/G/c queue: Poisson arrivals, ``c`` FCFS workers, service times drawn from
the profile's measured per-input service times rescaled to the mean the sweep measured at
``c`` (``c / throughput(c)``: contention between workers makes each request slower). The
capacity at ``c`` is the highest arrival rate whose simulated P50/P95/P99 (and P99.9 for a
``max_ms`` bound) stay within every latency bound, found by bisection with common random
numbers (the latency quantiles then rise monotonically with the rate), capped at 95 % of the
sweep's throughput. The instance's capacity is the best ``c`` (the knee, usually). Without
a latency bound it is ``max_utilization`` (default 80 %) of the best swept throughput.
``pipetune capacity TARGET`` also *measures* it: an online run at that rate with ``c``
workers, stepping the rate down 15 % until the measured percentiles hold.

**Scaling** within an instance comes from the sweep: efficiency
``E(c) = X(c) / (c * X(1))``; *linear* when E stays >= 0.9 at the highest level, *sub-linear*
when throughput still rises by >= 10 % over the lowest level, *flat* when it does not,
*retrograde* when it falls by > 10 % after its peak. With three or more levels the Universal
Scalability Law ``X(c) = X(1) c / (1 + sigma (c - 1) + kappa c (c - 1))`` is fitted
(contention ``sigma``, coherency ``kappa``; the peak is at ``sqrt((1 - sigma) / kappa)``).
Across instances scaling is taken as linear (independent instances behind a load balancer).

**Instances and cost.** For each horizon, ``ceil(rps / capacity)`` instances (at least 1),
and ``instances * cost_per_hour * 730`` per month (a fleet sized for that rate all month).
When ``now`` and ``peak`` are both known, the 12- and 24-month figures are also shown at
peak, assuming today's peak-to-typical ratio holds. Every assumption is listed with the plan.

Where each part lives: the growth figures are checked in :mod:`.growth`, scaling within
an instance in :mod:`.instance_scaling`, the queue model in :mod:`.queue_simulation`, the
online check in :mod:`.capacity_online`; this module turns them into an instance's
capacity and the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Growth, Requirements
from pipetune.core.kernel.results import ConcurrencyPoint, Profile
from pipetune.core.measure.growth import check_growth
from pipetune.core.measure.instance_scaling import Scaling, scaling
from pipetune.core.measure.queue_simulation import (
    BOUND_QUANTILES,
    SIM_REQUESTS,
    latency_quantiles,
    max_rate,
    simulate_quantiles,
)

HOURS_PER_MONTH = 730.0  # 8,760 hours a year / 12
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0
#: Never plan an instance above this share of its swept throughput (a queue at 100 %
#: grows without bound; a finite simulation near it looks better than reality).
MAX_STABLE = 0.95


# -- one instance's capacity ----------------------------------------------------------------


@dataclass(frozen=True)
class InstanceCapacity:
    """Sustainable requests per second of one instance at the latency requirement."""

    label: str
    pipeline: str
    rps: float
    workers: int
    method: str
    predicted_ms: Mapping[str, float]
    utilization: float
    bounds_ms: Mapping[str, float]
    scaling: Scaling
    per_level: tuple[Mapping[str, float], ...] = ()
    measured: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()
    machine: str = ""

    @property
    def feasible(self) -> bool:
        return self.rps > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "pipeline": self.pipeline,
            "rps": self.rps,
            "workers": self.workers,
            "method": self.method,
            "predicted_ms": dict(self.predicted_ms),
            "utilization": self.utilization,
            "bounds_ms": dict(self.bounds_ms),
            "scaling": self.scaling.to_dict(),
            "per_level": [dict(p) for p in self.per_level],
            "measured": None if self.measured is None else dict(self.measured),
            "notes": list(self.notes),
            "machine": self.machine,
        }


def latency_bounds(requirements: Requirements) -> dict[str, float]:
    return {
        metric: float(getattr(requirements, f"{metric}_ms"))
        for metric in BOUND_QUANTILES
        if getattr(requirements, f"{metric}_ms") is not None
    }


def service_times_ms(profile: Profile) -> np.ndarray:
    """Per-input service time (each ``stage_ms`` row summed), in milliseconds."""
    rows = np.asarray(profile.stage_ms, dtype=float)
    if rows.size == 0:
        raise ConfigError(
            f"the profile of {profile.pipeline!r} holds no per-input timings (stage_ms): "
            "capacity needs them; profile with a current pipetune"
        )
    service = rows.sum(axis=1)
    service = service[np.isfinite(service) & (service > 0)]
    if service.size == 0:
        raise ConfigError(f"the profile of {profile.pipeline!r} has no positive service times")
    return service


def sweep_points(profile: Profile, service_ms: np.ndarray) -> list[ConcurrencyPoint]:
    points = [p for p in profile.concurrency if p.throughput_rps > 0]
    if points:
        return sorted(points, key=lambda p: p.concurrency)
    # No sweep: one worker, at the rate its service times allow.
    return [ConcurrencyPoint(1, 1000.0 / float(service_ms.mean()), 0.0, 0.0)]


def instance_capacity(
    profile: Profile,
    requirements: Requirements,
    *,
    label: str = "",
    max_utilization: float = 0.8,
    requests: int = SIM_REQUESTS,
    seed: int = 0,
) -> InstanceCapacity:
    """The capacity of one instance from a profile (see the module docstring)."""
    if not 0 < max_utilization <= MAX_STABLE:
        raise ConfigError(f"max_utilization must be in (0, {MAX_STABLE}]")
    service = service_times_ms(profile)
    points = sweep_points(profile, service)
    bounds = latency_bounds(requirements)
    notes: list[str] = []
    if profile.mode != "offline":
        notes.append(
            f"the profile was measured {profile.mode}: its service times exclude queueing, "
            "and its sweep is closed-loop as always"
        )
    rng = np.random.default_rng(seed)
    unit_gaps = rng.exponential(1.0, size=requests)
    picks = rng.integers(0, service.size, size=requests)
    base = service[picks] / service.mean()  # service shape, mean 1
    per_level, (rate, workers, predicted) = _per_level(
        points, base, unit_gaps, bounds, max_utilization
    )
    swept = next(p.throughput_rps for p in points if p.concurrency == workers)
    if bounds:
        method = (
            f"M/G/{workers} queue simulation from {service.size} measured service times "
            f"(Poisson arrivals), highest rate within {bounds_text(bounds)}"
        )
        if rate <= 0:
            floor = latency_quantiles(
                base * 1000.0 * points[0].concurrency / points[0].throughput_rps
            )
            notes.append(
                f"no rate meets {bounds_text(bounds)}: the service time alone is "
                f"P50 {floor['p50']:.1f} / P99 {floor['p99']:.1f} ms. Optimize the pipeline "
                "or relax the bound"
            )
    else:
        method = (
            f"no latency bound: {max_utilization:.0%} of the best swept throughput "
            f"({swept:.1f} req/s at {workers} workers)"
        )
    if len(points) == 1:
        notes.append("one concurrency level measured: workers per instance were not explored")
    return InstanceCapacity(
        label=label,
        pipeline=profile.pipeline,
        rps=float(rate),
        workers=int(workers),
        method=method,
        predicted_ms=predicted,
        utilization=float(rate / swept) if swept else 0.0,
        bounds_ms=bounds,
        scaling=scaling(points),
        per_level=tuple(per_level),
        notes=tuple(notes),
        machine=f"{profile.machine.cpu} ({profile.machine.cores} cores)",
    )


def _per_level(
    points: list[ConcurrencyPoint],
    base: np.ndarray,
    unit_gaps: np.ndarray,
    bounds: Mapping[str, float],
    max_utilization: float,
) -> tuple[list[dict[str, float]], tuple[float, int, dict[str, float]]]:
    """Each swept level's capacity and predicted latency, and the best level's (rate,
    workers, predicted latency). ``base`` is the service-time shape (mean 1), rescaled to
    each level's measured mean."""
    per_level = []
    best: tuple[float, int, dict[str, float]] | None = None
    for point in points:
        mean_ms = 1000.0 * point.concurrency / point.throughput_rps
        draws = base * mean_ms
        ceiling = MAX_STABLE * point.throughput_rps
        if bounds:
            rate = max_rate(unit_gaps, draws, point.concurrency, bounds, ceiling)
        else:
            rate = max_utilization * point.throughput_rps
        predicted = (
            simulate_quantiles(unit_gaps / rate, draws, point.concurrency)
            if rate > 0
            else latency_quantiles(draws)
        )
        per_level.append(
            {
                "workers": point.concurrency,
                "swept_rps": point.throughput_rps,
                "capacity_rps": rate,
                **{f"{k}_ms": v for k, v in predicted.items()},
            }
        )
        if best is None or rate > best[0] * 1.0001:
            best = (rate, point.concurrency, predicted)
    assert best is not None
    return per_level, best


def bounds_text(bounds: Mapping[str, float]) -> str:
    """The latency bounds in words (``P99 <= 80 ms, ...``)."""
    return ", ".join(f"{k.upper()} <= {v:g} ms" for k, v in bounds.items())


# -- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Horizon:
    name: str
    rps: float
    instances: Mapping[str, int | None]
    monthly_cost: Mapping[str, float | None]
    per_1000: Mapping[str, float | None]
    derived: bool = False  # a peak projected from today's peak-to-typical ratio

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CapacityPlan:
    growth: Growth
    sides: Mapping[str, InstanceCapacity]
    horizons: tuple[Horizon, ...]
    cost_per_hour: float | None
    assumptions: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def feasible(self) -> bool:
        return all(side.feasible for side in self.sides.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "growth": asdict(self.growth),
            "cost_per_hour": self.cost_per_hour,
            "sides": {name: side.to_dict() for name, side in self.sides.items()},
            "horizons": [h.to_dict() for h in self.horizons],
            "assumptions": list(self.assumptions),
            "notes": list(self.notes),
            "feasible": self.feasible,
        }


def plan(
    growth: Growth,
    sides: Mapping[str, InstanceCapacity],
    *,
    cost_per_hour: float | None = None,
    spare: int = 0,
) -> CapacityPlan:
    """Instances and monthly cost per horizon for each side ("before", "after")."""
    growth = check_growth(growth)
    if spare < 0:
        raise ConfigError("spare instances must be >= 0")
    rows, ratio = _horizon_rows(growth)
    horizons = [
        _horizon(name, rps, derived, sides, cost_per_hour, spare) for name, rps, derived in rows
    ]
    notes = tuple(note for side in sides.values() for note in side.notes)
    return CapacityPlan(
        growth,
        dict(sides),
        tuple(horizons),
        cost_per_hour,
        tuple(_assumptions(sides, cost_per_hour, spare, ratio)),
        tuple(dict.fromkeys(notes)),
    )


def _horizon_rows(growth: Growth) -> tuple[list[tuple[str, float, bool]], float | None]:
    """The plan's rows (name, rate, derived from today's peak-to-typical ratio), and that
    ratio when ``now`` and ``peak`` are both known."""
    rows: list[tuple[str, float, bool]] = [("now", growth.now_rps, False)]
    if growth.peak_rps is not None:
        rows.append(("peak", growth.peak_rps, False))
    ratio = (
        growth.peak_rps / growth.now_rps
        if growth.peak_rps is not None and growth.now_rps > 0
        else None
    )
    for name, value in (
        ("12 months", growth.in_12_months_rps),
        ("24 months", growth.in_24_months_rps),
    ):
        if value is None:
            continue
        rows.append((name, value, False))
        if ratio is not None and ratio > 1:
            rows.append((f"{name} at peak", value * ratio, True))
    return rows, ratio


def _horizon(
    name: str,
    rps: float,
    derived: bool,
    sides: Mapping[str, InstanceCapacity],
    cost_per_hour: float | None,
    spare: int,
) -> Horizon:
    """One row of the plan: instances, monthly cost and cost per 1,000 requests per side."""
    instances: dict[str, int | None] = {}
    monthly: dict[str, float | None] = {}
    per_1000: dict[str, float | None] = {}
    for side, capacity in sides.items():
        count = needed(rps, capacity.rps, spare)
        instances[side] = count
        cost = (
            count * cost_per_hour * HOURS_PER_MONTH if count is not None and cost_per_hour else None
        )
        monthly[side] = cost
        per_1000[side] = (
            cost / (rps * SECONDS_PER_MONTH / 1000.0) if cost is not None and rps > 0 else None
        )
    return Horizon(name, float(rps), instances, monthly, per_1000, derived)


def _assumptions(
    sides: Mapping[str, InstanceCapacity],
    cost_per_hour: float | None,
    spare: int,
    ratio: float | None,
) -> list[str]:
    """Every assumption behind the plan, in sentences."""
    assumptions = [
        "per-instance capacity: " + "; ".join(f"{k}: {v.method}" for k, v in sides.items()),
        "instances = ceil(rate / per-instance capacity)"
        + (f" + {spare} spare" if spare else "")
        + ", at least 1; instances scale linearly (independent instances behind a load "
        "balancer, no shared bottleneck such as a database)",
        "each instance is the machine the profile ran on ("
        + "; ".join(sorted({s.machine or "unknown" for s in sides.values()}))
        + "); capacity on other hardware differs",
    ]
    if cost_per_hour:
        assumptions.append(
            f"monthly cost = instances x {cost_per_hour:g}/hour x {HOURS_PER_MONTH:g} hours: a "
            "fleet sized for that row's rate all month (no autoscaling)"
        )
    else:
        assumptions.append("no cost_per_hour given (--cost-per-hour): instances only")
    if ratio is not None and ratio > 1:
        assumptions.append(
            f"12/24-month rates are typical rates; their peaks assume today's peak-to-typical "
            f"ratio ({ratio:.2f}x) holds"
        )
    assumptions.append(
        "service times at higher concurrency are today's, scaled by the sweep's measured "
        "slowdown; traffic is Poisson (a burstier trace needs more headroom)"
    )
    return assumptions


def needed(rps: float, capacity: float, spare: int = 0) -> int | None:
    """Instances for ``rps`` at ``capacity`` each; ``None`` when one instance cannot meet
    the requirement at any rate."""
    if capacity <= 0:
        return None
    if rps <= 0:
        return 1 + spare
    return max(1, math.ceil(rps / capacity - 1e-9)) + spare
