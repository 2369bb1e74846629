"""The serving runtime shared by the profiler, the validator and production start-up.

Three modes, one result type (:class:`RunResult`):

* **offline** (:func:`run_offline`, this module): a batch job. Inputs go through the pipeline
  as fast as it takes them: one input (or one batch) at a time in the calling thread, on
  ``workers`` threads, or on ``workers`` processes built by an importable factory. Reports
  throughput and the time each input took.
* **online** (:func:`pipetune.core.runtime.online.run_online`): open-loop arrivals (Poisson at a
  rate, or a recorded trace) into a queue served by worker threads, with an optional
  max-delay batcher. Latency is completion minus arrival: what users see, queueing included.
* **stream** (:func:`pipetune.core.runtime.stream.run_stream`): generation. Requests arrive over
  time and a stream-capable stage serves them together (continuous batching); reports time
  to first output, per-output latency and completion latency.

:func:`run` picks the mode from a :class:`~pipetune.core.kernel.model.Workload`.

Every run records per input and per stage the wall time spent (``stage_s``), the glue
between stages (the last, ``other``, column), when each input started and finished, and,
when asked, CPU time per stage (for GIL detection) and spans (for a Chrome trace). Each run
re-applies the active thread pin (:mod:`pipetune.core.runtime.threads`) and records the thread
settings in force, so baseline and candidate runs are comparable.

Inline and thread runs serve through the shared serving loop
(:class:`~pipetune.core.runtime.serving_loop.ServingLoop`); what is theirs here is where
a worker's next inputs come from (:class:`_ItemChunks`, a counter over the items). The
process executor (spawned workers that build the pipeline from an importable factory, and
why) is :mod:`pipetune.core.runtime.processes`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pipetune.core.kernel import control as _control
from pipetune.core.kernel import workers as _workers
from pipetune.core.kernel.errors import ConfigError, PipelineError, short_repr
from pipetune.core.kernel.model import Pipeline
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.processes import _run_processes, resolve_factory
from pipetune.core.runtime.recorder import _Recorder
from pipetune.core.runtime.result import ItemError, OnError, RunResult, Span, StageInstrument
from pipetune.core.runtime.serving_loop import ServingLoop
from pipetune.core.runtime.supervise import STOP_GRACE_S

if TYPE_CHECKING:
    from pipetune.core.kernel.model import Workload

Executor = Literal["thread", "process"]


# -- offline ---------------------------------------------------------------------------


def run_offline(
    pipeline: Pipeline,
    items: Sequence[Any],
    *,
    batch_size: int = 1,
    on_error: OnError = "stop",
    timeout_s: float | None = None,
    observe: int = 0,
    measure_cpu: bool = False,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
    executor: Executor = "thread",
    factory: str | None = None,
    spans: bool = False,
    max_duration_s: float | None = None,
    min_items: int = 1,
    instrument: StageInstrument | None = None,
) -> RunResult:
    """Run ``items`` through ``pipeline`` as a batch job.

    Args:
        batch_size: inputs per call; > 1 uses each stage's ``batch_fn`` (stages without one
            map ``fn``). Per-input times within a batch are the batch's time.
        on_error: ``stop`` raises :class:`StageError` naming the stage, the input and the
            exception; ``skip`` records the error and goes on.
        timeout_s: the longest one input (one batch) may take through the pipeline; an
            input over it raises :class:`StageTimeout` naming the stage it is in and the
            input (the stuck worker is abandoned). ``None``: the deadline of the current
            control scope (:mod:`pipetune.core.kernel.control`), if any.
        observe: keep the inputs and outputs of each stage for the first ``observe`` inputs
            (threads only).
        measure_cpu: also record CPU time per stage (for GIL detection): process CPU time
            with one worker, the calling thread's CPU time with several.
        progress: called with the number of inputs done so far (from worker threads when
            ``workers > 1``).
        workers: inputs processed concurrently (closed loop: each worker takes the next
            input as soon as it is free).
        executor: ``thread`` (default) or ``process``; processes need ``factory``.
        factory: ``"package.module:function"`` or ``"path/file.py:function"`` returning the
            pipeline (or naming a module-level Pipeline); each spawned child builds its own.
        spans: record a :class:`Span` per stage call (for :mod:`pipetune.core.runtime.trace`).
        max_duration_s: stop taking new inputs after this long (once ``min_items`` have
            started); the result then covers the inputs that ran. For time-boxed sweeps.
        instrument: per-stage hooks (CUDA event timing); single thread only.

    Ctrl-C (or the control scope's token being cancelled) stops the run after the
    current input(s), cancels the token, and returns what was measured with
    ``stopped=True``; a run asked to start once the token is cancelled raises
    :class:`~pipetune.core.kernel.control.Cancelled`.
    """
    _control.check()
    options = _Options(
        batch_size=batch_size,
        on_error=on_error,
        timeout_s=_control.item_timeout(timeout_s),
        observe=observe,
        measure_cpu=measure_cpu,
        progress=progress,
        workers=workers,
        executor=executor,
        factory=factory,
        spans=spans,
        max_duration_s=max_duration_s,
        min_items=min_items,
        instrument=instrument,
    )
    options.check()
    items = list(items)
    settings = _threads.reapply()
    if executor == "process":
        return _offline_processes(pipeline, items, options, settings)
    recorder = _offline_recorder(pipeline, len(items), options)
    if options.workers == 1 and options.timeout_s is None:
        return _offline_inline(recorder, items, options, settings)
    return _offline_threads(recorder, items, options, settings)


@dataclass(frozen=True)
class _Options:
    """The options of one :func:`run_offline` call (``timeout_s`` already taken from the
    control scope when not given), as its executors read them."""

    batch_size: int
    on_error: OnError
    timeout_s: float | None
    observe: int
    measure_cpu: bool
    progress: Callable[[int], None] | None
    workers: int
    executor: Executor
    factory: str | None
    spans: bool
    max_duration_s: float | None
    min_items: int
    instrument: StageInstrument | None

    def check(self) -> None:
        """Raise :class:`ConfigError` for options no executor takes."""
        if self.on_error not in ("stop", "skip"):
            raise ConfigError(f"on_error must be 'stop' or 'skip', not {self.on_error!r}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if self.workers < 1:
            raise ConfigError("workers must be >= 1")
        if self.executor not in ("thread", "process"):
            raise ConfigError(f"executor must be 'thread' or 'process', not {self.executor!r}")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError("timeout_s must be positive")

    def time_up(self, started: int, origin: float) -> bool:
        """A time-boxed run stops taking inputs after ``max_duration_s`` (counted from
        ``origin``), once ``min_items`` of them have started."""
        return (
            self.max_duration_s is not None
            and started >= self.min_items
            and time.perf_counter() - origin >= self.max_duration_s
        )


def _offline_processes(
    pipeline: Pipeline, items: list[Any], options: _Options, settings: dict[str, Any]
) -> RunResult:
    """Run on worker processes, each building the pipeline from ``options.factory``."""
    if options.factory is None:
        raise ConfigError(
            "executor='process' needs factory='package.module:function' that builds the "
            "pipeline in each worker process (pipelines are rarely picklable)"
        )
    if options.observe or options.instrument is not None:
        raise ConfigError("observe and instrument work with threads only, not processes")
    return _run_processes(
        pipeline,
        items,
        factory=options.factory,
        workers=options.workers,
        batch_size=options.batch_size,
        on_error=options.on_error,
        timeout_s=options.timeout_s,
        progress=options.progress,
        measure_cpu=options.measure_cpu,
        spans=options.spans,
        settings=settings,
    )


def _offline_recorder(pipeline: Pipeline, n: int, options: _Options) -> _Recorder:
    """The recorder of a run on threads (the calling one, or workers)."""
    if options.instrument is not None and options.workers > 1:
        raise ConfigError("a stage instrument (CUDA events) needs workers=1")
    return _Recorder(
        pipeline,
        n,
        on_error=options.on_error,
        observe=options.observe,
        measure_cpu=options.measure_cpu,
        cpu_clock="process" if options.workers == 1 else "thread",
        spans=options.spans,
        instrument=options.instrument,
    )


def _offline_inline(
    recorder: _Recorder, items: list[Any], options: _Options, settings: dict[str, Any]
) -> RunResult:
    """One worker, no deadline: run in the calling thread (least overhead, and Ctrl-C
    lands where it can be caught)."""
    batched = options.batch_size > 1
    chunks = _ItemChunks(items, options, recorder.origin)
    loop = ServingLoop(recorder, ["main"], options.progress)
    take, serve, token = chunks.take, loop.serve, loop.token
    stopped = False
    queued = _runqueue_wait()
    try:
        for _ in range(0, len(items), options.batch_size):  # one turn per chunk
            if token.cancelled:
                stopped = True
                break
            taken = take()
            if taken is None:
                break
            rows, chunk = taken
            if not serve(rows, chunk, 0, batched):
                break
    except KeyboardInterrupt:
        stopped = True
        _control.cancel("interrupted")
    if loop.interrupted.is_set():  # Ctrl-C inside a stage: as anywhere in this thread
        _control.cancel("interrupted")
    wall = time.perf_counter() - recorder.origin
    result = loop.result(
        wall_s=wall, stopped=stopped, mode="offline", executor="inline", settings=settings
    )
    result.runqueue_wait_s = _waited(queued)
    return _truncate(result, chunks.taken) if options.max_duration_s is not None else result


class _ItemChunks:
    """Where offline workers take their next work: consecutive chunks of ``batch_size``
    items, each handed out once (to any number of worker threads), until the items run out
    or a time-boxed run's time is up. ``taken`` counts the inputs handed out."""

    def __init__(self, items: list[Any], options: _Options, origin: float):
        self.items = items
        self.options = options
        self.origin = origin
        self.batch_size = options.batch_size
        self.counter = itertools.count(0, options.batch_size)  # next() is atomic under the GIL
        self.taken = 0
        # This is the hot path of a timing pass: one worker takes the chunks in order and
        # needs no lock, and a run that is not time-boxed has no clock to read.
        self.lock = threading.Lock() if options.workers > 1 else None
        self.boxed = options.max_duration_s is not None

    def take(self) -> tuple[range, list[Any]] | None:
        """The next chunk's rows and inputs, or ``None`` when there is nothing left to take."""
        if self.boxed and self.options.time_up(self.taken, self.origin):
            return None
        start = next(self.counter)
        if start >= len(self.items):
            return None
        chunk = self.items[start : start + self.batch_size]
        end = start + len(chunk)
        if self.lock is None:
            self.taken = end
        else:
            with self.lock:
                self.taken = max(self.taken, end)
        return range(start, end), chunk


def _offline_threads(
    recorder: _Recorder, items: list[Any], options: _Options, settings: dict[str, Any]
) -> RunResult:
    """``options.workers`` long-lived worker threads, each taking the next input (or batch)
    as soon as it is free, under a supervisor enforcing the per-input deadline."""
    workers = options.workers
    batched = options.batch_size > 1
    chunks = _ItemChunks(items, options, recorder.origin)
    loop = ServingLoop(recorder, [f"worker-{w}" for w in range(workers)], options.progress)
    waited: list[float | None] = [None]

    def work(w: int) -> None:
        queued = _runqueue_wait() if workers == 1 else None
        try:
            serve(w)
        finally:
            waited[0] = _waited(queued)

    def serve(w: int) -> None:
        while not loop.stop.is_set() and not loop.token.cancelled:
            taken = chunks.take()
            if taken is None or not loop.serve(*taken, w, batched):
                return

    # Long-lived threads, not fresh ones: a fresh thread starts cold (see core.workers).
    pool = [_workers.start(work, (w,), f"pipetune-worker-{w}") for w in range(workers)]
    stopped = loop.supervise(pool, options.timeout_s)
    stopped = stopped or loop.token.cancelled  # the workers may have seen it first
    wall = time.perf_counter() - recorder.origin
    result = loop.result(
        wall_s=wall, stopped=stopped, mode="offline", executor="thread", settings=settings
    )
    result.runqueue_wait_s = waited[0]
    return _truncate(result, chunks.taken) if options.max_duration_s is not None else result


def _runqueue_wait() -> float | None:
    from pipetune.core.runtime.observe import runqueue

    found = runqueue()
    return None if found is None else found[1]


def _waited(before: float | None) -> float | None:
    after = _runqueue_wait() if before is not None else None
    return None if before is None or after is None else max(0.0, after - before)


def _truncate(result: RunResult, count: int) -> RunResult:
    """Keep the first ``count`` rows (a time-boxed run did not start the rest)."""
    if count >= len(result.ok):
        return result
    result.outputs = result.outputs[:count]
    result.ok = result.ok[:count]
    result.latency_s = result.latency_s[:count]
    result.stage_s = result.stage_s[:count]
    if result.start_s is not None:
        result.start_s = result.start_s[:count]
    if result.done_s is not None:
        result.done_s = result.done_s[:count]
    if result.gpu_stage_s is not None:
        result.gpu_stage_s = result.gpu_stage_s[:count]
    return result


# -- the other modes, reachable from here -------------------------------------------

#: Names the serving options go by elsewhere (``Pipeline.meta["serving"]``): accepted as
#: aliases so callers can pass one set of options to every mode.
_ALIASES = {"batch_size": "max_batch", "max_delay_ms": "max_wait_ms"}


def _aliased(options: dict[str, Any], accepts_batching: bool) -> dict[str, Any]:
    options = dict(options)
    for alias, name in _ALIASES.items():
        if alias in options:
            value = options.pop(alias)
            if name in options and options[name] != value:
                raise ConfigError(f"both {alias}={value!r} and {name}={options[name]!r} given")
            if accepts_batching and value is not None:
                options[name] = value
    return options


def run_online(pipeline: Pipeline, items: Sequence[Any], **options: Any) -> RunResult:
    """Online mode: see :func:`pipetune.core.runtime.online.run_online`. Also accepts
    ``batch_size`` / ``max_delay_ms`` as names for ``max_batch`` / ``max_wait_ms``."""
    from pipetune.core.runtime.online import run_online as _run_online

    return _run_online(pipeline, items, **_aliased(options, accepts_batching=True))


def run_stream(pipeline: Pipeline, items: Sequence[Any], **options: Any) -> RunResult:
    """Stream mode: see :func:`pipetune.core.runtime.stream.run_stream`. ``batch_size`` and
    ``max_delay_ms`` are accepted and ignored (the stream server batches by itself)."""
    from pipetune.core.runtime.stream import run_stream as _run_stream

    return _run_stream(pipeline, items, **_aliased(options, accepts_batching=False))


# -- choosing a mode -------------------------------------------------------------------


def run(
    pipeline: Pipeline,
    workload: Workload,
    *,
    mode: str | None = None,
    **options: Any,
) -> RunResult:
    """Run ``workload`` through ``pipeline`` in ``mode`` (default: the workload's mode).

    Online and stream runs take the workload's ``rate``/``trace``/``seed`` unless given in
    ``options``; every other option goes to :func:`run_offline`,
    :func:`~pipetune.core.runtime.online.run_online` or
    :func:`~pipetune.core.runtime.stream.run_stream`.
    """
    workload.require_items()
    mode = mode or workload.mode
    if mode == "offline":
        return run_offline(pipeline, workload.items, **options)
    options.setdefault("rate", workload.rate)
    options.setdefault("trace", workload.trace)
    options.setdefault("seed", workload.seed)
    if mode == "online":
        return run_online(pipeline, workload.items, **options)
    if mode == "stream":
        return run_stream(pipeline, workload.items, **options)
    raise ConfigError(f"mode must be offline, online or stream, not {mode!r}")


def describe_item(item: Any) -> str:
    return short_repr(item)


__all__ = [
    "STOP_GRACE_S",
    "ItemError",
    "OnError",
    "PipelineError",
    "RunResult",
    "Span",
    "StageInstrument",
    "describe_item",
    "resolve_factory",
    "run",
    "run_offline",
    "run_online",
    "run_stream",
]
