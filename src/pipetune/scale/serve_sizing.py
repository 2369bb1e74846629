"""How big a Ray Serve deployment should be: from capacity's plan and the latency bound.

A replica is one worker process (``threads`` requests served at once, 1 by default: one CPU).
Its capacity comes from :func:`pipetune.core.measure.capacity.instance_capacity` on the
profile's single-worker service times: an M/G/1 simulation finds the highest Poisson rate
whose latency quantiles stay within the requirement (without a bound: 80 % of what one
worker does flat out). Then:

* **replicas**: with growth figures, autoscaling between what ``now`` needs and what the
  peak needs (``ceil(rate / replica capacity)``), capped by the cluster's CPUs; without
  them, one replica per CPU of the cluster.
* **max_ongoing_requests**: how many requests a replica may hold before Serve routes
  elsewhere or queues at the proxy. A request admitted behind ``q`` others waits about
  ``q`` mean service times, so ``q`` is what fits in the latency bound after the slowest
  service (P99); with batching at least one batch. Without a bound, Serve's default (5) or
  two batches.
* **batching**: the recipe's dynamic batching (``meta["serving"]``) becomes Serve's own
  ``@serve.batch`` with the same batch size and wait.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Growth, Requirements
from pipetune.core.runtime.serving import ServingOptions

SERVE_DEFAULT_ONGOING = 5


@dataclass(frozen=True)
class ServeSizing:
    replica_rps: float
    max_ongoing_requests: int
    num_replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    threads: int = 1
    batch_size: int = 1
    batch_wait_s: float = 0.0
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments for ``serve.deployment(...)`` / ``.options(...)``."""
        options: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": float(self.threads)},
        }
        if self.num_replicas is not None:
            options["num_replicas"] = self.num_replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": max(1, self.max_ongoing_requests // 2),
            }
        return options

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["reasons"] = list(self.reasons)
        data["deployment_options"] = self.deployment_options()
        return data

    def lines(self) -> list[str]:
        if self.num_replicas is not None:
            replicas = f"{self.num_replicas} replica(s)"
        else:
            replicas = f"{self.min_replicas}-{self.max_replicas} replicas (autoscaling)"
        batching = (
            f"; @serve.batch of {self.batch_size}, waiting up to {self.batch_wait_s * 1000:g} ms"
            if self.batch_size > 1
            else ""
        )
        out = [
            f"{replicas} x {self.threads} CPU, max_ongoing_requests={self.max_ongoing_requests}"
            f"{batching}; about {self.replica_rps:,.1f} requests/s per replica"
        ]
        out.extend(f"  - {reason}" for reason in self.reasons)
        return out


def size_serving(
    profile: Any,
    requirements: Requirements,
    *,
    cpus: float,
    serving: ServingOptions | None = None,
    growth: Growth | None = None,
    threads: int = 1,
    replicas: int | None = None,
    max_ongoing: int | None = None,
) -> ServeSizing:
    """The deployment's size (see the module docstring); ``replicas`` and ``max_ongoing``
    override what the plan would choose."""
    from pipetune.core.measure import capacity as cap

    serving = serving or ServingOptions()
    single = dataclasses.replace(
        profile, concurrency=tuple(p for p in profile.concurrency if p.concurrency == 1)
    )
    found = cap.instance_capacity(single, requirements, label="replica")
    service = cap.service_times_ms(profile)
    reasons = [f"per replica: {found.method}"]
    rate = found.rps
    if serving.batch_size > 1:  # profiled in batches: a row's time is its batch's
        rate = 0.8 * profile.throughput_rps
        reasons = [f"per replica: 80 % of the batched throughput ({profile.throughput_rps:.1f}/s)"]
    ongoing, why = _max_ongoing(service, requirements, serving.batch_size, threads)
    reasons.append(why)
    if max_ongoing is not None:
        ongoing = max_ongoing
        reasons.append(f"max_ongoing_requests={max_ongoing} as given")
    slots = max(1, int(cpus // threads))
    sizing = ServeSizing(
        replica_rps=float(rate),
        max_ongoing_requests=int(ongoing),
        threads=threads,
        batch_size=serving.batch_size,
        batch_wait_s=serving.max_delay_ms / 1000.0,
    )
    if replicas is not None:
        reasons.append(f"{replicas} replica(s) as given")
        return dataclasses.replace(sizing, num_replicas=replicas, reasons=tuple(reasons))
    if growth is None or rate <= 0:
        reasons.append(f"no growth figures: one replica per {threads} CPU of the cluster")
        return dataclasses.replace(sizing, num_replicas=slots, reasons=tuple(reasons))
    low = cap.needed(growth.now_rps, rate) or 1
    peak = max(v for v in (growth.now_rps, growth.peak_rps) if v is not None)
    high = cap.needed(peak, rate) or low
    reasons.append(
        f"now {growth.now_rps:g} req/s needs {low}, the peak {peak:g} req/s needs {high} "
        f"replica(s) at {rate:.1f} req/s each"
    )
    if high > slots:
        reasons.append(
            f"the cluster has room for {slots} replica(s): add nodes (or a Ray autoscaler) "
            f"for the peak's {high}"
        )
    low, high = min(low, slots), min(high, slots)
    if low == high:
        return dataclasses.replace(sizing, num_replicas=low, reasons=tuple(reasons))
    return dataclasses.replace(sizing, min_replicas=low, max_replicas=high, reasons=tuple(reasons))


def _max_ongoing(
    service_ms: np.ndarray, requirements: Requirements, batch: int, threads: int
) -> tuple[int, str]:
    from pipetune.core.measure.capacity import latency_bounds

    bounds: Mapping[str, float] = latency_bounds(requirements)
    floor = max(threads, batch)
    if not bounds:
        value = max(SERVE_DEFAULT_ONGOING, 2 * batch)
        return (
            value,
            f"max_ongoing_requests {value}: no latency bound (Serve's default or two batches)",
        )
    metric, bound = min(bounds.items(), key=lambda item: item[1])
    mean = float(service_ms.mean())
    slowest = float(np.quantile(service_ms, 0.99))
    queued = math.floor(max(0.0, bound - slowest) / mean) if mean > 0 else 0
    value = max(floor, threads * (1 + queued))
    return value, (
        f"max_ongoing_requests {value}: {queued} request(s) may wait behind one in service "
        f"and still finish within {metric.upper()} {bound:g} ms (service P99 {slowest:.1f} ms, "
        f"mean {mean:.1f} ms)"
    )
