"""What an online run offered, achieved, and whether it kept up: :class:`OnlineStats`.

:func:`analyse` turns an online run's result and its submit times into rates (offered,
scheduled, submitted, completed), queue wait, service time, the deepest queue, worker
utilization and the overload verdict (a saturated worker or a queue wait that grows through
the run), for ``RunResult.online``. It only reads what the run recorded; serving the run is
:mod:`.online`'s job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.result import RunResult

#: Fewer requests than this and the run is too short to judge whether the queue grows.
MIN_REQUESTS_FOR_VERDICT = 30
#: Utilization at or above this means the workers never caught up.
SATURATED = 0.97


@dataclass(frozen=True)
class OnlineStats:
    """What an online run offered, achieved, and whether it kept up.

    Rates are requests per second: ``offered_rps`` is the rate asked for (``rate=``, or
    the trace's mean rate); ``scheduled_rps`` the generated schedule's own rate (a finite
    Poisson draw varies around the offered rate); ``submitted_rps`` the rate at which
    requests actually entered the queue (the load generator's accuracy, with ``lag_ms``:
    submit time minus scheduled time); ``completed_rps`` completions per second from the
    first arrival to the last completion.
    """

    source: str  # "poisson" or "trace"
    requests: int
    offered_rps: float
    scheduled_rps: float
    submitted_rps: float
    completed_rps: float
    lag_ms: dict[str, float]
    queue_ms: dict[str, float]
    service_ms: dict[str, float]
    max_queue_depth: int
    utilization: float
    workers: int
    max_batch: int
    max_wait_ms: float
    mean_batch: float
    overloaded: bool
    verdict: str
    queue_growth_ms: tuple[float, float] | None = None  # median wait, first vs last third

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["queue_growth_ms"] = list(self.queue_growth_ms) if self.queue_growth_ms else None
        return data


def analyse(
    result: RunResult,
    submit: np.ndarray,
    *,
    source: str,
    offered_rps: float,
    max_batch: int,
    max_wait_ms: float,
    attempted: np.ndarray,
) -> OnlineStats:
    """Rates, queue wait and the overload verdict of an online run.

    Overloaded means the workers did not keep up: either they were busy
    :data:`SATURATED` of the time or more, or the median queue wait of the last third of
    requests (by arrival) exceeds the first third's by more than two mean service times
    (and 5 ms) and has at least doubled: a queue that grows through the run.
    """
    assert result.arrival_s is not None and result.start_s is not None
    assert result.done_s is not None
    arrival = result.arrival_s
    n = len(arrival)
    served = attempted
    done = result.done_s[served]
    wait = (result.start_s - arrival)[served]
    service = (result.done_s - result.start_s)[served]
    span = float(done.max() - arrival[0]) if done.size else 0.0
    completed = int(np.sum(result.ok_mask))
    scheduled, submitted = _schedule_rates(arrival, submit)
    lag = (submit - arrival)[~np.isnan(submit)]
    max_depth = _max_queue_depth(arrival, np.where(served, result.start_s, np.inf))
    utilization = result.busy_s / (result.workers * span) if span > 0 else 0.0
    growth, growing = _queue_growth(wait, service, arrival[served])
    judged = n >= MIN_REQUESTS_FOR_VERDICT
    overloaded = judged and (growing or utilization >= SATURATED)
    completed_rps = completed / span if span > 0 else 0.0
    verdict = _verdict(
        overloaded=overloaded,
        judged=judged,
        n=n,
        offered=offered_rps,
        completed_rps=completed_rps,
        utilization=utilization,
        growth=growth,
        wait_ms=percentiles_ms(wait)["p50"],
    )
    return OnlineStats(
        source=source,
        requests=n,
        offered_rps=offered_rps,
        scheduled_rps=scheduled,
        submitted_rps=submitted,
        completed_rps=completed_rps,
        lag_ms=percentiles_ms(lag),
        queue_ms=percentiles_ms(wait),
        service_ms=percentiles_ms(service),
        max_queue_depth=max_depth,
        utilization=float(utilization),
        workers=result.workers,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        mean_batch=float(np.mean(result.batch_sizes)) if result.batch_sizes else 1.0,
        overloaded=bool(overloaded),
        verdict=verdict,
        queue_growth_ms=growth,
    )


def _schedule_rates(arrival: np.ndarray, submit: np.ndarray) -> tuple[float, float]:
    """The schedule's own rate and the rate requests entered the queue (the generator's)."""
    n = len(arrival)
    scheduled = (n - 1) / float(arrival[-1] - arrival[0]) if n > 1 and arrival[-1] > 0 else 0.0
    sent = submit[~np.isnan(submit)]
    submitted = (len(sent) - 1) / float(sent[-1] - sent[0]) if len(sent) > 1 else 0.0
    submitted = submitted if sent.size < 2 or sent[-1] > sent[0] else 0.0
    return scheduled, submitted


def _max_queue_depth(arrival: np.ndarray, start: np.ndarray) -> int:
    """The deepest queue an arriving request found: earlier arrivals not yet started."""
    n = len(arrival)
    starts_sorted = np.sort(start)
    depth = np.arange(n) - np.searchsorted(starts_sorted, arrival, side="right")
    return int(max(0, depth.max())) if n else 0


def _queue_growth(
    wait: np.ndarray, service: np.ndarray, arrival: np.ndarray
) -> tuple[tuple[float, float] | None, bool]:
    """Median queue wait (ms) of the first and last third by arrival, and whether it grew.

    Grew: the last third waits more than two mean service times (and 5 ms) longer than
    the first, and at least twice as long. ``(None, False)`` under 3 served requests.
    """
    if wait.size < 3:
        return None, False
    third = wait.size // 3
    order = np.argsort(arrival, kind="stable")
    first_third = float(np.median(wait[order[:third]]))
    last_third = float(np.median(wait[order[-third:]]))
    mean_service = float(service.mean()) if service.size else 0.0
    growing = (
        last_third > first_third + max(2 * mean_service, 0.005) and last_third > 2 * first_third
    )
    return (first_third * 1000.0, last_third * 1000.0), growing


def _verdict(
    *,
    overloaded: bool,
    judged: bool,
    n: int,
    offered: float,
    completed_rps: float,
    utilization: float,
    growth: tuple[float, float] | None,
    wait_ms: float,
) -> str:
    if not judged:
        return (
            f"only {n} requests: too few to tell a steady state from a growing queue "
            f"(needs {MIN_REQUESTS_FOR_VERDICT}+)"
        )
    if overloaded:
        grew = (
            f"; queue wait grew from {growth[0]:.1f} ms (first third) to {growth[1]:.1f} ms "
            "(last third)"
            if growth
            else ""
        )
        return (
            f"overloaded: offered {offered:.1f} req/s, served {completed_rps:.1f} req/s, "
            f"workers {utilization:.0%} busy{grew}. The latencies describe a growing backlog, "
            "not a steady state: lower the rate, add workers or batch"
        )
    return (
        f"keeps up: offered {offered:.1f} req/s, workers {utilization:.0%} busy, "
        f"median queue wait {wait_ms:.2f} ms"
    )
