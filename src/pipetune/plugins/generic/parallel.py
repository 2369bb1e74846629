"""Parallel preprocessing: run one stage over the inputs of a batch concurrently.

Two ways, chosen from the profile:

* **threads** for a stage that waits (reading files, calling a service: it uses far less
  CPU than wall time) or that releases the GIL (declared with
  ``meta={"releases_gil": True}``: OpenCV, numpy-heavy code). Cheap to start, shares
  memory.
* **processes** for a stage that holds the GIL (pure Python parsing, tokenizing). Only
  through an *importable factory*: the stage declares ``meta={"factory":
  "package.module:function"}``, a zero-argument function returning the Stage (or a
  Pipeline holding a stage of the same name). Each worker process is started with
  ``spawn`` and builds its own copy from the factory, so nothing unpicklable (a loaded
  model, an open file) has to cross a process boundary and nothing is forked from a
  process holding threads. Inputs and outputs must pickle.

The stage's ``batch_fn`` becomes the parallel map; the pipeline is served in chunks (its
serving batch size) so the pool has inputs to share out.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from pipetune.core.kernel.errors import ConfigError, PipelineError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime.serving import ServingOptions, with_serving

META_KEY = "generic.parallel"
FACTORY_KEY = "factory"


def resolve_factory(spec: str) -> Callable[[], Any]:
    """``"package.module:function"`` -> the function (imported, not called)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"factory {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import factory module {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ConfigError(f"factory {spec!r}: {module_name} has no {attribute!r}")
    if not callable(target):
        raise ConfigError(f"factory {spec!r} is not callable")
    return target


def build_from_factory(spec: str, stage_name: str) -> Stage:
    built = resolve_factory(spec)()
    if isinstance(built, Pipeline):
        return built.stage(stage_name)
    if isinstance(built, Stage):
        return built
    raise PipelineError(
        f"factory {spec!r} returned {type(built).__name__}; it must return a Stage or a Pipeline"
    )


class _Pool:
    """A lazily started executor, shut down when the owner is collected."""

    def __init__(self, make: Callable[[], Executor]):
        self._make = make
        self._executor: Executor | None = None
        self._lock = threading.Lock()

    def get(self) -> Executor:
        with self._lock:
            if self._executor is None:
                self._executor = self._make()
            return self._executor

    def shutdown(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing to do
            self.shutdown()


class ThreadMap:
    """``batch_fn`` running the stage's ``fn`` over the batch on a thread pool."""

    def __init__(self, fn: Callable[..., Any], slot_names: Sequence[str], workers: int):
        self.fn = fn
        self.slot_names = tuple(slot_names)
        self.workers = workers
        self._pool = _Pool(
            lambda: ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipetune-map")
        )
        self.__name__ = f"threads{workers}_{getattr(fn, '__name__', 'stage')}"

    def __call__(self, items: Sequence[Any], /, **slots: Any) -> list[Any]:
        kwargs = {name: slots[name] for name in self.slot_names}
        if len(items) <= 1:
            return [self.fn(item, **kwargs) for item in items]
        return list(self._pool.get().map(lambda item: self.fn(item, **kwargs), items))


# -- processes -----------------------------------------------------------------------------

_WORKER_STAGE: Stage | None = None


def _init_worker(spec: str, stage_name: str) -> None:
    global _WORKER_STAGE
    _WORKER_STAGE = build_from_factory(spec, stage_name)


def _run_in_worker(item: Any) -> Any:
    if _WORKER_STAGE is None:  # pragma: no cover - the initializer always runs first
        raise RuntimeError("worker process has no stage")
    return _WORKER_STAGE(item)


class ProcessMap:
    """``batch_fn`` sending the batch to worker processes built from a factory."""

    def __init__(self, factory: str, stage_name: str, workers: int):
        self.factory = factory
        self.stage_name = stage_name
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self._pool = _Pool(
            lambda: ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(factory, stage_name),
            )
        )
        self.__name__ = f"processes{workers}_{stage_name}"

    def __call__(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        chunk = max(1, len(items) // (self.workers * 2))
        return list(self._pool.get().map(_run_in_worker, items, chunksize=chunk))

    def warm(self) -> None:
        """Start the workers now (spawn + factory take seconds), not on the first batch."""
        list(self._pool.get().map(_run_in_worker, [], chunksize=1))


def _fn_slots(stage: Stage) -> tuple[str, ...]:
    return tuple(name for name in stage.slots if stage.injects(name))


def parallel_stage(
    stage: Stage, *, workers: int, how: str = "threads", factory: str | None = None
) -> Stage:
    """A copy of ``stage`` whose ``batch_fn`` maps its ``fn`` over a pool."""
    if workers < 2:
        raise ConfigError("parallel preprocessing needs at least 2 workers")
    if how == "threads":
        batch_fn: Callable[..., Any] = ThreadMap(stage.fn, _fn_slots(stage), workers)
    elif how == "processes":
        spec = factory or stage.meta.get(FACTORY_KEY)
        if not spec:
            raise ConfigError(
                f"stage {stage.name!r}: processes need an importable factory: declare "
                "meta={'factory': 'package.module:function'}"
            )
        resolve_factory(str(spec))  # fail now, in this process, with a clear message
        batch_fn = ProcessMap(str(spec), stage.name, workers)
    else:
        raise ConfigError(f"parallel: 'how' must be threads or processes, not {how!r}")
    return stage.evolve(batch_fn=batch_fn).noted(**{META_KEY: {"how": how, "workers": workers}})


def materialize(pipeline: Pipeline, stage_name: str, params: Mapping[str, Any]) -> Pipeline:
    workers = int(params["workers"])
    stage = parallel_stage(
        pipeline.stage(stage_name),
        workers=workers,
        how=str(params.get("how", "threads")),
        factory=params.get("factory"),
    )
    changed = pipeline.replace(stage_name, stage)
    chunk = int(params.get("batch_size", 0) or 0)
    if chunk and ServingOptions.of(changed).batch_size < chunk:
        changed = with_serving(changed, batch_size=chunk)
    return changed


def tune(
    pipeline: Pipeline,
    stage_name: str,
    how: str,
    workload: Any,
    requirements: Any,
    *,
    cores: int,
    factory: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Pick the worker count (and chunk size) with the best metric on the tuning split."""
    from pipetune.core.kernel.errors import Rejected
    from pipetune.core.kernel.results import Tuned
    from pipetune.core.measure.timed_pass import RuntimeSpec
    from pipetune.plugins.generic.batching import paired_gain

    runtime = RuntimeSpec.from_workload(workload)
    metric = requirements.metric
    items = list(workload.items)[:256]
    counts = (2, 4, 8, 16) if how == "threads" else tuple(w for w in (2, 4, 8) if w <= cores)
    curve: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any] | None] = (1.0, None)
    candidates: list[ProcessMap] = []
    try:
        for workers in counts:
            params = {"how": how, "workers": workers, "batch_size": workers * 4}
            if factory:
                params["factory"] = factory
            candidate = materialize(pipeline, stage_name, params)
            batch_fn = candidate.stage(stage_name).batch_fn
            if isinstance(batch_fn, ProcessMap):
                candidates.append(batch_fn)
                batch_fn.warm()
            gain, _, value = paired_gain(pipeline, candidate, items, runtime, metric)
            curve.append({"workers": workers, "gain": gain, metric: value})
            if log:
                log(f"{how} x{workers}: {gain:.2f}x on {metric}")
            if gain > best[0]:
                best = (gain, params)
    finally:
        for process_map in candidates:
            process_map._pool.shutdown()
    gain, best_params = best
    if best_params is None or gain < 1.02:
        raise Rejected(
            f"parallel {how} do not pay for stage {stage_name!r} on this machine "
            f"({cores} cores): no worker count beat one at a time"
        )
    return Tuned(params=best_params, notes={"curve": curve, "gain_on_tune_split": gain})
