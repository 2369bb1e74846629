"""What a pipeline must achieve (:class:`Requirements`) and the traffic ahead (:class:`Growth`).

It owns the bounds' checks, the metric the loop optimizes, the misses of a set of measured
figures, and the requirements' JSON round trip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pipetune.core.kernel.errors import ConfigError


@dataclass(frozen=True)
class Growth:
    """Traffic now and ahead, in requests per second, for capacity planning."""

    now_rps: float
    peak_rps: float | None = None
    in_12_months_rps: float | None = None
    in_24_months_rps: float | None = None

    def __post_init__(self) -> None:
        values = [self.now_rps, self.peak_rps, self.in_12_months_rps, self.in_24_months_rps]
        if any(v is not None and (not math.isfinite(v) or v < 0) for v in values):
            raise ConfigError("growth figures must be finite and non-negative")
        if self.peak_rps is not None and self.peak_rps < self.now_rps:
            raise ConfigError(
                f"growth: peak ({self.peak_rps:g} rps) is below the current rate "
                f"({self.now_rps:g} rps)"
            )


#: The metrics the loop can optimize, in the order a requirement names them.
METRICS = ("p50", "p95", "p99", "max", "throughput")


@dataclass(frozen=True)
class Requirements:
    """What the pipeline must achieve; the loop optimizes the metric they name.

    Latencies are in milliseconds, throughput in requests per second. ``max_accuracy_drop``
    is the largest tolerated drop in fidelity against the original pipeline (0.01 = 1 %),
    cumulative across accepted changes. ``min_gain`` is the smallest speedup worth keeping
    (0.05: the lower bound of the speedup's confidence interval must beat 1.05).
    ``min_speedup`` is a relative throughput bound: the optimized pipeline must serve at
    least that many times the original's throughput, measured on the same machine in the
    same run (side by side when the loop re-measures the final pipeline). Unlike an
    absolute ``min_throughput_rps`` it does not depend on how fast the machine is today.
    """

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    min_throughput_rps: float | None = None
    max_accuracy_drop: float = 0.01
    min_gain: float = 0.05
    cost_per_hour: float | None = None
    monthly_volume: float | None = None
    growth: Growth | None = None
    optimize_for: str | None = None
    min_speedup: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "min_throughput_rps",
            "min_speedup",
            "cost_per_hour",
            "monthly_volume",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float) or value <= 0 or not math.isfinite(value)
            ):
                raise ConfigError(f"requirement {name} must be a positive number, got {value!r}")
        if not 0 <= self.max_accuracy_drop < 1:
            raise ConfigError("max_accuracy_drop must be in [0, 1)")
        if not 0 <= self.min_gain < 10:
            raise ConfigError("min_gain must be in [0, 10)")
        if self.optimize_for is not None and self.optimize_for not in METRICS:
            raise ConfigError(
                f"optimize_for must be one of {', '.join(METRICS)}, not {self.optimize_for!r}"
            )
        if isinstance(self.growth, Mapping):
            object.__setattr__(self, "growth", Growth(**self.growth))

    @property
    def metric(self) -> str:
        """The metric the loop optimizes: explicit, else the first latency bound, else
        throughput."""
        if self.optimize_for:
            return self.optimize_for
        for metric in ("p99", "p95", "p50", "max"):
            if getattr(self, f"{metric}_ms") is not None:
                return metric
        return "throughput"

    def evolve(self, **changes: Any) -> Requirements:
        return replace(self, **changes)

    def check(
        self,
        throughput_rps: float,
        latency_ms: Mapping[str, float],
        speedup: float | None = None,
    ) -> list[str]:
        """The requirements that these figures miss, as sentences (empty when all hold).

        ``speedup``: throughput against the original's, for ``min_speedup`` (a bound that
        cannot be checked without it counts as missed)."""
        misses = []
        for metric in ("p50", "p95", "p99", "max"):
            bound = getattr(self, f"{metric}_ms")
            if bound is not None and latency_ms.get(metric, math.inf) > bound:
                misses.append(f"{metric.upper()} {latency_ms[metric]:.1f} ms > {bound:g} ms")
        if self.min_throughput_rps is not None and throughput_rps < self.min_throughput_rps:
            misses.append(f"throughput {throughput_rps:.1f}/s < {self.min_throughput_rps:g}/s")
        if self.min_speedup is not None and (speedup is None or speedup < self.min_speedup):
            shown = "not measured" if speedup is None else f"{speedup:.2f}x"
            misses.append(f"speedup {shown} < {self.min_speedup:g}x the original's throughput")
        return misses

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "growth"}
        data["growth"] = None if self.growth is None else dict(self.growth.__dict__)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requirements:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown requirement key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        values = dict(data)
        if isinstance(values.get("growth"), Mapping):
            growth = values["growth"]
            unknown_growth = sorted(set(growth) - set(Growth.__dataclass_fields__))
            if unknown_growth:
                raise ConfigError(f"unknown growth key(s): {', '.join(unknown_growth)}")
            values["growth"] = Growth(**growth)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"malformed requirements: {exc}") from None
