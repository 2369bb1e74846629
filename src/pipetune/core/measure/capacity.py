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
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Growth, Requirements
from pipetune.core.kernel.results import ConcurrencyPoint, Profile

HOURS_PER_MONTH = 730.0  # 8,760 hours a year / 12
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0
#: Never plan an instance above this share of its swept throughput (a queue at 100 %
#: grows without bound; a finite simulation near it looks better than reality).
MAX_STABLE = 0.95
#: Simulated requests per evaluation (the first 10 % are warm-up).
SIM_REQUESTS = 20_000
#: The quantile a ``max_ms`` bound is checked at (a simulated maximum is one draw).
MAX_AS_QUANTILE = 0.999
BOUND_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99, "max": MAX_AS_QUANTILE}


# -- growth ---------------------------------------------------------------------------------

GROWTH_FIELDS = (
    ("now_rps", "now"),
    ("peak_rps", "at peak"),
    ("in_12_months_rps", "in 12 months"),
    ("in_24_months_rps", "in 24 months"),
)


def check_growth(values: Mapping[str, Any] | Growth | None) -> Growth:
    """Growth figures, refused with a message naming the figure when negative, not a
    number, or inconsistent (peak below now, 24 months below 12 months, nothing given)."""
    if values is None:
        raise ConfigError(
            "no growth figures: give --now-rps (and --peak-rps, --in-12-months-rps, "
            "--in-24-months-rps) or set growth in the requirements "
            "([tool.pipetune.requirements.growth] or Requirements(growth=...))"
        )
    data = asdict(values) if isinstance(values, Growth) else dict(values)
    unknown = sorted(set(data) - {name for name, _ in GROWTH_FIELDS})
    if unknown:
        raise ConfigError(f"unknown growth figure(s): {', '.join(unknown)}")
    for name, label in GROWTH_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"growth: the rate {label} must be a number, not {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(
                f"growth: the rate {label} is {value:g} requests/s; growth figures must be "
                "finite and >= 0"
            )
    if data.get("now_rps") is None:
        raise ConfigError("growth: the current rate (now_rps, --now-rps) is required")
    now, peak = data["now_rps"], data.get("peak_rps")
    in12, in24 = data.get("in_12_months_rps"), data.get("in_24_months_rps")
    if peak is not None and peak < now:
        raise ConfigError(
            f"growth figures are inconsistent: the peak ({peak:g} rps) is below the current "
            f"rate ({now:g} rps); the peak is the busiest rate today"
        )
    if in12 is not None and in24 is not None and in24 < in12:
        raise ConfigError(
            f"growth figures are inconsistent: {in24:g} rps in 24 months is below {in12:g} rps "
            "in 12 months; plan a shrinking service one horizon at a time (give only "
            "--in-12-months-rps or only --in-24-months-rps)"
        )
    if not any(data.get(name) for name, _ in GROWTH_FIELDS):
        raise ConfigError("growth: every rate is 0 requests/s; there is nothing to plan for")
    fields: dict[str, Any] = {name: data.get(name) for name, _ in GROWTH_FIELDS}
    return Growth(**fields)


# -- scaling within an instance -------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """How throughput scales with concurrency inside one instance (from the sweep)."""

    kind: str  # linear, sub-linear, flat, retrograde, unknown
    levels: tuple[int, ...]
    throughput_rps: tuple[float, ...]
    efficiency: tuple[float, ...]
    usl: Mapping[str, float] | None
    sentence: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usl"] = dict(self.usl) if self.usl else None
        return data


def scaling(points: Sequence[ConcurrencyPoint]) -> Scaling:
    ordered = sorted((p for p in points if p.throughput_rps > 0), key=lambda p: p.concurrency)
    if len(ordered) < 2:
        return Scaling(
            "unknown",
            tuple(p.concurrency for p in ordered),
            tuple(p.throughput_rps for p in ordered),
            (),
            None,
            "only one concurrency level was measured: scaling is unknown (profile with "
            "workload.concurrency = (1, 2, 4, ...))",
        )
    levels = np.array([p.concurrency for p in ordered], dtype=float)
    rates = np.array([p.throughput_rps for p in ordered], dtype=float)
    per_worker = rates[0] / levels[0]  # X(1), or the lowest level's per-worker rate
    efficiency = rates / (levels * per_worker)
    best = int(np.argmax(rates))
    usl = fit_usl(levels, rates) if len(ordered) >= 3 else None
    top, low = rates[-1], rates[0]
    if best < len(rates) - 1 and top < 0.9 * rates[best]:
        kind = "retrograde"
        sentence = (
            f"retrograde: throughput peaks at concurrency {int(levels[best])} "
            f"({rates[best]:.1f} req/s) and falls to {top:.1f} req/s at {int(levels[-1])}: "
            "more concurrency makes the instance slower (contention, thrashing)"
        )
    elif efficiency[-1] >= 0.9:
        kind = "linear"
        sentence = (
            f"linear: {int(levels[-1])} workers give {top:.1f} req/s, "
            f"{efficiency[-1]:.0%} of {int(levels[-1] / levels[0])}x the lowest level"
        )
    elif rates[best] >= 1.1 * low:
        kind = "sub-linear"
        sentence = (
            f"sub-linear: from {int(levels[0])} to {int(levels[best])} workers throughput "
            f"goes {low:.1f} -> {rates[best]:.1f} req/s ({rates[best] / low:.2f}x for "
            f"{levels[best] / levels[0]:.0f}x the workers; efficiency "
            f"{efficiency[best]:.0%})"
        )
    else:
        kind = "flat"
        sentence = (
            f"flat: {int(levels[-1])} workers give {top:.1f} req/s against {low:.1f} with "
            f"{int(levels[0])}: the instance is saturated by one worker (the GIL, one busy "
            "core, a lock); scale out with instances or processes, not threads"
        )
    if usl:
        sentence += (
            f"; USL fit: contention sigma={usl['sigma']:.3f}, coherency kappa={usl['kappa']:.4f}"
            + (
                f", peak near concurrency {usl['peak_concurrency']:.0f}"
                if math.isfinite(usl["peak_concurrency"])
                else ""
            )
        )
    return Scaling(
        kind,
        tuple(int(c) for c in levels),
        tuple(float(r) for r in rates),
        tuple(float(e) for e in efficiency),
        usl,
        sentence,
    )


def fit_usl(levels: np.ndarray, rates: np.ndarray) -> dict[str, float] | None:
    """Least-squares Universal Scalability Law fit (sigma, kappa >= 0), from the linearized
    form ``c X(1) / X(c) - 1 = sigma (c - 1) + kappa c (c - 1)``, with ``X(1)`` taken from
    the lowest level (per worker)."""
    x1 = rates[0] / levels[0]
    y = levels * x1 / rates - 1.0
    design = np.column_stack([levels - 1.0, levels * (levels - 1.0)])
    try:
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    except np.linalg.LinAlgError:
        return None
    sigma, kappa = (max(0.0, float(v)) for v in coef)
    if sigma == 0.0 and kappa == 0.0 and coef[0] < 0:
        sigma = 0.0  # better than linear (caches warming up): report linear
    peak = math.sqrt((1 - sigma) / kappa) if kappa > 0 and sigma < 1 else math.inf
    return {"sigma": sigma, "kappa": kappa, "peak_concurrency": peak}


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
    per_level = []
    best: tuple[float, int, dict[str, float]] | None = None
    for point in points:
        mean_ms = 1000.0 * point.concurrency / point.throughput_rps
        draws = base * mean_ms
        ceiling = MAX_STABLE * point.throughput_rps
        if bounds:
            rate = _max_rate(unit_gaps, draws, point.concurrency, bounds, ceiling)
        else:
            rate = max_utilization * point.throughput_rps
        predicted = (
            _simulate(unit_gaps / rate, draws, point.concurrency) if rate > 0 else _service(draws)
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
    rate, workers, predicted = best
    swept = next(p.throughput_rps for p in points if p.concurrency == workers)
    if bounds:
        method = (
            f"M/G/{workers} queue simulation from {service.size} measured service times "
            f"(Poisson arrivals), highest rate within {_bounds_text(bounds)}"
        )
        if rate <= 0:
            floor = _service(base * 1000.0 * points[0].concurrency / points[0].throughput_rps)
            notes.append(
                f"no rate meets {_bounds_text(bounds)}: the service time alone is "
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


def _bounds_text(bounds: Mapping[str, float]) -> str:
    return ", ".join(f"{k.upper()} <= {v:g} ms" for k, v in bounds.items())


def _max_rate(
    unit_gaps: np.ndarray,
    service_ms: np.ndarray,
    workers: int,
    bounds: Mapping[str, float],
    ceiling: float,
) -> float:
    """The highest rate in (0, ceiling] whose simulated quantiles meet every bound; 0 when
    none does. Common random numbers: the same unit gaps and service draws at every rate."""

    def ok(rate: float) -> bool:
        figures = _simulate(unit_gaps / rate, service_ms, workers)
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


def _simulate(gaps_s: np.ndarray, service_ms: np.ndarray, workers: int) -> dict[str, float]:
    """Latency quantiles (ms) of an FCFS queue with ``workers`` servers, after a warm-up
    of the first 10 % of requests."""
    latency = simulate_latencies(gaps_s, service_ms, workers)
    return _quantiles(latency[len(latency) // 10 :])


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


def _service(service_ms: np.ndarray) -> dict[str, float]:
    return _quantiles(service_ms)


def _quantiles(values: np.ndarray) -> dict[str, float]:
    qs = np.quantile(values, list(BOUND_QUANTILES.values()))
    return {k: float(v) for k, v in zip(BOUND_QUANTILES, qs, strict=True)}


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
    horizons = []
    for name, rps, derived in rows:
        instances: dict[str, int | None] = {}
        monthly: dict[str, float | None] = {}
        per_1000: dict[str, float | None] = {}
        for side, capacity in sides.items():
            count = needed(rps, capacity.rps, spare)
            instances[side] = count
            cost = (
                count * cost_per_hour * HOURS_PER_MONTH
                if count is not None and cost_per_hour
                else None
            )
            monthly[side] = cost
            per_1000[side] = (
                cost / (rps * SECONDS_PER_MONTH / 1000.0) if cost is not None and rps > 0 else None
            )
        horizons.append(Horizon(name, float(rps), instances, monthly, per_1000, derived))
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
    notes = tuple(note for side in sides.values() for note in side.notes)
    return CapacityPlan(
        growth,
        dict(sides),
        tuple(horizons),
        cost_per_hour,
        tuple(assumptions),
        tuple(dict.fromkeys(notes)),
    )


def needed(rps: float, capacity: float, spare: int = 0) -> int | None:
    """Instances for ``rps`` at ``capacity`` each; ``None`` when one instance cannot meet
    the requirement at any rate."""
    if capacity <= 0:
        return None
    if rps <= 0:
        return 1 + spare
    return max(1, math.ceil(rps / capacity - 1e-9)) + spare


# -- measuring online -------------------------------------------------------------------------


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
    from dataclasses import replace

    from pipetune.core.kernel import control
    from pipetune.core.runtime.online import run_online

    if capacity.rps <= 0:
        return capacity
    bounds = capacity.bounds_ms
    rate = capacity.rps
    attempts: list[dict[str, Any]] = []
    held = False
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
        latency = np.asarray(result.latency_s)[result.ok_mask] * 1000.0
        figures = _quantiles(latency) if latency.size else dict.fromkeys(BOUND_QUANTILES, math.inf)
        online = result.online
        overloaded = bool(online.overloaded) if online is not None else False
        held = not overloaded and all(figures[k] <= b for k, b in bounds.items())
        attempts.append(
            {
                "rate_rps": rate,
                "requests": requests,
                "latency_ms": figures,
                "completed_rps": online.completed_rps if online is not None else None,
                "overloaded": overloaded,
                "held": held,
            }
        )
        if held:
            break
        rate *= step
    last = attempts[-1]
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
            + (_bounds_text(bounds) if bounds else "without overload")
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
