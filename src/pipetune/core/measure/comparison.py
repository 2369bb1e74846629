"""Side-by-side speed comparison of two pipelines: paired, interleaved ABBA rounds and a
bootstrapped confidence interval of the speedup.

Used by the validator (current vs candidate), by the loop's final re-measurement
(original vs optimized) and by ``pipetune check`` (baseline vs current).

Why ABBA: timing noise on a real machine drifts (other processes, frequency scaling,
thermal state). Each round runs A, B, B, A on the same inputs, so a linear drift within a
round cancels, each side gets one pass right after itself (warm caches) and one right
after the other, and every round is a matched pair. Rounds alternate ABBA and BAAB: the
first pass of a round is the first to touch that round's inputs (cold caches), and
measured on this project's calibration benchmark, always giving that pass to A biased the
same pipeline against itself by 1-2 % in B's favour. Any warm state a change adds (a result
cache) is reset before *every* pass (:mod:`pipetune.core.kernel.state`), so no pass inherits
what an earlier pass computed.

Which inputs, how many (:mod:`pipetune.core.measure.coverage`): the rounds walk the whole
split in a spread order and cover at least ``min(all, 100)`` distinct inputs unless the
time budget forbids it (the result says so); passes are sized from a probe of both
pipelines as they are now; a change that needs several inputs in flight (a batch) gets
passes that can form its batches. Every result carries how many inputs and latency
samples stand behind it, and the host's load while it ran.

Where (:mod:`pipetune.core.measure.execution`): offline passes run in the thread that calls
:func:`compare`, as a plain script calls ``pipeline.run`` (``RuntimeSpec.calling_thread``);
the warm-up before them runs on a worker thread under a deadline, so a pipeline that hangs
is stopped there and named.

Why the bootstrap is expanded: the rounds are few (5-20), and a plain percentile bootstrap
is too narrow for small samples (it behaves like a z-interval with a biased variance), so
"the same pipeline against itself" would win too often. We use Hesterberg's expanded
percentile interval (the percentiles are widened by ``sqrt(n / (n - 1)) * t[n-1]``), which
keeps the bootstrap's shape and the t-interval's small-sample coverage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import ConfigError, StageError
from pipetune.core.kernel.model import Pipeline, Trace, Workload
from pipetune.core.kernel.results import InFlight
from pipetune.core.kernel.state import cache_stats, reset_state
from pipetune.core.measure.coverage import (
    MIN_INPUTS,
    RoundPlan,
    coverage_text,
    merge_in_flight,
    plan_rounds,
    serving_in_flight,
    spread_order,
)
from pipetune.core.measure.load import HostLoadMeter
from pipetune.core.measure.stats import (
    expanded_tail,
    min_samples_for_quantile,
    quantile_supported,
)
from pipetune.core.measure.stats import t_quantile as t_quantile  # re-exported
from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.result import RunResult
from pipetune.core.runtime.serving import ServingOptions
from pipetune.core.runtime.threads import pin_threads

#: Without a rate, online comparisons offer this fraction of A's measured capacity.
AUTO_RATE_FRACTION = 0.7
#: Metrics compared; every one is reported as a speedup (higher is better).
COMPARED = ("throughput", "p50", "p95", "p99")


@dataclass(frozen=True)
class RuntimeSpec:
    """The serving model both sides of a comparison run under (the same for both).

    ``mode``: ``offline`` (inputs back to back: throughput), ``online`` (open-loop
    arrivals at ``rate`` or from ``trace``, through the runtime's queue and batcher) or
    ``stream``. ``threads``: the thread count pinned for both sides (torch intra-op,
    OpenMP/BLAS, faiss; :func:`pipetune.core.runtime.threads.pin_threads`); ``None`` freezes the
    count in force, so a library a candidate loads mid-run gets the same count too.
    ``calling_thread``: ``caller`` times offline passes in the thread that calls (as a
    plain script calls ``pipeline.run``); ``worker`` on a runtime worker thread.
    """

    mode: str = "offline"
    rate: float | None = None
    trace: Trace | None = None
    threads: int | None = None
    seed: int = 0
    calling_thread: str = "caller"

    @classmethod
    def from_workload(cls, workload: Workload, **overrides: Any) -> RuntimeSpec:
        values: dict[str, Any] = {
            "mode": workload.mode,
            "rate": workload.rate,
            "trace": workload.trace,
            "seed": workload.seed,
        }
        values.update(overrides)
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "rate": self.rate,
            "trace": None if self.trace is None else len(self.trace.arrivals_s),
            "threads": self.threads,
            "seed": self.seed,
            "calling_thread": self.calling_thread,
        }


@dataclass(frozen=True)
class CompareSettings:
    """How hard to look. ``rounds`` ABBA rounds of ``items_per_round`` inputs each
    (default: as many inputs as fit in ``round_target_s`` per pass, at least
    ``min_items_per_round``, and enough for the rounds to cover ``min_inputs`` distinct
    inputs; see :mod:`pipetune.core.measure.coverage`). ``time_budget_s`` caps the
    estimated time of the first look (the result then says what it could not cover);
    ``in_flight`` is what the candidate needs in flight to show its gain."""

    rounds: int = 8
    max_rounds: int | None = None  # a second look up to this many rounds when undecided
    round_target_s: float = 0.5
    items_per_round: int | None = None
    min_items_per_round: int = 1  # slow pipelines (seconds per input) get short rounds
    min_inputs: int = MIN_INPUTS
    time_budget_s: float | None = None
    in_flight: InFlight | None = None
    confidence: float = 0.95
    bootstrap: int = 2000
    timeout_factor: float = 10.0
    min_timeout_s: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 2:
            raise ConfigError("a comparison needs at least 2 rounds for a confidence interval")
        if self.max_rounds is not None and self.max_rounds < self.rounds:
            raise ConfigError("max_rounds must be at least rounds")
        if not 0.5 < self.confidence < 1:
            raise ConfigError("confidence must be between 0.5 and 1")
        if self.min_inputs < 1:
            raise ConfigError("min_inputs must be at least 1")


@dataclass(frozen=True)
class SideSummary:
    """One side's pooled figures over all its measured passes."""

    throughput_rps: float
    latency_ms: Mapping[str, float]
    stage_ms: Mapping[str, float]  # mean time per input, per stage
    passes: int
    items: int


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
        }


def _side_dict(side: SideSummary) -> dict[str, Any]:
    return {
        "throughput_rps": side.throughput_rps,
        "latency_ms": dict(side.latency_ms),
        "stage_ms": dict(side.stage_ms),
        "passes": side.passes,
        "items": side.items,
    }


# -- one measured pass ---------------------------------------------------------------------


def run_pass(
    pipeline: Pipeline,
    items: Sequence[Any],
    runtime: RuntimeSpec,
    *,
    timeout_s: float | None = None,
    spans: bool = False,
    inline: bool = False,
) -> RunResult:
    """One pass of ``items`` through ``pipeline`` under ``runtime``, serving the pipeline
    as its ``meta["serving"]`` says (batch size, batching delay). Raises
    :class:`~pipetune.core.kernel.errors.StageError` (or ``StageTimeout``) naming the stage.

    ``inline``: offline, run in the calling thread (no deadline: ``timeout_s`` is not
    enforced) rather than on a worker thread under it.

    Online, both sides of a comparison get the same arrival process: the same rate (or
    trace) and the same seed, so the same requests arrive at the same offsets. A pass cut
    short (Ctrl-C, a cancelled token) raises
    :class:`~pipetune.core.kernel.control.Cancelled`: a partial pass is never measured.
    """
    return control.complete(
        _run_pass(pipeline, items, runtime, timeout_s=timeout_s, spans=spans, inline=inline)
    )


def _run_pass(
    pipeline: Pipeline,
    items: Sequence[Any],
    runtime: RuntimeSpec,
    *,
    timeout_s: float | None,
    spans: bool,
    inline: bool,
) -> RunResult:
    serving = ServingOptions.of(pipeline)
    if runtime.mode == "offline":
        return run_offline(
            pipeline,
            items,
            batch_size=serving.batch_size,
            on_error="stop",
            timeout_s=None if inline else timeout_s,
            spans=spans,
        )
    if runtime.mode == "online":
        from pipetune.core.runtime.online import run_online

        if runtime.rate is None and runtime.trace is None:
            raise ConfigError("online mode needs an arrival rate or a trace")
        return run_online(
            pipeline,
            items,
            rate=runtime.rate,
            trace=runtime.trace,
            seed=runtime.seed,
            max_batch=serving.batch_size,
            max_wait_ms=serving.max_delay_ms,
            on_error="stop",
            timeout_s=timeout_s,
            spans=spans,
        )
    if runtime.mode == "stream":
        from pipetune.core.runtime.stream import run_stream

        if runtime.rate is None and runtime.trace is None:
            raise ConfigError("stream mode needs an arrival rate or a trace")
        return run_stream(
            pipeline,
            items,
            rate=runtime.rate,
            trace=runtime.trace,
            seed=runtime.seed,
            on_error="stop",
            timeout_s=timeout_s,
            spans=spans,
        )
    raise ConfigError(f"runtime mode must be offline, online or stream, not {runtime.mode!r}")


def stage_seconds(result: RunResult, batch_size: int) -> dict[str, float]:
    """Total seconds each stage spent on a pass. Inputs run in one batch share one stage
    time (the runtime writes it on every input of the batch), so count it once.

    A batch is recognized by its inputs' shared service start and end; only without those
    times does it fall back to consecutive runs of ``batch_size`` rows (an online batcher
    forms batches of varying size from whatever has arrived, so rows are not in step)."""
    if result.stage_s.size == 0:
        return {name: 0.0 for name in result.stage_names}
    rows = result.stage_s
    start, done = result.start_s, result.done_s
    if start is not None and done is not None and len(start) == len(done) == len(rows):
        _, first = np.unique(np.stack([start, done], axis=1), axis=0, return_index=True)
        rows = rows[np.sort(first)]
    elif batch_size > 1:
        rows = rows[::batch_size]
    totals = rows.sum(axis=0)
    return {name: float(totals[i]) for i, name in enumerate(result.stage_names)}


# -- the comparison ----------------------------------------------------------------------------


@dataclass
class _Round:
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


def compare(
    a: Pipeline,
    b: Pipeline,
    items: Sequence[Any],
    *,
    metric: str = "throughput",
    runtime: RuntimeSpec | None = None,
    settings: CompareSettings | None = None,
    expected_item_s: float | None = None,
    log: Callable[[str], None] | None = None,
    decided: Callable[[Comparison], bool] | None = None,
) -> Comparison:
    """Measure ``b`` against ``a`` in paired ABBA rounds (see the module docstring).

    ``decided``: with ``settings.max_rounds`` above ``settings.rounds``, called on the
    result after the first ``rounds``; when it returns False the comparison runs up to
    ``max_rounds`` rounds in all and the interval is computed again on every round (a
    second look).

    ``expected_item_s`` (seconds per input, e.g. from the profile) sizes the rounds and the
    hang timeout; without it a short probe pass measures it. Either pipeline raising or
    hanging raises :class:`~pipetune.core.kernel.errors.StageError` / ``StageTimeout``.
    """
    runtime = runtime or RuntimeSpec()
    settings = settings or CompareSettings()
    with pin_threads(runtime.threads) as threads:
        result = _compare(a, b, items, metric, runtime, settings, expected_item_s, log, decided)
    return replace(result, threads=dict(threads))


def _compare(
    a: Pipeline,
    b: Pipeline,
    items: Sequence[Any],
    metric: str,
    runtime: RuntimeSpec,
    settings: CompareSettings,
    expected_item_s: float | None,
    log: Callable[[str], None] | None,
    decided: Callable[[Comparison], bool] | None = None,
) -> Comparison:
    if metric not in (*COMPARED, "max"):
        raise ConfigError(f"cannot compare on metric {metric!r}")
    items = list(items)
    if not items:
        raise ConfigError("cannot compare pipelines on an empty workload")
    log = log or (lambda message: None)
    batches = {"a": ServingOptions.of(a).batch_size, "b": ServingOptions.of(b).batch_size}
    # what the candidate says it needs in flight, and what either side's batches need
    in_flight = merge_in_flight(settings.in_flight, serving_in_flight(*batches.values()))
    settings = replace(settings, in_flight=in_flight)
    per_item, probe_s = _probe(a, b, items, runtime, settings, expected_item_s)
    plan = plan_rounds(
        len(items),
        settings.rounds,
        probe_s,
        round_target_s=settings.round_target_s,
        min_items_per_round=settings.min_items_per_round,
        items_per_round=settings.items_per_round,
        min_inputs=settings.min_inputs,
        time_budget_s=settings.time_budget_s,
        in_flight=settings.in_flight,
        min_samples=min_samples_for_quantile(metric),
    )
    if plan.note:
        log(plan.note)
    runtime = _arrivals(runtime, in_flight, probe_s[0], plan.size, log)
    timeout = _timeout(settings, per_item, plan.size)
    inline = runtime.mode == "offline" and runtime.calling_thread == "caller"
    rounds: list[_Round] = []
    seen: set[int] = set()
    stage_totals = {"a": _StageTotals(), "b": _StageTotals()}
    b_cache: dict[str, dict[str, float]] = {}
    meter = HostLoadMeter().start()

    def run_rounds(count: int) -> None:
        for _ in range(count):
            r = len(rounds)
            indices = plan.chunk(r)
            seen.update(indices)
            chunk = [items[i] for i in indices]
            this = _Round()
            # ABBA, then BAAB: the first pass of a round meets a new chunk of inputs with
            # cold caches; alternating who goes first keeps that cost off one side.
            for side in ("a", "b", "b", "a") if r % 2 == 0 else ("b", "a", "a", "b"):
                pipeline = a if side == "a" else b
                reset_state(pipeline)
                before = cache_stats(pipeline) if side == "b" else {}
                try:
                    result = run_pass(pipeline, chunk, runtime, timeout_s=timeout, inline=inline)
                except StageError as exc:  # name the input by its place in `items`
                    raise exc.renumbered(indices) from exc.__cause__
                if side == "b":
                    _add_cache_delta(b_cache, before, cache_stats(pipeline))
                this.add(side, result)
                stage_totals[side].add(stage_seconds(result, batches[side]), result.completed)
            rounds.append(this)
            log(f"round {r + 1}: {_round_metric_ratio(this, metric):.3f}x")

    def finish(look: int) -> Comparison:
        result = _result(rounds, stage_totals, metric, plan, runtime, settings, look=look)
        return replace(
            result,
            inputs_timed=len(seen),
            inputs_total=len(items),
            host_load=meter.stop().to_dict(),
            b_cache={stage: dict(figures) for stage, figures in b_cache.items()},
        )

    run_rounds(settings.rounds)
    result = finish(1)
    extra = (settings.max_rounds or settings.rounds) - settings.rounds
    if extra > 0 and decided is not None and not decided(result):
        # Undecided at the first look: a second look on twice the data. The caller sets
        # the confidence per look so that two looks keep the overall error rate.
        log(f"undecided after {len(rounds)} rounds: {extra} more")
        run_rounds(extra)
        result = finish(2)
    return result


def _add_cache_delta(
    total: dict[str, dict[str, float]],
    before: Mapping[str, Mapping[str, float]],
    after: Mapping[str, Mapping[str, float]],
) -> None:
    """Add one pass's cache hits and misses (``after - before``, per stage) to ``total``."""
    for stage, figures in after.items():
        entry = total.setdefault(stage, {"hits": 0.0, "misses": 0.0, "hit_rate": 0.0})
        for key in ("hits", "misses"):
            was, now = before.get(stage, {}).get(key, 0), figures.get(key, 0)
            entry[key] += now - was if now >= was else now  # a reset zeroed the counter
        lookups = entry["hits"] + entry["misses"]
        entry["hit_rate"] = entry["hits"] / lookups if lookups else 0.0


def _arrivals(
    runtime: RuntimeSpec,
    in_flight: InFlight | None,
    a_item_s: float,
    size: int,
    log: Callable[[str], None],
) -> RuntimeSpec:
    """The arrival process both sides get online and in stream mode, when the workload
    gives none: a fraction of A's measured capacity, or — for a change that needs a
    backlog to form its batches — every request of a pass at its start."""
    if runtime.mode == "offline" or runtime.rate is not None or runtime.trace is not None:
        return runtime
    if in_flight is not None and in_flight.arrival == "backlog":
        log(f"in flight: {size} requests arrive at once in every pass")
        return replace(runtime, trace=Trace(arrivals_s=(0.0,) * size))
    # No arrival rate given: offer both sides the same load, a fraction of A's measured
    # capacity (as the profiler does), and record it.
    runtime = replace(runtime, rate=AUTO_RATE_FRACTION / max(a_item_s, 1e-6))
    log(f"no arrival rate given: offering {runtime.rate:.1f} requests/s to both sides")
    return runtime


def _probe(
    a: Pipeline,
    b: Pipeline,
    items: list[Any],
    runtime: RuntimeSpec,
    settings: CompareSettings,
    expected_item_s: float | None,
) -> tuple[float, tuple[float, float]]:
    """Warm both pipelines up, then time each on the same few inputs (spread over the
    split) as they are now. Returns the slower side's seconds per input (for deadlines)
    and each side's.

    The warm-up (import-time work, lazy initialization, first-call compilation) runs on a
    worker thread under a deadline: a pipeline that hangs is stopped and named there. The
    timed probe runs where the rounds will (the calling thread, offline)."""
    probe_n = 4
    if expected_item_s:  # a slow pipeline (seconds per input) warms up on one input
        probe_n = max(1, min(4, int(settings.round_target_s / expected_item_s)))
    probe = [items[i] for i in spread_order(len(items))[: min(len(items), probe_n)]]
    timeout = _timeout(settings, expected_item_s, len(probe))
    offline = replace(runtime, mode="offline")  # capacity: online needs a rate first
    inline = runtime.calling_thread == "caller"
    for pipeline in (a, b):
        reset_state(pipeline)
        run_pass(pipeline, probe, offline, timeout_s=timeout)
    probe_s = []
    for pipeline in (a, b):
        reset_state(pipeline)
        start = time.perf_counter()
        run_pass(pipeline, probe, offline, timeout_s=timeout, inline=inline)
        probe_s.append(max((time.perf_counter() - start) / len(probe), 1e-6))
    per_item = max(expected_item_s or 0.0, *probe_s)
    return per_item, (probe_s[0], probe_s[1])


def _result(
    rounds: list[_Round],
    stage_totals: Mapping[str, _StageTotals],
    metric: str,
    plan: RoundPlan,
    runtime: RuntimeSpec,
    settings: CompareSettings,
    look: int,
) -> Comparison:
    speedup, ci = {}, {}
    rng = np.random.default_rng(settings.seed + look)
    resamples = rng.integers(0, len(rounds), size=(settings.bootstrap, len(rounds)))
    for name in dict.fromkeys((*COMPARED, metric)):
        point, interval = _bootstrap(rounds, name, resamples, settings.confidence)
        speedup[name], ci[name] = point, interval
    a_lat = np.concatenate([x for rnd in rounds for x in rnd.a_latency])
    b_lat = np.concatenate([x for rnd in rounds for x in rnd.b_latency])
    return Comparison(
        metric=metric,
        speedup=speedup,
        ci=ci,
        rounds=len(rounds),
        items_per_round=plan.size,
        a=_summary(rounds, "a", a_lat, stage_totals["a"]),
        b=_summary(rounds, "b", b_lat, stage_totals["b"]),
        runtime=runtime,
        round_speedups=tuple(_round_metric_ratio(rnd, metric) for rnd in rounds),
        latencies_ms={
            "a": tuple(float(v) for v in np.sort(a_lat) * 1000),
            "b": tuple(float(v) for v in np.sort(b_lat) * 1000),
        },
        confidence=settings.confidence,
        looks=look,
        samples_per_side=int(min(a_lat.size, b_lat.size)),
        coverage_note=plan.note,
        in_flight=settings.in_flight,
    )


class _StageTotals:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.items = 0

    def add(self, seconds: Mapping[str, float], items: int) -> None:
        for name, value in seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + value
        self.items += items

    def per_item_ms(self) -> dict[str, float]:
        n = max(self.items, 1)
        return {name: 1000.0 * value / n for name, value in self.seconds.items()}


def _summary(
    rounds: list[_Round], side: str, latency: np.ndarray, totals: _StageTotals
) -> SideSummary:
    wall = sum(getattr(r, f"{side}_wall") for r in rounds)
    n = sum(getattr(r, f"{side}_items") for r in rounds)
    pct = percentiles_ms(latency)
    return SideSummary(
        throughput_rps=n / wall if wall > 0 else 0.0,
        latency_ms=pct,
        stage_ms=totals.per_item_ms(),
        passes=2 * len(rounds),
        items=n,
    )


def _timeout(settings: CompareSettings, per_item_s: float | None, n: int) -> float:
    """The per-input deadline of a pass (``n``, the pass's size, no longer scales it: a
    deadline over a whole pass blamed whichever input the pass had reached), never more
    than the control scope's."""
    del n
    if per_item_s is None:
        return control.capped(max(settings.min_timeout_s, 60.0))
    return control.capped(max(settings.min_timeout_s, settings.timeout_factor * per_item_s))


_QUANTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}


def _pooled_ratio(rounds: Sequence[_Round], metric: str) -> float:
    if metric == "throughput":
        a = sum(r.a_items for r in rounds) / max(sum(r.a_wall for r in rounds), 1e-12)
        b = sum(r.b_items for r in rounds) / max(sum(r.b_wall for r in rounds), 1e-12)
        return b / a if a > 0 else math.inf
    q = _QUANTILES[metric]
    a = float(np.percentile(np.concatenate([x for r in rounds for x in r.a_latency]), q))
    b = float(np.percentile(np.concatenate([x for r in rounds for x in r.b_latency]), q))
    return a / b if b > 0 else math.inf


def _round_metric_ratio(rnd: _Round, metric: str) -> float:
    return _pooled_ratio([rnd], metric)


def _bootstrap(
    rounds: list[_Round], metric: str, resamples: np.ndarray, confidence: float
) -> tuple[float, tuple[float, float]]:
    """The pooled speedup over all rounds, and its expanded-percentile bootstrap interval
    from resampling whole rounds (the pairing stays intact)."""
    point = _pooled_ratio(rounds, metric)
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
        ratios = np.array([_pooled_ratio([rounds[i] for i in row], metric) for row in resamples])
    logs = np.log(np.clip(ratios, 1e-12, None))
    tail = expanded_tail(1 - confidence, n)
    low, high = np.quantile(logs, [tail, 1 - tail])
    return point, (float(math.exp(low)), float(math.exp(high)))
