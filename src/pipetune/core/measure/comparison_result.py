"""The record of a comparison: each side's pooled figures (:class:`SideSummary`) and the
paired result (:class:`Comparison`: the speedup on every metric with its interval, the
rounds behind it, the inputs and latency samples they covered, the host's load, and B's
cache hit rates), as :func:`pipetune.core.measure.comparison.compare` returns it and
reports store it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipetune.core.kernel.results import InFlight
from pipetune.core.measure.coverage import coverage_text
from pipetune.core.measure.stats import quantile_supported
from pipetune.core.measure.timed_pass import RuntimeSpec


@dataclass(frozen=True)
class SideSummary:
    """One side's pooled figures over all its measured passes."""

    throughput_rps: float
    latency_ms: Mapping[str, float]
    stage_ms: Mapping[str, float]  # mean time per input, per stage
    passes: int
    items: int
    #: minor page faults a completed input took (fresh memory the side touched); ``None``
    #: where the platform does not count them
    page_faults_per_item: float | None = None


#: Page faults an input (4 KiB each: 8 MiB of fresh memory) from which a side's time
#: depends on how warm the process's heap is, and the report says so.
HEAVY_PAGE_FAULTS = 2048


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of A (reference) and B (candidate).

    ``speedup[m]`` is B's improvement over A on metric ``m`` (throughput ratio, or the
    ratio of A's latency percentile to B's): above 1 means B is faster. ``ci[m]`` is its
    bootstrapped interval over rounds.
    """

    metric: str
    speedup: Mapping[str, float]
    ci: Mapping[str, tuple[float, float]]
    rounds: int
    items_per_round: int
    a: SideSummary
    b: SideSummary
    runtime: RuntimeSpec
    round_speedups: tuple[float, ...] = ()
    latencies_ms: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    confidence: float = 0.95
    threads: Mapping[str, Any] = field(default_factory=dict)  # the settings both ran under
    looks: int = 1  # 2 when the first look was undecided and more rounds were run
    inputs_timed: int = 0  # distinct inputs the rounds covered
    inputs_total: int = 0  # inputs in the split
    samples_per_side: int = 0  # latency samples behind each side's percentiles
    coverage_note: str = ""  # why coverage falls short of the rule, when it does
    host_load: Mapping[str, Any] | None = None  # the host's load while the rounds ran
    #: per stage of B, the cache hits and misses of its timed passes and their hit rate
    b_cache: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    in_flight: InFlight | None = None  # what the candidate needed in flight
    #: inputs each side ran untimed before each of its passes (fast sides only)
    warmup_inputs: Mapping[str, int] = field(default_factory=dict)

    @property
    def primary(self) -> float:
        return self.speedup[self.metric]

    @property
    def coverage(self) -> str:
        """``timed on N of M inputs, S latency samples per side``."""
        return coverage_text(self.inputs_timed, self.inputs_total, self.samples_per_side)

    def shown(self, metric: str) -> bool:
        """Whether enough latency samples stand behind ``metric`` to show it."""
        return quantile_supported(metric, self.samples_per_side)

    @property
    def primary_ci(self) -> tuple[float, float]:
        return self.ci[self.metric]

    def allocator_notes(self, names: tuple[str, str] = ("A", "B")) -> list[str]:
        """A sentence for each side that touches so much fresh memory an input that its
        time depends on the allocator's state: a fresh process (a plain script, a new
        service) can measure it faster or slower than this process did."""
        notes = []
        for side, name in zip((self.a, self.b), names, strict=True):
            faults = side.page_faults_per_item
            if faults is not None and faults >= HEAVY_PAGE_FAULTS:
                notes.append(
                    f"the {name} pipeline took {faults:,.0f} page faults an input (about "
                    f"{faults * 4 / 1024:,.0f} MiB of fresh memory): its time depends on how "
                    "warm the process's heap is, and a fresh process can measure it "
                    "differently from this one"
                )
        return notes

    def stage_speedup(self, stage: str) -> float | None:
        a, b = self.a.stage_ms.get(stage), self.b.stage_ms.get(stage)
        if a is None or b is None or b <= 0:
            return None
        return a / b

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "speedup": dict(self.speedup),
            "ci": {k: list(v) for k, v in self.ci.items()},
            "rounds": self.rounds,
            "items_per_round": self.items_per_round,
            "confidence": self.confidence,
            "looks": self.looks,
            "round_speedups": list(self.round_speedups),
            "runtime": self.runtime.describe(),
            "threads": dict(self.threads),
            "a": _side_dict(self.a),
            "b": _side_dict(self.b),
            "inputs_timed": self.inputs_timed,
            "inputs_total": self.inputs_total,
            "samples_per_side": self.samples_per_side,
            "coverage": self.coverage,
            "coverage_note": self.coverage_note,
            "quantiles_shown": {m: self.shown(m) for m in ("p50", "p95", "p99")},
            "host_load": None if self.host_load is None else dict(self.host_load),
            "in_flight": None if self.in_flight is None else self.in_flight.to_dict(),
            "warmup_inputs": dict(self.warmup_inputs),
        }


def _side_dict(side: SideSummary) -> dict[str, Any]:
    return {
        "throughput_rps": side.throughput_rps,
        "latency_ms": dict(side.latency_ms),
        "stage_ms": dict(side.stage_ms),
        "passes": side.passes,
        "items": side.items,
        "page_faults_per_item": side.page_faults_per_item,
    }
