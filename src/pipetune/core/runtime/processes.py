"""The process executor of offline runs: spawned workers, each building its own pipeline.

:func:`_run_processes` starts ``workers`` processes that each build the pipeline from an
importable factory (:func:`resolve_factory`), hands them chunks of inputs and gathers the
timings they send back into a :class:`~pipetune.core.runtime.result.RunResult`
(:class:`_ProcessRun`). Why processes only through a factory, started with ``spawn``:
pipeline objects (lambdas, closures, torch modules with hooks, open captures) usually cannot
be pickled, so the child builds its own pipeline by importing ``"package.module:function"``
(or ``"path/to/file.py:function"``). ``fork`` is never used: forking a process that already
runs threads (torch's and faiss's OpenMP pools, tokenizers' Rust pool, CUDA) can deadlock the
child on a lock held by a thread that was not copied, and CUDA cannot be re-initialized in a
forked child. ``spawn`` starts clean, like a production worker, and behaves the same on
Linux, macOS and Windows.

The serving loop of the thread-based modes (:mod:`.serving_loop`) does not fit here: the
workers are processes that time their own inputs and send records back, so the parent has
no recorder to run chunks through and no worker threads to watch, only replies to wait for
under a per-reply deadline (:meth:`_ProcessRun.collect`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import multiprocessing
import multiprocessing.pool
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel import control as _control
from pipetune.core.kernel.errors import ConfigError, StageError, StageTimeout
from pipetune.core.kernel.model import Pipeline
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.result import ItemError, OnError, RunResult, Span
from pipetune.core.runtime.supervise import _POLL_S

# State of a spawned worker process (set by _child_init).
_CHILD: dict[str, Any] = {}
#: How long a worker process waits for its siblings to finish building their pipelines.
_READY_TIMEOUT_S = 600.0


def resolve_factory(spec: str) -> Pipeline:
    """Import ``"package.module:attr"`` or ``"path/to/file.py:attr"`` and return the
    pipeline: ``attr`` is a Pipeline or a callable returning one (dots walk attributes)."""
    module_name, attr = _split_spec(spec)
    if _names_a_file(module_name):
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


def _split_spec(spec: str) -> tuple[str, str]:
    """``(module or file, attribute)`` of a factory spec, or :class:`ConfigError`."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"factory {spec!r} must look like 'package.module:function' or 'file.py:function'"
        )
    return module_name, attr


def _names_a_file(module_name: str) -> bool:
    """Whether a factory spec's module part is a file path rather than a module name."""
    return module_name.endswith(".py") or os.sep in module_name or "/" in module_name


def _check_factory_spec(spec: str) -> None:
    """Fail in the parent, with a clear message, before spawning anything."""
    module_name, _ = _split_spec(spec)
    if _names_a_file(module_name):
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
            _threads.pin_for_process(int(next(iter(env.values()))))
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
    perf = time.perf_counter
    chunk = batch_size if batch_size > 1 else max(1, min(32, n // (workers * 4) or 1))
    tasks = [(start, items[start : start + chunk], batch_size > 1) for start in range(0, n, chunk)]
    run = _ProcessRun(
        pipeline,
        items,
        factory=factory,
        batch_size=batch_size,
        on_error=on_error,
        progress=progress,
        measure_cpu=measure_cpu,
        spans=spans,
    )
    launched = perf()
    pool = _start_pool(
        pipeline,
        factory=factory,
        workers=workers,
        on_error=on_error,
        measure_cpu=measure_cpu,
        settings=settings,
        timeout_s=timeout_s,
    )
    run.origin = perf()
    startup = run.origin - launched
    stopped = False
    clean = False
    try:
        run.collect(pool.imap_unordered(_child_run, tasks), len(tasks), chunk, timeout_s)
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
    wall = perf() - run.origin
    return run.result(
        wall_s=wall, stopped=stopped, workers=workers, startup_s=startup, settings=settings
    )


def _start_pool(
    pipeline: Pipeline,
    *,
    factory: str,
    workers: int,
    on_error: OnError,
    measure_cpu: bool,
    settings: dict[str, Any],
    timeout_s: float | None,
) -> multiprocessing.pool.Pool:
    """Spawn ``workers`` processes and wait until every one has built its pipeline."""
    context = multiprocessing.get_context("spawn")
    env = _threads.child_environment(settings)
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
    return pool


class _ProcessRun:
    """What the parent gathers from the worker processes' replies, row by row."""

    def __init__(
        self,
        pipeline: Pipeline,
        items: list[Any],
        *,
        factory: str,
        batch_size: int,
        on_error: OnError,
        progress: Callable[[int], None] | None,
        measure_cpu: bool,
        spans: bool,
    ):
        n = len(items)
        k = len(pipeline)
        self.pipeline = pipeline
        self.items = items
        self.factory = factory
        self.batch_size = batch_size
        self.on_error = on_error
        self.progress = progress
        self.stage_s = np.zeros((n, k + 1))
        self.start_s = np.zeros(n)
        self.done_s = np.zeros(n)
        self.cpu = np.zeros(k) if measure_cpu else None
        self.outputs: list[Any] = [None] * n
        self.ok = [False] * n
        self.attempted = 0
        self.errors: list[ItemError] = []
        self.spans: list[Span] | None = [] if spans else None
        self.batch_sizes: list[int] = []
        self.busy = 0.0
        self.reported = np.zeros(n, dtype=bool)
        self.origin = 0.0  # set once every worker is ready

    def collect(
        self,
        results: multiprocessing.pool.IMapIterator[dict[str, Any]],
        tasks: int,
        chunk: int,
        timeout_s: float | None,
    ) -> None:
        """Take the ``tasks`` replies as they come (raises :class:`StageTimeout` when none
        comes in time, ``KeyboardInterrupt`` once the token is cancelled)."""
        perf = time.perf_counter
        token = _control.current().token
        # Per input: a chunk of `chunk` inputs gets `chunk` deadlines; the clock restarts
        # with every reply (the workers' chunks overlap, so this is a bound, not a budget).
        window = None if timeout_s is None else timeout_s * chunk
        deadline = None if window is None else self.origin + window
        for _ in range(tasks):
            reply = None
            while reply is None:
                if token.cancelled:
                    raise KeyboardInterrupt
                wait = _POLL_S * 4
                if deadline is not None:
                    wait = min(wait, deadline - perf())
                    if wait <= 0:
                        first = int(np.argmin(self.reported))
                        raise StageTimeout(
                            "<worker process>", first, self.items[first], timeout_s or 0
                        )
                with contextlib.suppress(multiprocessing.TimeoutError):
                    reply = results.next(timeout=wait)
            if window is not None:
                deadline = perf() + window
            if "init_error" in reply:
                raise ConfigError(
                    f"factory {self.factory!r} failed in the worker process: {reply['init_error']}"
                )
            for record in reply["records"]:
                self._absorb(record, reply["pid"])
            if self.progress is not None:
                self.progress(self.attempted)

    def _absorb(self, record: dict[str, Any], pid: int) -> None:
        """Record one input's (or one batch's) times, outputs or error."""
        rows = record["rows"]
        times = record["times"]
        t0, t1 = record["start"] - self.origin, record["end"] - self.origin
        self.reported[rows] = True
        self.attempted += len(rows)
        self.busy += t1 - t0
        self.stage_s[rows, : len(times)] = times
        self.stage_s[rows, -1] = max(0.0, (t1 - t0) - sum(times))
        self.start_s[rows], self.done_s[rows] = t0, t1
        if self.cpu is not None and record["cpu"]:
            self.cpu[: len(record["cpu"])] += np.asarray(record["cpu"]) * len(rows)
        if self.batch_size > 1:
            self.batch_sizes.append(len(rows))
        if self.spans is not None:
            position = t0
            for column, seconds in enumerate(times):
                name = self.pipeline.stage_names[column]
                worker = f"pid-{pid}"
                self.spans.append(
                    Span(rows[0], len(rows), name, worker, position, position + seconds)
                )
                position += seconds
        if record["error"] is None:
            for row, value in zip(rows, record["outputs"], strict=True):
                self.outputs[row] = value
                self.ok[row] = True
            return
        stage_name, type_name, message = record["error"]
        if self.on_error == "stop":
            raise StageError(stage_name, rows[0], self.items[rows[0]], _remote(type_name, message))
        self.errors.extend(ItemError(row, stage_name, f"{type_name}: {message}") for row in rows)

    def result(
        self,
        *,
        wall_s: float,
        stopped: bool,
        workers: int,
        startup_s: float,
        settings: dict[str, Any],
    ) -> RunResult:
        return RunResult(
            outputs=self.outputs,
            ok=self.ok,
            latency_s=np.maximum(self.done_s - self.start_s, 0.0),
            stage_s=self.stage_s,
            wall_s=wall_s,
            stage_names=self.pipeline.stage_names,
            errors=sorted(self.errors, key=lambda e: e.index),
            cpu_s=self.cpu,
            stopped=stopped,
            mode="offline",
            workers=workers,
            executor="process",
            attempted=self.attempted,
            startup_s=startup_s,
            start_s=self.start_s,
            done_s=self.done_s,
            cpu_clock="process",
            spans=self.spans,
            threads=settings,
            batch_sizes=self.batch_sizes,
            busy_s=self.busy,
        )
