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

Why processes only through a factory, started with ``spawn``: pipeline objects (lambdas,
closures, torch modules with hooks, open captures) usually cannot be pickled, so the child
builds its own pipeline by importing ``"package.module:function"`` (or
``"path/to/file.py:function"``). ``fork`` is never used: forking a process that already runs
threads (torch's and faiss's OpenMP pools, tokenizers' Rust pool, CUDA) can deadlock the
child on a lock held by a thread that was not copied, and CUDA cannot be re-initialized in
a forked child. ``spawn`` starts clean, like a production worker, and behaves the same on
Linux, macOS and Windows.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipetune.core.kernel import control as _control
from pipetune.core.kernel import workers as _workers
from pipetune.core.kernel.errors import (
    ConfigError,
    PipelineError,
    StageError,
    StageTimeout,
    short_repr,
)
from pipetune.core.kernel.model import Pipeline
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.recorder import _Recorder
from pipetune.core.runtime.result import ItemError, OnError, RunResult, Span, StageInstrument
from pipetune.core.runtime.supervise import _POLL_S, STOP_GRACE_S, _Progress, _supervise

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
    timeout_s = _control.item_timeout(timeout_s)
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be 'stop' or 'skip', not {on_error!r}")
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    if workers < 1:
        raise ConfigError("workers must be >= 1")
    if executor not in ("thread", "process"):
        raise ConfigError(f"executor must be 'thread' or 'process', not {executor!r}")
    if timeout_s is not None and timeout_s <= 0:
        raise ConfigError("timeout_s must be positive")
    items = list(items)
    settings = _threads.reapply()
    if executor == "process":
        if factory is None:
            raise ConfigError(
                "executor='process' needs factory='package.module:function' that builds the "
                "pipeline in each worker process (pipelines are rarely picklable)"
            )
        if observe or instrument is not None:
            raise ConfigError("observe and instrument work with threads only, not processes")
        return _run_processes(
            pipeline,
            items,
            factory=factory,
            workers=workers,
            batch_size=batch_size,
            on_error=on_error,
            timeout_s=timeout_s,
            progress=progress,
            measure_cpu=measure_cpu,
            spans=spans,
            settings=settings,
        )
    if instrument is not None and workers > 1:
        raise ConfigError("a stage instrument (CUDA events) needs workers=1")
    recorder = _Recorder(
        pipeline,
        len(items),
        on_error=on_error,
        observe=observe,
        measure_cpu=measure_cpu,
        cpu_clock="process" if workers == 1 else "thread",
        spans=spans,
        instrument=instrument,
    )
    if workers == 1 and timeout_s is None:
        return _offline_inline(
            recorder, items, batch_size, progress, max_duration_s, min_items, settings
        )
    return _offline_threads(
        recorder,
        items,
        batch_size,
        progress,
        max_duration_s,
        min_items,
        settings,
        workers,
        timeout_s,
    )


def _offline_inline(
    recorder: _Recorder,
    items: list[Any],
    batch_size: int,
    progress: Callable[[int], None] | None,
    max_duration_s: float | None,
    min_items: int,
    settings: dict[str, Any],
) -> RunResult:
    """One worker, no deadline: run in the calling thread (least overhead, and Ctrl-C
    lands where it can be caught)."""
    n = len(items)
    perf = time.perf_counter
    state = _Progress()
    stopped = False
    taken = 0
    start_clock = recorder.origin
    token = _control.current().token
    queued = _runqueue_wait()
    try:
        for start in range(0, n, batch_size):
            if token.cancelled:
                stopped = True
                break
            if (
                max_duration_s is not None
                and start >= min_items
                and perf() - start_clock >= max_duration_s
            ):
                break
            chunk = items[start : start + batch_size]
            rows = range(start, start + len(chunk))
            taken = start + len(chunk)
            recorder.process(rows, chunk, state, "main", batch_size > 1)
            if progress is not None:
                progress(taken)
    except KeyboardInterrupt:
        stopped = True
        _control.cancel("interrupted")
    wall = perf() - start_clock
    result = recorder.result(
        wall_s=wall,
        stopped=stopped,
        mode="offline",
        workers=1,
        executor="inline",
        settings=settings,
    )
    result.runqueue_wait_s = _waited(queued)
    return _truncate(result, taken) if max_duration_s is not None else result


def _offline_threads(
    recorder: _Recorder,
    items: list[Any],
    batch_size: int,
    progress: Callable[[int], None] | None,
    max_duration_s: float | None,
    min_items: int,
    settings: dict[str, Any],
    workers: int,
    timeout_s: float | None,
) -> RunResult:
    n = len(items)
    perf = time.perf_counter
    counter = itertools.count(0, batch_size)  # next() is atomic under the GIL
    stop = threading.Event()
    interrupted = threading.Event()
    failures: list[BaseException] = []
    states = [_Progress() for _ in range(workers)]
    done = [0]
    taken = [0]
    done_lock = threading.Lock()

    token = _control.current().token
    waited: list[float | None] = [None]

    def work(w: int) -> None:
        queued = _runqueue_wait() if workers == 1 else None
        try:
            serve(w)
        finally:
            waited[0] = _waited(queued)

    def serve(w: int) -> None:
        state = states[w]
        name = f"worker-{w}"
        while not stop.is_set() and not token.cancelled:
            if (
                max_duration_s is not None
                and taken[0] >= min_items
                and perf() - recorder.origin >= max_duration_s
            ):
                return
            start = next(counter)
            if start >= n:
                return
            chunk = items[start : start + batch_size]
            with done_lock:
                taken[0] = max(taken[0], start + len(chunk))
            try:
                recorder.process(
                    range(start, start + len(chunk)), chunk, state, name, batch_size > 1
                )
            except KeyboardInterrupt:  # raised inside a stage: stop, keep what was measured
                interrupted.set()
                stop.set()
                return
            except BaseException as exc:  # StageError (stop) or a bug: end the run
                failures.append(exc)
                stop.set()
                return
            state.stage = ""
            if progress is not None:
                with done_lock:
                    done[0] += len(chunk)
                    count = done[0]
                progress(count)

    # Long-lived threads, not fresh ones: a fresh thread starts cold (see core.workers).
    pool = [_workers.start(work, (w,), f"pipetune-worker-{w}") for w in range(workers)]
    stopped = _supervise(pool, stop, states, timeout_s, recorder.origin) or interrupted.is_set()
    stopped = stopped or token.cancelled  # the workers may have seen it first
    wall = perf() - recorder.origin
    if failures:
        raise failures[0]
    result = recorder.result(
        wall_s=wall,
        stopped=stopped,
        mode="offline",
        workers=workers,
        executor="thread",
        settings=settings,
    )
    result.runqueue_wait_s = waited[0]
    return _truncate(result, taken[0]) if max_duration_s is not None else result


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


# -- processes -------------------------------------------------------------------------

# State of a spawned worker process (set by _child_init).
_CHILD: dict[str, Any] = {}
#: How long a worker process waits for its siblings to finish building their pipelines.
_READY_TIMEOUT_S = 600.0


def resolve_factory(spec: str) -> Pipeline:
    """Import ``"package.module:attr"`` or ``"path/to/file.py:attr"`` and return the
    pipeline: ``attr`` is a Pipeline or a callable returning one (dots walk attributes)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"factory {spec!r} must look like 'package.module:function' or 'file.py:function'"
        )
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = Path(module_name).resolve()
        if not path.is_file():
            raise ConfigError(f"factory {spec!r}: no file {path}")
        name = f"_pipetune_factory_{abs(hash(str(path)))}"
        module = sys.modules.get(name)
        if module is None:
            file_spec = importlib.util.spec_from_file_location(name, path)
            if file_spec is None or file_spec.loader is None:
                raise ConfigError(f"factory {spec!r}: cannot load {path}")
            module = importlib.util.module_from_spec(file_spec)
            sys.modules[name] = module
            file_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"factory {spec!r}: cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"factory {spec!r}: {module_name} has no {attr!r}") from None
    pipeline = target() if callable(target) and not isinstance(target, Pipeline) else target
    if not isinstance(pipeline, Pipeline):
        raise ConfigError(
            f"factory {spec!r} gave {type(pipeline).__name__}, not a pipetune Pipeline"
        )
    return pipeline


def _check_factory_spec(spec: str) -> None:
    """Fail in the parent, with a clear message, before spawning anything."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"factory {spec!r} must look like 'package.module:function' or 'file.py:function'"
        )
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        if not Path(module_name).is_file():
            raise ConfigError(f"factory {spec!r}: no file {module_name}")
        return
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"factory {spec!r}: cannot find {module_name!r}: {exc}") from None
    if found is None:
        raise ConfigError(f"factory {spec!r}: no module named {module_name!r}")


def _child_init(
    factory: str,
    env: dict[str, str],
    expected: tuple[str, ...],
    on_error: str,
    measure_cpu: bool,
    ready: Any = None,
) -> None:
    """Runs first in each spawned worker: pin threads, then build the pipeline."""
    # The parent handles Ctrl-C and terminates the pool; a child must not die mid-input
    # with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)  # before the factory imports torch/faiss
    _CHILD.clear()
    _CHILD.update(on_error=on_error, measure_cpu=measure_cpu)
    try:
        pipeline = resolve_factory(factory)
        if pipeline.stage_names != expected:
            raise ConfigError(
                f"factory {factory!r} built stages {list(pipeline.stage_names)}, but the "
                f"pipeline given has {list(expected)}"
            )
        if env:
            _threads.pin_threads(int(next(iter(env.values())))).__enter__()
        _CHILD["pipeline"] = pipeline
    except BaseException as exc:  # reported by the first task, not a respawn loop
        _CHILD["init_error"] = f"{type(exc).__name__}: {exc}"
    if ready is not None:  # the parent starts its clock when every worker is built
        with contextlib.suppress(Exception):
            ready.wait(timeout=_READY_TIMEOUT_S)


def _child_run(task: tuple[int, list[Any], bool]) -> dict[str, Any]:
    """Process one chunk in a worker process; returns plain, picklable records, one per
    input (or one per batch)."""
    start, chunk, batched = task
    if "init_error" in _CHILD:
        return {"init_error": _CHILD["init_error"]}
    pipeline: Pipeline = _CHILD["pipeline"]
    measure_cpu = _CHILD["measure_cpu"]
    stop_on_error = _CHILD["on_error"] == "stop"
    perf = time.perf_counter
    cpu_fn = time.process_time
    groups = [list(range(len(chunk)))] if batched else [[i] for i in range(len(chunk))]
    records = []
    for group in groups:
        values = [chunk[i] for i in group]
        times: list[float] = []
        cpus: list[float] = []
        error = None
        t_item = perf()
        for stage in pipeline.stages:
            c0 = cpu_fn() if measure_cpu else 0.0
            t0 = perf()
            try:
                values = stage.call_batch(values) if batched else [stage(values[0])]
            except (Exception, SystemExit) as exc:
                times.append(perf() - t0)
                error = (stage.name, type(exc).__name__, str(exc))
                break
            times.append(perf() - t0)
            cpus.append((cpu_fn() - c0) / len(group) if measure_cpu else 0.0)
        records.append(
            {
                "rows": [start + i for i in group],
                "outputs": values if error is None else None,
                "error": error,
                "times": times,
                "cpu": cpus,
                "start": t_item,
                "end": perf(),
            }
        )
        if error is not None and stop_on_error:
            break
    return {"records": records, "pid": os.getpid()}


class _RemoteError(Exception):
    """An exception raised in a worker process, re-created by name in the parent."""


def _remote(type_name: str, message: str) -> Exception:
    return type(type_name, (_RemoteError,), {})(message)


def _run_processes(
    pipeline: Pipeline,
    items: list[Any],
    *,
    factory: str,
    workers: int,
    batch_size: int,
    on_error: OnError,
    timeout_s: float | None,
    progress: Callable[[int], None] | None,
    measure_cpu: bool,
    spans: bool,
    settings: dict[str, Any],
) -> RunResult:
    _check_factory_spec(factory)
    n = len(items)
    k = len(pipeline)
    perf = time.perf_counter
    chunk = batch_size if batch_size > 1 else max(1, min(32, n // (workers * 4) or 1))
    tasks = [(start, items[start : start + chunk], batch_size > 1) for start in range(0, n, chunk)]
    stage_s = np.zeros((n, k + 1))
    start_s = np.zeros(n)
    done_s = np.zeros(n)
    cpu = np.zeros(k) if measure_cpu else None
    outputs: list[Any] = [None] * n
    ok = [False] * n
    attempted = 0
    errors: list[ItemError] = []
    span_list: list[Span] | None = [] if spans else None
    batch_sizes: list[int] = []
    busy = 0.0
    stopped = False
    context = multiprocessing.get_context("spawn")
    env = _threads.child_environment(settings)
    launched = perf()
    ready = context.Barrier(workers + 1)
    pool = context.Pool(
        workers,
        initializer=_child_init,
        initargs=(factory, env, pipeline.stage_names, on_error, measure_cpu, ready),
    )
    # Start the clock once every worker has spawned and built its pipeline, so throughput
    # measures serving, not interpreter start-up (reported apart as startup_s).
    try:
        # start-up is not an input: at least a minute to import and build (torch...)
        ready.wait(timeout=None if timeout_s is None else max(timeout_s, 60.0))
    except threading.BrokenBarrierError:
        pool.terminate()
        pool.join()
        raise StageTimeout("<worker start-up>", None, None, timeout_s or 0) from None
    except KeyboardInterrupt:
        pool.terminate()
        pool.join()
        raise
    origin = perf()
    startup = origin - launched
    reported = np.zeros(n, dtype=bool)
    clean = False
    token = _control.current().token
    try:
        results = pool.imap_unordered(_child_run, tasks)
        # Per input: a chunk of `chunk` inputs gets `chunk` deadlines; the clock restarts
        # with every reply (the workers' chunks overlap, so this is a bound, not a budget).
        window = None if timeout_s is None else timeout_s * chunk
        deadline = None if window is None else origin + window
        for _ in tasks:
            reply = None
            while reply is None:
                if token.cancelled:
                    raise KeyboardInterrupt
                wait = _POLL_S * 4
                if deadline is not None:
                    wait = min(wait, deadline - perf())
                    if wait <= 0:
                        first = int(np.argmin(reported))
                        raise StageTimeout("<worker process>", first, items[first], timeout_s or 0)
                with contextlib.suppress(multiprocessing.TimeoutError):
                    reply = results.next(timeout=wait)
            if window is not None:
                deadline = perf() + window
            if "init_error" in reply:
                raise ConfigError(
                    f"factory {factory!r} failed in the worker process: {reply['init_error']}"
                )
            for record in reply["records"]:
                rows = record["rows"]
                times = record["times"]
                t0, t1 = record["start"] - origin, record["end"] - origin
                reported[rows] = True
                attempted += len(rows)
                busy += t1 - t0
                stage_s[rows, : len(times)] = times
                stage_s[rows, -1] = max(0.0, (t1 - t0) - sum(times))
                start_s[rows], done_s[rows] = t0, t1
                if cpu is not None and record["cpu"]:
                    cpu[: len(record["cpu"])] += np.asarray(record["cpu"]) * len(rows)
                if batch_size > 1:
                    batch_sizes.append(len(rows))
                if span_list is not None:
                    position = t0
                    for column, seconds in enumerate(times):
                        name = pipeline.stage_names[column]
                        worker = f"pid-{reply['pid']}"
                        span_list.append(
                            Span(rows[0], len(rows), name, worker, position, position + seconds)
                        )
                        position += seconds
                if record["error"] is None:
                    for row, value in zip(rows, record["outputs"], strict=True):
                        outputs[row] = value
                        ok[row] = True
                    continue
                stage_name, type_name, message = record["error"]
                if on_error == "stop":
                    raise StageError(
                        stage_name, rows[0], items[rows[0]], _remote(type_name, message)
                    )
                errors.extend(ItemError(row, stage_name, f"{type_name}: {message}") for row in rows)
            if progress is not None:
                progress(attempted)
        clean = True
    except KeyboardInterrupt:
        stopped = True
        _control.cancel("interrupted")
    finally:
        if clean:
            pool.close()
        else:
            pool.terminate()
        pool.join()
    wall = perf() - origin
    return RunResult(
        outputs=outputs,
        ok=ok,
        latency_s=np.maximum(done_s - start_s, 0.0),
        stage_s=stage_s,
        wall_s=wall,
        stage_names=pipeline.stage_names,
        errors=sorted(errors, key=lambda e: e.index),
        cpu_s=cpu,
        stopped=stopped,
        mode="offline",
        workers=workers,
        executor="process",
        attempted=attempted,
        startup_s=startup,
        start_s=start_s,
        done_s=done_s,
        cpu_clock="process",
        spans=span_list,
        threads=settings,
        batch_sizes=batch_sizes,
        busy_s=busy,
    )


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
