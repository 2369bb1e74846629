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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.errors import ConfigError, StageError
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.results import Profile, StageStats
from pipetune.core.kernel.state import reset_state
from pipetune.core.measure import gpu as _gpu
from pipetune.core.measure import probes
from pipetune.core.measure.label_accuracy import label_accuracy
from pipetune.core.measure.load import BUSY_RUN_QUEUE_WAIT
from pipetune.core.measure.profile_passes import ProfilePasses
from pipetune.core.measure.profile_summary import summarize
from pipetune.core.measure.profile_warnings import workload_warnings
from pipetune.core.measure.progress_units import ProgressUnits
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.result import OnError, RunResult
from pipetune.core.runtime.serving import ServingOptions

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

#: How many inputs' stage inputs/outputs plugins get to observe.
OBSERVE_ITEMS = 256
#: Warm-up runs use at most this many inputs.
WARMUP_ITEMS = 16
#: Run-queue wait above this share of the timing pass means the host was busy (the same
#: threshold the comparisons and reports use).
BUSY_HOST_WAIT_SHARE = BUSY_RUN_QUEUE_WAIT
#: Without a rate or trace, online/stream profiles offer this fraction of measured capacity.
AUTO_RATE_FRACTION = 0.7
#: The parameters of :func:`profile` that are not keyword options of the session.
_NOT_OPTIONS = ("pipeline", "workload", "pm", "threads")


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
    # The keyword options, by name, as the session reads them: here, before any other
    # name is bound, ``locals()`` holds exactly the parameters.
    options = {name: value for name, value in locals().items() if name not in _NOT_OPTIONS}
    from pipetune.core.kernel.manager import get_plugin_manager

    workload.require_items()
    _serve_as_declared(pipeline, options)
    options["mode"] = mode = mode or workload.mode
    if mode not in ("offline", "online", "stream"):
        raise ConfigError(f"mode must be offline, online or stream, not {mode!r}")
    pm = pm or get_plugin_manager()
    _threads.use_plugin_pools(pm)
    pin = _threads.pin_threads(threads) if threads is not None else contextlib.nullcontext()
    with pin:
        return _Session(pipeline, workload, **options).run(pm)


def _serve_as_declared(pipeline: Pipeline, options: dict[str, Any]) -> None:
    """A pipeline that asks to be served in batches (meta["serving"], set by a dynamic
    batching change) is profiled the way it will be served: its batch size and batching
    delay replace the defaults (``max_batch=1``, ``max_wait_ms=0``) in ``options``."""
    serving = ServingOptions.of(pipeline)
    if options["max_batch"] == 1 and serving.batch_size > 1:
        options["max_batch"] = serving.batch_size
    if options["max_wait_ms"] == 0.0 and serving.max_delay_ms > 0:
        options["max_wait_ms"] = serving.max_delay_ms


class _Session(ProfilePasses):
    """One profile: the passes, what they measured, and the warnings (the bounded passes
    after timing are :class:`~pipetune.core.measure.profile_passes.ProfilePasses`)."""

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
        self.mode = options["mode"]
        self.warnings = []
        self.notes = []  # hints from the core (GIL, thread safety)
        self.passes = {}
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
        self.levels = _sweep_levels(options["sweep"], workload)
        if self.mode == "stream":
            self.levels = ()  # the server owns its concurrency
        self.units = ProgressUnits(options["progress"], self._total_units())

    def _total_units(self) -> int:
        """The work units of every pass the options ask for (about one per input)."""
        options, workload = self.o, self.workload
        warm = min(len(self.items), WARMUP_ITEMS) * workload.warmup
        total = warm + self._requests() * workload.repeats
        total += 100 * len(self.levels)
        total += 50 if options["gil_check"] and self.mode != "stream" else 0
        total += options["hot_items"] if options["hot_functions"] else 0
        total += options["layer_items"] if options["layers"] else 0
        total += options["memory_items"] if options["memory"] else 0
        total += 8 if self.cuda else 0
        return total

    def _requests(self) -> int:
        if self.mode != "offline" and self.workload.trace is not None:
            return len(self.workload.trace.arrivals_s)
        return len(self.items)

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
        prof = self._with_passes(prof, runs, stage_stats, extras)
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

    def _with_passes(
        self,
        prof: Profile,
        runs: list[RunResult],
        stage_stats: list[StageStats],
        extras: dict[str, Any],
    ) -> Profile:
        """The timing pass's profile with what the later passes found, the pass records
        and the warnings."""
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
        return prof.evolve(warnings=tuple(warnings))

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
            self._timed_rounds(n, rate, runs, waited)
        wall = time.perf_counter() - started
        wait_share = self._busy_host_share(waited, len(runs), wall)
        memory: dict[str, Any] = rss.summary() if rss is not None else {}
        if cuda_peak is not None:
            memory["cuda_peak_mb"] = cuda_peak[1]()
        extras["memory"] = memory
        extras["gpu"] = self._gpu_figures(sampler)
        self.passes["timing"] = {
            "runs": len(runs),
            "inputs": n,
            "mode": self.mode,
            "workers": self.o["workers"],
            "seconds": wall,
            "runqueue_wait_share": wait_share,
        }
        return runs

    def _timed_rounds(
        self, n: int, rate: float | None, runs: list[RunResult], waited: list[float]
    ) -> None:
        """The ``workload.repeats`` measured runs, each from cold state, into ``runs`` (and
        each offline run's run-queue wait into ``waited``); Ctrl-C stops them."""
        from pipetune.core.runtime.offline import run

        try:
            for round_ in range(self.workload.repeats):
                reset_state(self.pipeline)  # each measured pass starts cold
                advance = self.units.begin(n)
                options = self._run_options(round_, n, rate, advance)
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

    def _run_options(
        self, round_: int, n: int, rate: float | None, advance: Callable[[int], None]
    ) -> dict[str, Any]:
        """The runtime's options for measured run ``round_`` in the profile's mode."""
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
            options.update(rate=rate, seed=self.workload.seed + round_)
        if self.mode == "online":
            options.update(max_batch=self.o["max_batch"], max_wait_ms=self.o["max_wait_ms"])
        elif self.mode == "offline" and self.o["max_batch"] > 1:
            options["batch_size"] = self.o["max_batch"]  # served in batches
        return options

    def _busy_host_share(self, waited: list[float], runs: int, wall: float) -> float | None:
        """The share of the timing pass the working thread waited for a CPU (known when
        every run measured it), with a warning when the host was busy."""
        if not (waited and len(waited) == runs and wall > 0):
            return None
        wait_share = min(1.0, sum(waited) / wall)
        if wait_share > BUSY_HOST_WAIT_SHARE:
            self.warnings.append(
                f"the host was busy: this process waited for a CPU {wait_share:.0%} of the "
                "timing pass (run-queue wait); wall times are inflated and CPU/wall "
                "understates CPU-bound stages (the GIL check corrects for it). Re-measure "
                "on a quiet machine before trusting absolute figures"
            )
        return wait_share

    def _gpu_figures(self, sampler: _gpu.NvmlSampler | None) -> dict[str, Any]:
        """``Profile.gpu`` as the timing pass measured it (device, NVML utilization)."""
        gpu: dict[str, Any] = {"available": self.cuda, "reason": self.gpu_reason}
        if self.cuda:
            gpu["device"] = self.machine.gpu
            gpu["nvml"] = sampler.summary() if sampler is not None else None
        return gpu

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


def _sweep_levels(levels: bool | Sequence[int], workload: Workload) -> tuple[int, ...]:
    """The concurrency levels to sweep: the workload's (``True``), none (``False``), or
    these."""
    if levels is True:
        return tuple(workload.concurrency)
    if levels is False:
        return ()
    chosen = tuple(int(c) for c in levels)
    if not chosen or any(c < 1 for c in chosen):
        raise ConfigError("sweep levels must be integers >= 1")
    return chosen


__all__ = ["OBSERVE_ITEMS", "StageError", "profile"]
