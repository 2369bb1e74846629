"""The profiler: where the time goes, measured on the workload.

A profile is a sequence of passes, each over the same pipeline and workload:

1. **warm-up** (discarded);
2. **timing**: ``workload.repeats`` runs in the workload's mode (offline, online or stream,
   see :mod:`pipetune.core.runtime.offline`) recording per-input stage times, CPU time per stage,
   the RSS high-water mark, and on CUDA, CUDA-event stage times and NVML utilization.
   Plugins observe this run's stage inputs and outputs (``profile_pipeline``);
3. **GIL check**: each stage worth it is called from 1 thread, then 2 at once;
4. **concurrency sweep**: closed-loop throughput and latency at each level of
   ``workload.concurrency``, time-boxed per level, and the knee;
5. **hot functions** (cProfile), 6. **layers** (torch forward hooks), 7. **Python heap**
   per stage (tracemalloc), 8. **CPU<->GPU transfers** (torch profiler, CUDA only): each in
   its own bounded pass, so none distorts the timing pass or another.

Ctrl-C at any point stops the profile and returns what was measured (``stopped=True``); if
nothing was measured yet it re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.errors import ConfigError, PipetuneError, StageError
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.results import (
    ConcurrencyPoint,
    ErrorSummary,
    LatencyStats,
    Profile,
    StageStats,
)
from pipetune.core.kernel.state import reset_state
from pipetune.core.measure import gpu as _gpu
from pipetune.core.measure import probes
from pipetune.core.measure.load import BUSY_RUN_QUEUE_WAIT
from pipetune.core.measure.stats import min_samples_for_percentile
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.result import OnError, RunResult
from pipetune.core.runtime.serving import ServingOptions

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

#: How many inputs' stage inputs/outputs plugins get to observe.
OBSERVE_ITEMS = 256
#: Warm-up runs use at most this many inputs.
WARMUP_ITEMS = 16
#: Stages below this share of the time are not worth a GIL check.
GIL_CHECK_MIN_SHARE = 0.05
#: Stages slower than this per call skip the GIL check (it would take too long).
GIL_CHECK_MAX_CALL_S = 0.5
#: Fewer inputs than this is a tiny workload.
TINY_WORKLOAD = 30
#: A timing pass shorter than this is dominated by timer noise, caches and GC.
SHORT_TIMING_S = 1.0
#: Run-queue wait above this share of the timing pass means the host was busy (the same
#: threshold the comparisons and reports use).
BUSY_HOST_WAIT_SHARE = BUSY_RUN_QUEUE_WAIT
#: The most inputs one level of the concurrency sweep may queue (its time box ends it).
MAX_SWEEP_INPUTS = 200_000
#: Without a rate or trace, online/stream profiles offer this fraction of measured capacity.
AUTO_RATE_FRACTION = 0.7


def profile(
    pipeline: Pipeline,
    workload: Workload,
    *,
    pm: PipetunePluginManager | None = None,
    on_error: OnError = "stop",
    timeout_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    mode: str | None = None,
    workers: int = 1,
    max_batch: int = 1,
    max_wait_ms: float = 0.0,
    sweep: bool | Sequence[int] = True,
    sweep_budget_s: float = 2.0,
    gil_check: bool = True,
    gil_budget_s: float = 0.3,
    hot_functions: bool = True,
    hot_items: int = 32,
    layers: bool = True,
    layer_items: int = 16,
    memory: bool = True,
    memory_items: int = 8,
    gpu: bool | None = None,
    pass_budget_s: float = 10.0,
    threads: int | None = None,
    chrome_trace: str | Path | None = None,
    on_pass: Callable[[str], None] | None = None,
) -> Profile:
    """Profile ``pipeline`` on ``workload``: stage shares, latency percentiles, throughput,
    the concurrency sweep, hot functions, per-layer time, memory, GPU figures, warnings
    about the workload, and every plugin's domain facts.

    Args:
        pm: the plugin manager (default: a fresh one).
        on_error: ``stop`` raises :class:`StageError` at the first failing input; ``skip``
            counts failures per stage in ``Profile.errors``.
        timeout_s: the longest one input may take through the pipeline (a hung stage is
            named with the input); ``None``: the control scope's deadline, if any.
        progress: ``progress(done, total)`` in work units (about one per input) across all
            passes; ``done`` reaches ``total`` at the end. May be called from worker threads.
        mode: ``offline``, ``online`` or ``stream`` (default: ``workload.mode``). Online and
            stream use ``workload.rate`` or ``workload.trace``; without either, they offer
            70 % of the capacity measured during warm-up (with a warning).
        workers: worker threads in the timing pass (online: threads serving the queue).
        max_batch, max_wait_ms: the online batcher (see
            :func:`~pipetune.core.runtime.online.run_online`).
        sweep: run the concurrency sweep over ``workload.concurrency`` (or these levels);
            ``False`` skips it. ``sweep_budget_s`` is the time box per level.
        gil_check: the 1-vs-2-thread check of stages with >= 5 % of the time.
        hot_functions, hot_items: the cProfile pass and its input bound.
        layers, layer_items: the torch per-layer pass and its input bound.
        memory, memory_items: RSS peak during timing and the tracemalloc pass.
        gpu: CUDA-event timing, NVML sampling and the transfer pass; ``None`` (default)
            turns them on when a slot holds a CUDA module or tensor.
        pass_budget_s: the most seconds each bounded pass (hot, layers, memory) may take.
        threads: pin torch/OpenMP/faiss to this many threads for the whole profile
            (:func:`~pipetune.core.runtime.threads.pin_threads`); ``None`` records what is in force.
        chrome_trace: write the first timing run's stage spans there (Chrome trace JSON).
        on_pass: called with a short description as each pass starts (for a status line).
    """
    from pipetune.core.kernel.manager import get_plugin_manager

    workload.require_items()
    # A pipeline that asks to be served in batches (meta["serving"], set by a dynamic
    # batching change) is profiled the way it will be served.
    serving = ServingOptions.of(pipeline)
    if max_batch == 1 and serving.batch_size > 1:
        max_batch = serving.batch_size
    if max_wait_ms == 0.0 and serving.max_delay_ms > 0:
        max_wait_ms = serving.max_delay_ms
    mode = mode or workload.mode
    if mode not in ("offline", "online", "stream"):
        raise ConfigError(f"mode must be offline, online or stream, not {mode!r}")
    pm = pm or get_plugin_manager()
    _threads.use_plugin_pools(pm)
    pin = _threads.pin_threads(threads) if threads is not None else contextlib.nullcontext()
    with pin:
        session = _Session(
            pipeline,
            workload,
            mode=mode,
            on_error=on_error,
            timeout_s=timeout_s,
            progress=progress,
            on_pass=on_pass,
            workers=workers,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            sweep=sweep,
            sweep_budget_s=sweep_budget_s,
            gil_check=gil_check,
            gil_budget_s=gil_budget_s,
            hot_functions=hot_functions,
            hot_items=hot_items,
            layers=layers,
            layer_items=layer_items,
            memory=memory,
            memory_items=memory_items,
            gpu=gpu,
            pass_budget_s=pass_budget_s,
            chrome_trace=chrome_trace,
        )
        return session.run(pm)


class _Units:
    """Progress in work units across passes: each pass owns a slice of the total."""

    def __init__(self, callback: Callable[[int, int], None] | None, total: int):
        self.callback = callback
        self.total = max(1, total)
        self.done = 0
        self.base = 0
        self.lock = threading.Lock()  # worker threads report too: keep ``done`` monotone

    def begin(self, size: int) -> Callable[[int], None]:
        """Start a pass worth ``size`` units; returns its ``progress(count)`` callback."""
        self.base = self.done
        limit = self.base + size

        def advance(count: int) -> None:
            self.report(min(limit, self.base + count))

        return advance

    def report(self, value: int) -> None:
        value = min(self.total, value)
        with self.lock:
            if value <= self.done:
                return
            self.done = value
            if self.callback is not None:
                self.callback(value, self.total)

    def end(self, size: int) -> None:
        self.report(self.base + size)

    def finish(self) -> None:
        self.report(self.total)


class _Session:
    """One profile: the passes, what they measured, and the warnings."""

    def __init__(self, pipeline: Pipeline, workload: Workload, **options: Any):
        self.pipeline = pipeline
        self.workload = workload
        self.o = options
        # Speed is measured on the timing sample (every input unless the workload bounds
        # it); the realism warnings below still look at the whole workload.
        self.items = list(workload.timing_sample())
        self.timed = (
            workload
            if len(self.items) == len(workload.items)
            else workload.evolve(items=tuple(self.items), labels=None)
        )
        self.mode: str = options["mode"]
        self.warnings: list[str] = []
        self.notes: list[str] = []  # hints from the core (GIL, thread safety)
        self.passes: dict[str, Any] = {}
        self.stopped = False
        self.machine = detect_machine()
        self.cores = self.machine.logical_cores or self.machine.cores or 1
        usable, reason = _gpu.cuda_status()
        wants_gpu = options["gpu"]
        on_cuda = usable and (wants_gpu or (wants_gpu is None and _gpu.pipeline_on_cuda(pipeline)))
        self.cuda = bool(on_cuda)
        self.gpu_reason = (
            reason
            if not usable
            else ("" if self.cuda else "no slot holds a CUDA module or tensor (gpu=True forces)")
        )
        if self.mode == "stream":
            from pipetune.core.runtime.stream_protocol import find_stream_stage

            if find_stream_stage(pipeline) is None:
                self.warnings.append(
                    "stream mode asked, but no stage implements serve(feed, ...): measured in "
                    "online mode instead (time to first output = completion)"
                )
                self.mode = "online"
        levels = options["sweep"]
        if levels is True:
            self.levels = tuple(workload.concurrency)
        elif levels is False:
            self.levels = ()
        else:
            self.levels = tuple(int(c) for c in levels)
            if not self.levels or any(c < 1 for c in self.levels):
                raise ConfigError("sweep levels must be integers >= 1")
        if self.mode == "stream":
            self.levels = ()  # the server owns its concurrency
        n_requests = self._requests()
        warm = min(len(self.items), WARMUP_ITEMS) * workload.warmup
        total = warm + n_requests * workload.repeats
        total += 100 * len(self.levels)
        total += 50 if options["gil_check"] and self.mode != "stream" else 0
        total += options["hot_items"] if options["hot_functions"] else 0
        total += options["layer_items"] if options["layers"] else 0
        total += options["memory_items"] if options["memory"] else 0
        total += 8 if self.cuda else 0
        self.units = _Units(options["progress"], total)

    def _requests(self) -> int:
        if self.mode != "offline" and self.workload.trace is not None:
            return len(self.workload.trace.arrivals_s)
        return len(self.items)

    def _announce(self, text: str) -> None:
        if self.o["on_pass"] is not None:
            self.o["on_pass"](text)

    # -- the passes --------------------------------------------------------------------------
    def run(self, pm: PipetunePluginManager) -> Profile:
        facts: dict[str, dict[str, Any]] = {}
        for plugin, value in pm.call_each("inspect_pipeline", pipeline=self.pipeline):
            facts.setdefault(plugin, {}).update(value)
        runs: list[RunResult] = []
        extras: dict[str, Any] = {}
        try:
            rate = self._warmup()
            runs = self._timing(rate, extras)
        except KeyboardInterrupt:
            self.stopped = True
        if self.stopped and not any(r.completed for r in runs):
            raise KeyboardInterrupt
        settings = runs[0].threads if runs else _threads.thread_settings()
        prof = summarize(self.pipeline, self.workload, runs, threads=settings)
        stage_stats = list(prof.stages)
        if not self.stopped:
            self._optional_passes(prof, runs, stage_stats, extras)
        machine = prof.machine
        knee = probes.find_knee(extras.get("points", ()))
        note = probes.knee_note(extras.get("points", ()), knee, machine)
        prof = prof.evolve(
            stages=tuple(stage_stats),
            concurrency=tuple(extras.get("points", ())),
            knee=knee,
            knee_note=note,
            hot_functions=extras.get("hot", {}),
            layers=extras.get("layers", {}),
            memory_peak_mb=extras.get("memory", {}).get("rss_peak_mb"),
            memory=extras.get("memory", {}),
            gpu=extras.get("gpu", {"available": False, "reason": self.gpu_reason}),
            passes=self.passes,
            stopped=self.stopped,
            workload={**prof.workload, **self._sizes()},
        )
        interrupted = (
            ["interrupted: the figures cover only what was measured before Ctrl-C"]
            if self.stopped
            else []
        )
        warnings = interrupted + self.warnings + self._realism(prof, runs)
        prof = prof.evolve(warnings=tuple(warnings))
        if self.o["chrome_trace"] is not None and runs and runs[0].spans is not None:
            from pipetune.core.runtime.trace import write_chrome_trace

            write_chrome_trace(runs[0], self.o["chrome_trace"], name=self.pipeline.name)
        observed = (runs[0].observed if runs else None) or Observations()
        # Interrupted: no plugin measurements (they may run the pipeline again).
        found = (
            ()
            if self.stopped
            else pm.call_each(
                "profile_pipeline",
                pipeline=self.pipeline,
                workload=self.workload,
                profile=prof,
                observed=observed,
            )
        )
        for plugin, value in found:
            facts.setdefault(plugin, {}).update(value)
        if self.workload.labels is not None and runs:
            prof = prof.evolve(accuracy=label_accuracy(pm, self.pipeline, self.workload, runs[0]))
        hints: list[str] = list(self.notes)
        for stage in () if self.stopped else self.pipeline.stages:
            for _, values in pm.call_each("stage_hints", stage=stage, pipeline=self.pipeline):
                hints.extend(str(value) for value in values)
        self.units.finish()
        return prof.evolve(facts=facts, hints=tuple(hints))

    def _warmup(self) -> float | None:
        """Warm-up runs; returns the offline rate measured (for an automatic online rate)."""
        workload = self.workload
        chunk = self.items[: max(1, min(len(self.items), WARMUP_ITEMS))]
        rate = None
        started = time.perf_counter()
        if workload.warmup:
            self._announce(f"warm-up ({workload.warmup} x {len(chunk)} inputs)")
        for _ in range(workload.warmup):
            reset_state(self.pipeline)  # warm state (a result cache) must not carry over
            advance = self.units.begin(len(chunk))
            result = run_offline(
                self.pipeline,
                chunk,
                on_error=self.o["on_error"],
                timeout_s=self.o["timeout_s"],
                progress=advance,
            )
            self.units.end(len(chunk))
            if result.stopped:
                raise KeyboardInterrupt
            rate = result.throughput_rps or rate
        self.passes["warmup"] = {
            "runs": workload.warmup,
            "inputs": len(chunk),
            "seconds": time.perf_counter() - started,
        }
        needs_rate = self.mode != "offline" and workload.rate is None and workload.trace is None
        if needs_rate:
            if rate is None:  # no warm-up: measure capacity on a few inputs
                result = run_offline(
                    self.pipeline, chunk, on_error=self.o["on_error"], timeout_s=self.o["timeout_s"]
                )
                rate = result.throughput_rps
            rate = max(rate or 1.0, 1e-3) * AUTO_RATE_FRACTION
            self.warnings.append(
                f"no arrival rate or trace given: offered {rate:.1f} req/s, "
                f"{AUTO_RATE_FRACTION:.0%} of the single-worker capacity measured in warm-up; "
                "set workload.rate (or a trace) to your real traffic"
            )
            return rate
        return workload.rate

    def _timing(self, rate: float | None, extras: dict[str, Any]) -> list[RunResult]:
        from pipetune.core.runtime.offline import run

        workload = self.workload
        runs: list[RunResult] = []
        n = self._requests()
        started = time.perf_counter()
        self._announce(f"timing ({workload.repeats} x {n} inputs, {self.mode})")
        rss = probes.PeakRSS() if self.o["memory"] else None
        cuda_peak = _gpu.cuda_peak_memory() if (self.cuda and self.o["memory"]) else None
        sampler = _gpu.NvmlSampler() if self.cuda else None
        # With one offline worker, the run-queue wait of the thread doing the work says how
        # busy the host was (the runtime measures it in that thread).
        waited: list[float] = []
        with contextlib.ExitStack() as stack:
            if rss is not None:
                stack.enter_context(rss)
            if sampler is not None:
                stack.enter_context(sampler)
            if cuda_peak is not None:
                cuda_peak[0]()
            try:
                for round_ in range(workload.repeats):
                    reset_state(self.pipeline)  # each measured pass starts cold
                    advance = self.units.begin(n)
                    options: dict[str, Any] = {
                        "on_error": self.o["on_error"],
                        "timeout_s": self.o["timeout_s"],
                        "observe": OBSERVE_ITEMS if round_ == 0 else 0,
                        "measure_cpu": True,
                        "spans": self.o["chrome_trace"] is not None and round_ == 0,
                        "progress": advance,
                        "workers": self.o["workers"],
                    }
                    if self.cuda and self.o["workers"] == 1 and self.mode != "stream":
                        options["instrument"] = _gpu.CudaStageTimer(n, len(self.pipeline))
                    if self.mode != "offline":
                        options.update(rate=rate, seed=workload.seed + round_)
                    if self.mode == "online":
                        options.update(
                            max_batch=self.o["max_batch"], max_wait_ms=self.o["max_wait_ms"]
                        )
                    elif self.mode == "offline" and self.o["max_batch"] > 1:
                        options["batch_size"] = self.o["max_batch"]  # served in batches
                    result = run(self.pipeline, self.timed, mode=self.mode, **options)
                    runs.append(result)
                    if self.mode == "offline" and result.runqueue_wait_s is not None:
                        waited.append(result.runqueue_wait_s)
                    self.units.end(n)
                    if result.stopped:
                        self.stopped = True
                        break
            except KeyboardInterrupt:
                self.stopped = True
        wall = time.perf_counter() - started
        wait_share = None
        if waited and len(waited) == len(runs) and wall > 0:
            wait_share = min(1.0, sum(waited) / wall)
            if wait_share > BUSY_HOST_WAIT_SHARE:
                self.warnings.append(
                    f"the host was busy: this process waited for a CPU {wait_share:.0%} of the "
                    "timing pass (run-queue wait); wall times are inflated and CPU/wall "
                    "understates CPU-bound stages (the GIL check corrects for it). Re-measure "
                    "on a quiet machine before trusting absolute figures"
                )
        memory: dict[str, Any] = rss.summary() if rss is not None else {}
        if cuda_peak is not None:
            memory["cuda_peak_mb"] = cuda_peak[1]()
        extras["memory"] = memory
        gpu: dict[str, Any] = {"available": self.cuda, "reason": self.gpu_reason}
        if self.cuda:
            gpu["device"] = self.machine.gpu
            gpu["nvml"] = sampler.summary() if sampler is not None else None
        extras["gpu"] = gpu
        self.passes["timing"] = {
            "runs": len(runs),
            "inputs": n,
            "mode": self.mode,
            "workers": self.o["workers"],
            "seconds": wall,
            "runqueue_wait_share": wait_share,
        }
        return runs

    def _optional_passes(
        self,
        prof: Profile,
        runs: list[RunResult],
        stage_stats: list[StageStats],
        extras: dict[str, Any],
    ) -> None:
        passes: list[tuple[str, Callable[[], None]]] = []
        if self.o["gil_check"] and self.mode != "stream":
            passes.append(("gil", lambda: self._gil(runs, stage_stats)))
        if self.levels:
            passes.append(("sweep", lambda: self._sweep(prof, extras)))
        if self.o["hot_functions"]:
            passes.append(("hot_functions", lambda: self._hot(extras)))
        if self.o["layers"]:
            passes.append(("layers", lambda: self._layers(extras)))
        if self.o["memory"]:
            passes.append(("memory", lambda: self._heap(extras)))
        if self.cuda:
            passes.append(("transfers", lambda: self._transfers(extras)))
        for name, body in passes:
            started = time.perf_counter()
            try:
                body()
            except KeyboardInterrupt:
                self.stopped = True
                self.passes.setdefault(name, {})["stopped"] = True
                return
            except PipetuneError as exc:
                self.passes[name] = {"error": str(exc)}
                self.warnings.append(f"the {name} pass failed: {exc}")
            except Exception as exc:  # a probe must never lose the timing pass's results
                message = f"{type(exc).__name__}: {exc}"
                self.passes[name] = {"error": message}
                self.warnings.append(f"the {name} pass failed: {message}")
            entry = self.passes.setdefault(name, {})
            entry.setdefault("seconds", time.perf_counter() - started)

    def _gil(self, runs: list[RunResult], stage_stats: list[StageStats]) -> None:
        observed = runs[0].observed if runs else None
        checked: dict[str, Any] = {}
        size = 50
        advance = self.units.begin(size)
        candidates = [
            (i, s)
            for i, s in enumerate(stage_stats[: len(self.pipeline)])
            if s.share >= GIL_CHECK_MIN_SHARE
        ]
        if candidates:
            self._announce(f"GIL check ({len(candidates)} stage(s), 1 vs 2 threads)")
        for position, (column, stats) in enumerate(candidates, start=1):
            stage = self.pipeline.stages[column]
            inputs = observed.inputs_of(stage.name)[:64] if observed is not None else []
            if self.cores < 2:
                evidence: dict[str, Any] = {"skipped": "one CPU: two threads cannot overlap"}
            elif not inputs:
                evidence = {"skipped": "no recorded inputs for this stage"}
            elif stats.p50_ms / 1000 > GIL_CHECK_MAX_CALL_S:
                evidence = {"skipped": f"a call takes {stats.p50_ms:.0f} ms: too slow to check"}
            else:
                reset_state(self.pipeline)  # every probe pass starts cold, like timing
                evidence = probes.scaling_check(stage, inputs, self.o["gil_budget_s"])
            scaling = evidence.get("scaling")
            # The check's own CPU ratio is corrected for the host's run-queue wait; the
            # timing pass's is corrected (to first order) by the pass's overall wait.
            ratio = evidence.get("cpu_ratio") or self._corrected(stats.cpu_ratio)
            verdict = probes.classify_gil(ratio, scaling, self.cores)
            stage_stats[column] = stats.evolve(holds_gil=verdict, gil_scaling=scaling)
            checked[stage.name] = evidence
            if "error" in evidence:
                self.notes.append(
                    f"stage {stage.name!r} failed when called from two threads at once "
                    f"({evidence['error']}): it is not thread-safe, so thread-level parallelism "
                    "or dynamic batching across threads needs a lock or one instance per thread"
                )
            if verdict:
                self.notes.append(
                    f"stage {stage.name!r} holds the GIL: it keeps one core busy "
                    f"(CPU/wall {ratio:.2f}) and two threads run it only "
                    f"{scaling:.2f}x as fast as one. Threads will not speed it up: use "
                    "processes (executor='process' with a factory) or move the work to "
                    "native code that releases the GIL"
                )
            advance(position * size // len(candidates))
        # Stages not checked keep what CPU time alone can say.
        for column, stats in enumerate(stage_stats[: len(self.pipeline)]):
            if stats.holds_gil is None and stats.name not in checked:
                verdict = probes.classify_gil(self._corrected(stats.cpu_ratio), None, self.cores)
                stage_stats[column] = stats.evolve(holds_gil=verdict)
        self.units.end(size)
        self.passes["gil"] = {
            "stages": checked,
            "criterion": (
                "CPU/wall < 0.5 (waits) or > 1.5 (native threads): no; otherwise 2 threads "
                f"< {probes.GIL_SCALING_THRESHOLD}x one thread's throughput: yes"
            ),
            "cores": self.cores,
        }

    def _corrected(self, ratio: float | None) -> float | None:
        """A timing-pass CPU/wall ratio over the time the process could run (wall minus
        the pass's run-queue wait share), so a busy host does not read as waiting."""
        wait = self.passes.get("timing", {}).get("runqueue_wait_share")
        if ratio is None or not wait or wait >= 0.95:
            return ratio
        return ratio / (1.0 - wait)

    def _sweep(self, prof: Profile, extras: dict[str, Any]) -> None:
        points: list[ConcurrencyPoint] = []
        budget = self.o["sweep_budget_s"]
        self._announce(f"concurrency sweep {list(self.levels)} ({budget:g} s per level)")
        errors: dict[int, int] = {}
        for level in self.levels:
            advance = self.units.begin(100)
            if self.mode == "offline" and level == self.o["workers"] and prof.samples:
                # The timing pass already measured this level, on more inputs: reuse it.
                points.append(
                    ConcurrencyPoint(
                        concurrency=level,
                        throughput_rps=prof.throughput_rps,
                        p50_ms=prof.latency_ms.p50,
                        p95_ms=prof.latency_ms.p95,
                        p99_ms=prof.latency_ms.p99,
                        samples=prof.samples,
                        errors=prof.errors.count,
                    )
                )
                self.units.end(100)
                continue
            started = time.perf_counter()
            # Inputs (cycled) for every worker to stay busy past the time box, which ends
            # the level; at least a few per worker even when one input outlasts the box.
            per_input = max(prof.latency_ms.mean / 1000, 1e-5)
            wanted = min(MAX_SWEEP_INPUTS, int(2 * level * budget / per_input) + 1)
            cycled = [self.items[i % len(self.items)] for i in range(max(wanted, 4 * level))]

            def tick(
                _: int, started: float = started, advance: Callable[[int], None] = advance
            ) -> None:
                advance(int(99 * min(1.0, (time.perf_counter() - started) / budget)))

            reset_state(self.pipeline)
            result = run_offline(
                self.pipeline,
                cycled,
                workers=level,
                on_error="skip",
                timeout_s=self.o["timeout_s"],
                max_duration_s=budget,
                min_items=2 * level,
                progress=tick,
            )
            self.units.end(100)
            ok = result.ok_mask
            pct = percentiles_ms(result.latency_s[ok])
            points.append(
                ConcurrencyPoint(
                    concurrency=level,
                    throughput_rps=result.throughput_rps,
                    p50_ms=pct["p50"],
                    p95_ms=pct["p95"],
                    p99_ms=pct["p99"],
                    samples=int(ok.sum()),
                    errors=len(result.errors),
                )
            )
            if result.errors:
                errors[level] = len(result.errors)
                if level > 1 and prof.errors.count == 0:
                    first = result.errors[0]
                    self.notes.append(
                        f"stage {first.stage!r} raised with {level} concurrent workers "
                        f"({first.error}); check that it is thread-safe"
                    )
            if result.stopped:
                raise KeyboardInterrupt
        extras["points"] = points
        self.passes["sweep"] = {
            "levels": list(self.levels),
            "budget_s_per_level": budget,
            "errors": errors,
            "kind": "closed loop, worker threads",
            "reused_timing_pass_for": self.o["workers"] if self.mode == "offline" else None,
        }

    def _hot(self, extras: dict[str, Any]) -> None:
        limit = self.o["hot_items"]
        self._announce(f"hot functions (cProfile, up to {limit} inputs)")
        advance = self.units.begin(limit)
        reset_state(self.pipeline)
        hot, used = probes.hot_functions(
            self.pipeline,
            self.items,
            max_items=limit,
            budget_s=self.o["pass_budget_s"],
            on_item=advance,
        )
        self.units.end(limit)
        extras["hot"] = {name: funcs for name, funcs in hot.items() if funcs}
        self.passes["hot_functions"] = {"inputs": used, "tool": "cProfile (self time)"}

    def _layers(self, extras: dict[str, Any]) -> None:
        limit = self.o["layer_items"]
        if not any(probes.torch_modules(stage) for stage in self.pipeline.stages):
            self.passes["layers"] = {"skipped": "no torch module in any stage slot"}
            self.units.end(limit)
            return
        self._announce(f"per-layer time (forward hooks, up to {limit} inputs)")
        advance = self.units.begin(limit)
        reset_state(self.pipeline)
        found, used = probes.layer_times(
            self.pipeline,
            self.items,
            max_items=limit,
            budget_s=self.o["pass_budget_s"],
            on_item=advance,
        )
        self.units.end(limit)
        extras["layers"] = found
        self.passes["layers"] = {"inputs": used, "stages": sorted(found)}

    def _heap(self, extras: dict[str, Any]) -> None:
        limit = self.o["memory_items"]
        self._announce(f"Python heap per stage (tracemalloc, up to {limit} inputs)")
        self.units.begin(limit)
        reset_state(self.pipeline)
        peaks, used = probes.python_heap_by_stage(
            self.pipeline, self.items, max_items=limit, budget_s=self.o["pass_budget_s"]
        )
        self.units.end(limit)
        memory = dict(extras.get("memory", {}))
        memory["python_peak_mb_by_stage"] = peaks
        memory["python_peak_note"] = (
            "peak Python-heap growth inside each stage (tracemalloc): numpy arrays are "
            "traced; torch tensors and other native allocations are not"
        )
        extras["memory"] = memory
        self.passes["memory"] = {"inputs": used, "tool": "tracemalloc"}

    def _transfers(self, extras: dict[str, Any]) -> None:
        self._announce("CPU<->GPU transfers (torch profiler)")
        self.units.begin(8)
        reset_state(self.pipeline)
        figures = _gpu.transfer_times(self.pipeline, self.items[:8])
        self.units.end(8)
        gpu = dict(extras.get("gpu", {}))
        gpu["transfers"] = figures
        extras["gpu"] = gpu
        self.passes["transfers"] = {"inputs": min(8, len(self.items))}

    # -- warnings ----------------------------------------------------------------------------
    def _sizes(self) -> dict[str, Any]:
        summary = probes.size_summary(list(self.workload.items))
        return {"sizes": summary} if summary else {}

    def _realism(self, prof: Profile, runs: list[RunResult]) -> list[str]:
        return workload_warnings(
            prof,
            n_items=len(self.workload.items),
            sizes=probes.size_summary(list(self.workload.items)),
            levels=len(self.levels) if self.levels else 1,
            timing_s=sum(r.wall_s for r in runs),
        )


def label_accuracy(
    pm: PipetunePluginManager, pipeline: Pipeline, workload: Workload, run: RunResult
) -> dict[str, Any]:
    """Accuracy of ``run``'s outputs against the workload's labels, by the plugin that
    owns the pipeline's output kind (its comparison, given the labels)."""
    labels = workload.labels
    assert labels is not None
    timed = _timed_indices(workload)
    rows = run.item_index if run.item_index is not None else range(len(run.outputs))
    outputs, truth = [], []
    for row, item in enumerate(rows):
        if row < len(run.ok) and run.ok[row]:
            outputs.append(run.outputs[row])
            truth.append(labels[timed[int(item)]])
    if not outputs:
        return {"reason": "no input finished, so nothing could be judged against its label"}
    from pipetune.core.kernel import dispatch
    from pipetune.core.kernel.errors import PluginError

    try:
        found = dispatch.compare_outputs(pm, pipeline.output_kind, outputs, outputs, truth)
    except PluginError:
        found = None
    details = dict(found.details) if found is not None and found.details else {}
    value = details.get("baseline_accuracy")
    if not isinstance(value, int | float):
        return {
            "reason": f"labels were given, but no plugin measures accuracy for output kind "
            f"{pipeline.output_kind!r}"
        }
    return {"metric": "accuracy", "value": float(value), "n": len(outputs)}


def _timed_indices(workload: Workload) -> list[int]:
    """The workload index of each input the timing pass ran (see ``timing_sample``)."""
    n = len(workload.items)
    if workload.timing_items is None or workload.timing_items >= n:
        return list(range(n))
    step = n / workload.timing_items
    return [int(i * step) for i in range(workload.timing_items)]


def workload_warnings(
    prof: Profile,
    *,
    n_items: int,
    sizes: dict[str, Any] | None,
    levels: int,
    timing_s: float,
) -> list[str]:
    """Why the profile may not describe production, in sentences."""
    found: list[str] = []
    if sizes is not None and sizes["inputs"] >= 2 and sizes["distinct"] == 1:
        if sizes["measure"] == "elements":  # arrays: fixed-size features are often real
            found.append(
                f"every input has the same size ({sizes['min']:g} elements): right for "
                "fixed-size features (embeddings), but if real inputs vary (texts, images, "
                "audio), profile with a sample of them: padding, truncation and batching "
                "gains depend on the spread"
            )
        else:
            found.append(
                f"every input has the same size ({sizes['measure']} {sizes['min']:g}): real "
                "traffic varies, and padding, truncation, batching and caching gains depend on "
                "the spread; profile with a sample of real inputs"
            )
    if levels < 2 and prof.mode != "stream":
        found.append(
            f"only one concurrency level measured: set workload.concurrency (e.g. (1, 2, 4, "
            f"{max(8, 2 * (prof.machine.cores or 1))})) to see where throughput stops scaling"
        )
    for label, q in (("P99", 99), ("P95", 95)):
        need = min_samples_for_percentile(q)
        if prof.samples < need:
            found.append(
                f"{label} rests on {prof.samples} samples; {need} are needed for 10 samples "
                f"beyond it: treat it as indicative (more inputs or repeats)"
            )
            break
    if n_items < TINY_WORKLOAD:
        found.append(
            f"tiny workload: {n_items} distinct inputs (at least {TINY_WORKLOAD} recommended); "
            "caches look better and variance worse than in production"
        )
    if 0 < timing_s < SHORT_TIMING_S:
        found.append(
            f"the timing pass took {timing_s * 1000:.0f} ms: timer noise, caches and garbage "
            "collection weigh heavily; use more inputs or repeats"
        )
    if prof.errors.count:
        found.append(
            f"{prof.errors.count} input(s) failed and were skipped; the figures exclude them "
            f"({', '.join(f'{k}: {v}' for k, v in prof.errors.by_stage.items())})"
        )
    online = prof.runtime.get("online") if prof.runtime else None
    if online:
        if online.get("overloaded"):
            found.append(online.get("verdict", "overloaded"))
        scheduled = online.get("scheduled_rps") or 0
        submitted = online.get("submitted_rps") or 0
        if scheduled and submitted < 0.9 * scheduled:
            found.append(
                f"the load generator fell behind: {submitted:.1f} req/s submitted vs "
                f"{scheduled:.1f} scheduled (a stage holding the GIL starves it); latencies "
                "count from the scheduled arrival, so they include that lag"
            )
    return found


# -- summaries -----------------------------------------------------------------------------


def summarize(
    pipeline: Pipeline,
    workload: Workload,
    runs: list[RunResult],
    *,
    threads: dict[str, Any] | None = None,
) -> Profile:
    """Build a :class:`Profile` from measured runs (any mode; the first run's mode).

    Stage shares are of the time inside stages plus glue (``other``), over inputs that
    completed; in online and stream modes that is service time, and queue wait is reported
    in ``runtime``. Shares always sum to 1: with no completed input, ``other`` holds 1.
    """
    k = len(pipeline)
    ok_rows = [r.stage_s[r.ok_mask] for r in runs]
    stage_s = np.concatenate(ok_rows) if ok_rows else np.zeros((0, k + 1))
    latency = np.concatenate([r.latency_s[r.ok_mask] for r in runs]) if runs else np.zeros(0)
    wall = sum(r.wall_s for r in runs)
    completed = sum(r.completed for r in runs)
    totals = stage_s.sum(axis=0) if len(stage_s) else np.zeros(k + 1)
    grand = float(totals.sum())
    shares = totals / grand if grand > 0 else np.zeros(k + 1)
    shares[-1] = 1.0 - float(shares[:-1].sum())  # exact sum to 1; 'other' absorbs rounding
    shares[-1] = max(0.0, shares[-1])
    names = [*pipeline.stage_names, "other"]
    kinds = [stage.kind for stage in pipeline.stages] + ["other"]
    cpu, cpu_base = _cpu_totals(runs, k)
    gpu_ms = _gpu_medians(runs, k)
    stages = []
    for column, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        col = stage_s[:, column] if len(stage_s) else np.zeros(1)
        ratio = None
        if column < k and cpu is not None and cpu_base[column] > 0:
            ratio = float(cpu[column] / cpu_base[column])
        pct = percentiles_ms(col)
        stages.append(
            StageStats(
                name=name,
                kind=kind,
                share=float(shares[column]),
                p50_ms=pct["p50"],
                mean_ms=pct["mean"],
                p95_ms=pct["p95"],
                p99_ms=pct["p99"],
                max_ms=pct["max"],
                cpu_ratio=ratio,
                calls=len(stage_s),
                gpu_ms=gpu_ms[column] if column < k else None,
            )
        )
    errors = [e for r in runs for e in r.errors]
    by_stage: dict[str, int] = {}
    for error in errors:
        by_stage[error.stage] = by_stage.get(error.stage, 0) + 1
    if threads is None:
        threads = runs[0].threads if runs else _threads.thread_settings()
    mode = runs[0].mode if runs else workload.mode
    return Profile(
        pipeline=pipeline.name,
        mode=mode,
        samples=len(latency),
        throughput_rps=completed / wall if wall > 0 else 0.0,
        latency_ms=LatencyStats(**percentiles_ms(latency)),
        stages=tuple(stages),
        machine=detect_machine(threads),
        stage_ms=tuple(tuple(float(v * 1000) for v in row) for row in stage_s),
        errors=ErrorSummary(
            count=len(errors),
            by_stage=by_stage,
            examples=tuple(f"input #{e.index} in {e.stage}: {e.error}" for e in errors[:5]),
        ),
        workload=workload.describe(),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        runtime=runtime_summary(runs),
        stopped=any(r.stopped for r in runs),
    )


def _cpu_totals(runs: list[RunResult], k: int) -> tuple[np.ndarray | None, np.ndarray]:
    """CPU seconds per stage and the wall seconds they compare with (same rows)."""
    measured = [r for r in runs if r.cpu_s is not None]
    if not measured:
        return None, np.zeros(k)
    cpu = np.sum([r.cpu_s for r in measured if r.cpu_s is not None], axis=0)
    base = np.sum([_stage_wall(r, k) for r in measured], axis=0)
    return cpu, base


def _stage_wall(run: RunResult, k: int) -> np.ndarray:
    """Wall seconds per stage. The inputs of a batch share its time in ``stage_s``: count
    each batch once (its rows have the same start and end), as its CPU time is counted."""
    rows = run.stage_s[:, :k]
    if not run.batch_sizes or run.start_s is None or run.done_s is None:
        return rows.sum(axis=0)
    _, first = np.unique(np.stack([run.start_s, run.done_s], axis=1), axis=0, return_index=True)
    return rows[first].sum(axis=0)


def _gpu_medians(runs: list[RunResult], k: int) -> list[float | None]:
    rows = [r.gpu_stage_s[r.ok_mask] for r in runs if r.gpu_stage_s is not None]
    if not rows:
        return [None] * k
    data = np.concatenate(rows)
    medians: list[float | None] = []
    for column in range(k):
        values = data[:, column]
        values = values[~np.isnan(values)]
        medians.append(float(np.median(values) * 1000) if values.size else None)
    return medians


def runtime_summary(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The mode-specific figures of a set of runs, pooled (``Profile.runtime``)."""
    if not runs:
        return {}
    first = runs[0]
    summary: dict[str, Any] = {
        "mode": first.mode,
        "workers": first.workers,
        "executor": first.executor,
        "runs": len(runs),
    }
    if first.executor == "process":
        summary["startup_s"] = [r.startup_s for r in runs]
    online = [r.online for r in runs if r.online is not None]
    if online:
        queue = np.concatenate([r.queue_s[r.ok_mask] for r in runs if r.online is not None])
        worst = next((o for o in online if o.overloaded), online[-1])
        summary["online"] = {
            "source": online[0].source,
            "requests_per_run": online[0].requests,
            "offered_rps": online[0].offered_rps,
            "scheduled_rps": float(np.mean([o.scheduled_rps for o in online])),
            "submitted_rps": float(np.mean([o.submitted_rps for o in online])),
            "completed_rps": float(np.mean([o.completed_rps for o in online])),
            "queue_ms": percentiles_ms(queue),
            "lag_ms_p99": float(max(o.lag_ms["p99"] for o in online)),
            "max_queue_depth": int(max(o.max_queue_depth for o in online)),
            "utilization": float(np.mean([o.utilization for o in online])),
            "max_batch": online[0].max_batch,
            "max_wait_ms": online[0].max_wait_ms,
            "mean_batch": float(np.mean([o.mean_batch for o in online])),
            "overloaded": any(o.overloaded for o in online),
            "verdict": worst.verdict,
            "per_run": [o.to_dict() for o in online],
        }
    streams = [r.stream for r in runs if r.stream is not None]
    if streams:
        ok_runs = [r for r in runs if r.stream is not None and r.first_output_s is not None]
        ttft = (
            np.concatenate(
                [(r.first_output_s - r.arrival_s)[r.ok_mask] for r in ok_runs]  # type: ignore[operator]
            )
            if ok_runs
            else np.zeros(0)
        )
        summary["stream"] = {
            "protocol": 1,
            "requests_per_run": streams[0].requests,
            "offered_rps": streams[0].offered_rps,
            "ttft_ms": percentiles_ms(ttft),
            "per_output_ms": percentiles_ms(
                np.concatenate([r.output_gaps_s for r in runs if r.output_gaps_s is not None])
            ),
            "completion_ms": percentiles_ms(
                np.concatenate([r.latency_s[r.ok_mask] for r in runs if r.stream is not None])
            ),
            "outputs_per_s": float(np.mean([s.outputs_per_s for s in streams])),
            "max_in_flight": int(max(s.max_in_flight for s in streams)),
            "mean_in_flight": float(np.mean([s.mean_in_flight for s in streams])),
            "per_run": [s.to_dict() for s in streams],
        }
    return summary


__all__ = ["OBSERVE_ITEMS", "StageError", "profile", "runtime_summary", "summarize"]
