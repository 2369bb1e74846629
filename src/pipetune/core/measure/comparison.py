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

Why a short warm-up before a fast side's passes: interleaving puts a fast pipeline's pass
right after a slow one's, and the slow one (a full-catalog ranker streaming hundreds of MB)
leaves the CPU caches and the thread pools cold. A service runs only the optimized
pipeline, back to back, so that cost is not the user's; measured on the recsys demo, a
2.2 ms pipeline took 2.7-3.4 ms a request over 9-request passes right after the original,
and 3 of a comparison's 4 passes of B follow a pass of A. So a side whose input takes less
than ``warmup_s`` first runs that long, untimed, on other inputs the comparison times (the
previous round's; its warm state is reset before the timed pass); a slower side needs none.
When both sides are that fast they warm up on the same number of inputs: counts taken
from each side's own probe can let the probe's noise favour one side (with them, the
calibration benchmark accepted the same pipeline against itself 2 times in 20).

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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import ConfigError, StageError
from pipetune.core.kernel.model import Pipeline, Trace
from pipetune.core.kernel.results import InFlight
from pipetune.core.kernel.state import cache_stats, reset_state
from pipetune.core.measure.comparison_result import Comparison
from pipetune.core.measure.coverage import (
    MIN_INPUTS,
    RoundPlan,
    merge_in_flight,
    plan_rounds,
    serving_in_flight,
    spread_order,
)
from pipetune.core.measure.load import HostLoadMeter
from pipetune.core.measure.page_faults import minor_page_faults
from pipetune.core.measure.round_stats import (
    Round,
    StageTotals,
    bootstrap_speedup,
    round_metric_ratio,
    side_summary,
)
from pipetune.core.measure.stats import min_samples_for_quantile
from pipetune.core.measure.stats import t_quantile as t_quantile  # re-exported
from pipetune.core.measure.timed_pass import RuntimeSpec, run_pass, stage_seconds
from pipetune.core.runtime.serving import ServingOptions
from pipetune.core.runtime.threads import pin_threads

#: Without a rate, online comparisons offer this fraction of A's measured capacity.
AUTO_RATE_FRACTION = 0.7
#: Metrics compared; every one is reported as a speedup (higher is better).
COMPARED = ("throughput", "p50", "p95", "p99")


@dataclass(frozen=True)
class CompareSettings:
    """How hard to look. ``rounds`` ABBA rounds of ``items_per_round`` inputs each
    (default: as many inputs as fit in ``round_target_s`` per pass, at least
    ``min_items_per_round``, and enough for the rounds to cover ``min_inputs`` distinct
    inputs; see :mod:`pipetune.core.measure.coverage`). ``warmup_s``: a side faster than
    this an input first runs this long, untimed, before each pass (see the module
    docstring; 0 turns it off). ``time_budget_s`` caps the
    estimated time of the first look (the result then says what it could not cover);
    ``in_flight`` is what the candidate needs in flight to show its gain."""

    rounds: int = 8
    max_rounds: int | None = None  # a second look up to this many rounds when undecided
    round_target_s: float = 0.5
    warmup_s: float = 0.02  # a side faster than this an input warms up this long per pass
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
    warmup = {
        side: _warmup_inputs(seconds, settings.warmup_s, plan.size, batches[side])
        for side, seconds in zip(("a", "b"), probe_s, strict=True)
    }
    if warmup["a"] and warmup["b"]:  # both fast: one count, so probe noise favours neither
        warmup = dict.fromkeys(warmup, max(warmup.values()))
    rounds = _Rounds(a, b, items, runtime, plan, batches, timeout, metric, log, warmup)
    meter = HostLoadMeter().start()

    def finish(look: int) -> Comparison:
        result = _result(rounds.done, rounds.totals, metric, plan, runtime, settings, look=look)
        return replace(
            result,
            inputs_timed=len(rounds.seen),
            inputs_total=len(items),
            host_load=meter.stop().to_dict(),
            b_cache={stage: dict(figures) for stage, figures in rounds.b_cache.items()},
            warmup_inputs=dict(warmup),
        )

    rounds.run(settings.rounds)
    result = finish(1)
    extra = (settings.max_rounds or settings.rounds) - settings.rounds
    if extra > 0 and decided is not None and not decided(result):
        # Undecided at the first look: a second look on twice the data. The caller sets
        # the confidence per look so that two looks keep the overall error rate.
        log(f"undecided after {len(rounds.done)} rounds: {extra} more")
        rounds.run(extra)
        result = finish(2)
    return result


class _Rounds:
    """The ABBA/BAAB rounds of one comparison and what they accumulate: the rounds, the
    inputs they covered, each side's stage time, and B's cache hits and misses."""

    def __init__(
        self,
        a: Pipeline,
        b: Pipeline,
        items: list[Any],
        runtime: RuntimeSpec,
        plan: RoundPlan,
        batches: Mapping[str, int],
        timeout: float,
        metric: str,
        log: Callable[[str], None],
        warmup: Mapping[str, int] | None = None,
    ):
        self.pipelines = {"a": a, "b": b}
        self.warmup = dict(warmup or {})
        self.items = items
        self.runtime = runtime
        self.plan = plan
        self.batches = batches
        self.timeout = timeout
        self.metric = metric
        self.log = log
        self.inline = runtime.mode == "offline" and runtime.calling_thread == "caller"
        self.done: list[Round] = []
        self.seen: set[int] = set()
        self.totals = {"a": StageTotals(), "b": StageTotals()}
        self.b_cache: dict[str, dict[str, float]] = {}

    def run(self, count: int) -> None:
        """``count`` more rounds, each on the plan's next chunk of inputs."""
        for _ in range(count):
            r = len(self.done)
            indices = self.plan.chunk(r)
            self.seen.update(indices)
            chunk = [self.items[i] for i in indices]
            this = Round()
            # ABBA, then BAAB: the first pass of a round meets a new chunk of inputs with
            # cold caches; alternating who goes first keeps that cost off one side.
            for side in ("a", "b", "b", "a") if r % 2 == 0 else ("b", "a", "a", "b"):
                self._warm_up(side, r)
                self._timed_pass(side, chunk, indices, this)
            self.done.append(this)
            self.log(f"round {r + 1}: {round_metric_ratio(this, self.metric):.3f}x")

    def _warm_up(self, side: str, round_index: int) -> None:
        """Run ``side`` untimed on the previous round's inputs (the next round's for the
        first: inputs the comparison times anyway; as many as its warm-up takes), so its
        timed pass does not start in the state the other side's pass left behind."""
        count = self.warmup.get(side, 0)
        if count <= 0:
            return
        indices = self.plan.chunk(round_index - 1 if round_index else 1)[:count]
        offline = replace(self.runtime, mode="offline")
        warm = [self.items[i] for i in indices]
        try:
            pipeline = self.pipelines[side]
            run_pass(pipeline, warm, offline, timeout_s=self.timeout, inline=self.inline)
        except StageError as exc:
            raise exc.renumbered(indices) from exc.__cause__

    def _timed_pass(self, side: str, chunk: list[Any], indices: Sequence[int], into: Round) -> None:
        """One side's pass over ``chunk`` from cold state, added to the round ``into``."""
        pipeline = self.pipelines[side]
        reset_state(pipeline)
        before = cache_stats(pipeline) if side == "b" else {}
        faults = minor_page_faults()
        try:
            result = run_pass(
                pipeline, chunk, self.runtime, timeout_s=self.timeout, inline=self.inline
            )
        except StageError as exc:  # name the input by its place in `items`
            raise exc.renumbered(indices) from exc.__cause__
        after = minor_page_faults()
        if side == "b":
            _add_cache_delta(self.b_cache, before, cache_stats(pipeline))
        into.add(side, result)
        self.totals[side].add(
            stage_seconds(result, self.batches[side]),
            result.completed,
            None if faults is None or after is None else after - faults,
        )


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
    rounds: list[Round],
    stage_totals: Mapping[str, StageTotals],
    metric: str,
    plan: RoundPlan,
    runtime: RuntimeSpec,
    settings: CompareSettings,
    look: int,
) -> Comparison:
    """The comparison the rounds so far support: every metric's pooled speedup with its
    bootstrap interval, each side's figures, and what the rounds rest on."""
    speedup, ci = {}, {}
    rng = np.random.default_rng(settings.seed + look)
    resamples = rng.integers(0, len(rounds), size=(settings.bootstrap, len(rounds)))
    for name in dict.fromkeys((*COMPARED, metric)):
        point, interval = bootstrap_speedup(rounds, name, resamples, settings.confidence)
        speedup[name], ci[name] = point, interval
    a_lat = np.concatenate([x for rnd in rounds for x in rnd.a_latency])
    b_lat = np.concatenate([x for rnd in rounds for x in rnd.b_latency])
    return Comparison(
        metric=metric,
        speedup=speedup,
        ci=ci,
        rounds=len(rounds),
        items_per_round=plan.size,
        a=side_summary(rounds, "a", a_lat, stage_totals["a"]),
        b=side_summary(rounds, "b", b_lat, stage_totals["b"]),
        runtime=runtime,
        round_speedups=tuple(round_metric_ratio(rnd, metric) for rnd in rounds),
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


def _warmup_inputs(item_s: float, warmup_s: float, size: int, batch: int) -> int:
    """Inputs a side runs untimed before each pass: enough to take ``warmup_s`` (at least a
    batch, at most a pass); none when one input already takes that long."""
    if warmup_s <= 0 or item_s >= warmup_s:
        return 0
    return min(size, max(batch, math.ceil(warmup_s / item_s)))


def _timeout(settings: CompareSettings, per_item_s: float | None, n: int) -> float:
    """The per-input deadline of a pass (``n``, the pass's size, no longer scales it: a
    deadline over a whole pass blamed whichever input the pass had reached), never more
    than the control scope's."""
    del n
    if per_item_s is None:
        return control.capped(max(settings.min_timeout_s, 60.0))
    return control.capped(max(settings.min_timeout_s, settings.timeout_factor * per_item_s))
