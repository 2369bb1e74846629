"""Thread pools: pin them for a measurement, record them, and set them per stage.

A speedup measured with torch on 8 intra-op threads for the baseline and 2 for the candidate
is a measurement of thread counts, not of the change. The validator therefore runs baseline
and candidate inside one :func:`pin_threads` block, and the settings in force are recorded
in ``Machine.threads`` of every profile (:func:`thread_settings`).

The pools pipetune knows:

* torch's intra-op pool (``torch.set_num_threads``), built in;
* the native BLAS and OpenMP pools already loaded (OpenBLAS, MKL, libgomp...), through
  ``threadpoolctl`` when it is installed;
* the pools plugins declare with the ``register_thread_pools`` hook (the recsys plugin's
  faiss OpenMP pool), registered for the process by :func:`use_plugin_pools`;
* the environment variables OpenMP, MKL, OpenBLAS, Accelerate and numexpr read when they
  load, so a library imported *later* inside a pin starts with the same count.

Libraries are handled lazily: nothing is imported here, and a pool is touched only once its
library is loaded. Every runtime run calls :func:`reapply` first, so a library imported
between entering a pin and the run is pinned before it is timed.

Two scopes:

* :func:`pin_threads` is process-wide (thread counts are process state): use it around whole
  runs, not from several threads at once. torch's inter-op pool can be sized only once per
  process, before any inter-op work has run; when that is no longer possible the count in
  force is recorded with a note, not silently claimed.
* :func:`with_stage_threads` makes a stage set the per-call pools (torch, the native pools,
  plugin pools marked ``per_call``) to its own count around each call and restore them
  after: a per-stage thread plan. The settings are process state, so with several calls in
  flight at once a plan should give every stage the same count.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.registry import ThreadPool

if TYPE_CHECKING:
    from pipetune.core.kernel.model import Stage

#: Environment variables read by OpenMP, MKL, OpenBLAS, Apple Accelerate and numexpr.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: The key of ``Stage.meta`` that holds a stage's thread settings (``{"threads": 1}``).
STAGE_META_KEY = "threads"


def _torch_get() -> int:
    return int(sys.modules["torch"].get_num_threads())


def _torch_set(count: int) -> None:
    sys.modules["torch"].set_num_threads(int(count))


#: torch's intra-op pool: built in, since most pipelines pipetune sees run torch.
TORCH_POOL = ThreadPool(
    "torch",
    module="torch",
    get=_torch_get,
    set=_torch_set,
    description="torch's intra-op pool (torch.set_num_threads)",
    owner="pipetune",
)
_PLUGIN_POOLS: dict[str, ThreadPool] = {}


@dataclass
class _Pin:
    """One active :func:`pin_threads` block: what it asked for and what it must restore."""

    threads: int
    interop: int | None
    saved_env: dict[str, str | None]
    restore: dict[str, int] = field(default_factory=dict)  # pool name -> count before the pin
    notes: list[str] = field(default_factory=list)
    pool_limits: Any = None  # a threadpoolctl context, when threadpoolctl is installed


_STACK: list[_Pin] = []
_LOCK = threading.RLock()


# -- the pools -----------------------------------------------------------------------------


def use_plugin_pools(pm: Any) -> tuple[ThreadPool, ...]:
    """Register for this process the thread pools the plugins of ``pm`` declare
    (``register_thread_pools``), replacing those registered before. The loop, the profiler
    and ``load_recipe`` call this with their plugin manager. A plugin that names a built-in
    pool (``torch``) raises ``DuplicateError``."""
    from pipetune.core.kernel.errors import DuplicateError

    pools = dict(pm.thread_pools()) if hasattr(pm, "thread_pools") else {}
    if TORCH_POOL.name in pools:
        raise DuplicateError(
            f"thread pool {TORCH_POOL.name!r} is built into pipetune and registered again "
            f"by {pools[TORCH_POOL.name].owner!r}"
        )
    set_plugin_pools(pools.values())
    return tuple(pools.values())


def set_plugin_pools(pools: Iterable[ThreadPool]) -> tuple[ThreadPool, ...]:
    """Replace the registered plugin pools; returns the ones registered before."""
    with _LOCK:
        before = tuple(_PLUGIN_POOLS.values())
        _PLUGIN_POOLS.clear()
        _PLUGIN_POOLS.update({pool.name: pool for pool in pools})
    return before


def thread_pools() -> tuple[ThreadPool, ...]:
    """Every pool pipetune sets by name: torch's and the registered plugin pools."""
    return (TORCH_POOL, *_PLUGIN_POOLS.values())


def pool_counts() -> dict[str, int]:
    """The counts of the plugin pools whose library is loaded, by name."""
    counts: dict[str, int] = {}
    for pool in _PLUGIN_POOLS.values():
        if pool.loaded():
            with contextlib.suppress(Exception):
                counts[pool.name] = int(pool.get())
    return counts


def default_thread_count() -> int:
    """The count a pin uses when none is given: torch's current intra-op count if torch is
    loaded, else ``OMP_NUM_THREADS`` if set, else the physical cores (what torch and OpenMP
    would pick on their own)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            return int(torch.get_num_threads())
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    from pipetune.core.runtime.machine import detect_machine

    return max(1, detect_machine().cores)


def thread_settings() -> dict[str, Any]:
    """The thread settings in force now, as recorded in ``Machine.threads``.

    ``None`` for torch means it is not loaded in this process (its count will come from
    the environment variables when it loads); ``pools`` holds the loaded plugin pools.
    """
    torch = sys.modules.get("torch")
    intra = inter = None
    if torch is not None:
        with contextlib.suppress(Exception):
            intra = int(torch.get_num_threads())
            inter = int(torch.get_num_interop_threads())
    settings: dict[str, Any] = {
        "pinned": bool(_STACK),
        "torch_intra_op": intra,
        "torch_inter_op": inter,
        "pools": pool_counts(),
        "env": {name: os.environ.get(name) for name in THREAD_ENV_VARS},
        "cpu_affinity": _affinity(),
    }
    if _STACK:
        settings["requested"] = _STACK[-1].threads
        if _STACK[-1].notes:
            settings["notes"] = list(_STACK[-1].notes)
    return settings


# -- process-wide pins ---------------------------------------------------------------------


@contextlib.contextmanager
def pin_threads(
    threads: int | None = None, *, interop: int | None = None
) -> Iterator[dict[str, Any]]:
    """Pin torch, the native BLAS/OpenMP pools and the plugin pools to ``threads`` for
    the block; restore on exit.

    Args:
        threads: the count for every pool. ``None`` freezes the current count
            (:func:`default_thread_count`), so libraries loaded inside the block get the
            same count as those already loaded.
        interop: torch's inter-op pool size. torch allows this once per process, before any
            inter-op work; if that is no longer possible the actual count is recorded with a
            note.

    Yields the settings in force (:func:`thread_settings`), for the record.
    """
    pin = _enter_pin(threads, interop)
    try:
        yield thread_settings()
    finally:
        _exit_pin(pin)


def _enter_pin(threads: int | None, interop: int | None) -> _Pin:
    """Put a pin in force: the environment, the loaded libraries, the plugin pools."""
    count = default_thread_count() if threads is None else int(threads)
    if count < 1:
        from pipetune.core.kernel.errors import ConfigError

        raise ConfigError(f"thread count must be >= 1, got {threads!r}")
    with _LOCK:
        pin = _Pin(
            threads=count,
            interop=interop,
            saved_env={name: os.environ.get(name) for name in THREAD_ENV_VARS},
        )
        for name in THREAD_ENV_VARS:
            os.environ[name] = str(count)
        _STACK.append(pin)
        _apply(pin)
        pin.pool_limits = _threadpool_limits(count)
    return pin


def _exit_pin(pin: _Pin) -> None:
    """Undo ``pin``: the settings before it, or the outer pin's."""
    with _LOCK:
        _STACK.remove(pin)
        if pin.pool_limits is not None:
            with contextlib.suppress(Exception):
                pin.pool_limits.__exit__(None, None, None)
        _restore(pin)
        for name, value in pin.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if _STACK:  # an outer pin is still active: put its counts back
            _apply(_STACK[-1])


def pin_for_process(threads: int) -> dict[str, Any]:
    """Pin this process's thread pools to ``threads`` for the rest of its life (a worker
    process of the process executor or of Ray): never undone, not even when a context
    manager would be collected. Returns the settings in force."""
    _enter_pin(threads, None)
    return thread_settings()


def reapply() -> dict[str, Any]:
    """Apply the active pin to libraries loaded since it started (no-op without a pin).

    The runtime calls this at the start of every run. Returns the settings in force.
    """
    with _LOCK:
        if _STACK:
            _apply(_STACK[-1])
    return thread_settings()


def pinned_count() -> int | None:
    """The thread count of the active pin, or ``None``."""
    return _STACK[-1].threads if _STACK else None


def child_environment(settings: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Environment variables that give a spawned worker process the same pin.

    Set before the child imports torch or faiss (the process runtime does this in its
    initializer, which runs before the pipeline factory).
    """
    count = pinned_count()
    if count is None and settings:
        count = settings.get("requested")
    if count is None:
        return {}
    return {name: str(count) for name in THREAD_ENV_VARS}


# -- per-stage settings --------------------------------------------------------------------


class StageThreads:
    """Sets the per-call pools to ``count`` on entry and restores them on exit: torch's
    intra-op pool, the plugin pools marked ``per_call`` and the loaded native BLAS/OpenMP
    pools (through threadpoolctl). Only pools whose count differs are touched."""

    __slots__ = ("_saved", "count")

    def __init__(self, count: int):
        self.count = int(count)
        self._saved: list[tuple[Any, int]] = []

    def __enter__(self) -> StageThreads:
        saved = []
        for pool in thread_pools():
            if not pool.per_call or not pool.loaded():
                continue
            try:
                now = int(pool.get())
                if now != self.count:
                    pool.set(self.count)
                    saved.append((pool.set, now))
            except Exception:  # a library that refuses: the call runs with what it has
                continue
        for library in _native_controllers():
            try:
                now = int(library.num_threads)
                if now != self.count:
                    library.set_num_threads(self.count)
                    saved.append((library.set_num_threads, now))
            except Exception:
                continue
        self._saved = saved
        return self

    def __exit__(self, *exc: object) -> None:
        for setter, count in reversed(self._saved):
            with contextlib.suppress(Exception):
                setter(count)
        self._saved = []


class ThreadedCall:
    """A stage function that runs each call under :class:`StageThreads`. It carries the
    stage's function as ``__wrapped__`` (signature, source and name come from it), shows
    the object behind it as ``__self__`` (so the validator still finds and resets a
    stateful callable's warm state), and pickles when that function does."""

    def __init__(self, fn: Any, count: int):
        functools.update_wrapper(self, fn, updated=())
        self.count = int(count)

    @property
    def __self__(self) -> Any:
        wrapped = self.__wrapped__  # type: ignore[attr-defined]
        return getattr(wrapped, "__self__", wrapped)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with StageThreads(self.count):
            return self.__wrapped__(*args, **kwargs)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"ThreadedCall({getattr(self, '__qualname__', '?')}, threads={self.count})"


def with_stage_threads(stage: Stage, settings: Mapping[str, Any]) -> Stage:
    """A copy of ``stage`` whose calls (``fn`` and ``batch_fn``) run with the per-call pools
    at ``settings["threads"]``, recorded in ``meta["threads"]`` (other keys of ``settings``,
    a plugin's per-session options, are recorded as they are). Replaces any plan the stage
    had; ``stage`` itself is untouched."""
    from pipetune.core.kernel.errors import ConfigError

    count = settings.get("threads")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(
            f"stage {stage.name!r}: a thread plan needs a whole 'threads' >= 1, got {count!r}"
        )
    fn = _unplanned(stage.fn)
    batch_fn = _unplanned(stage.batch_fn) if stage.batch_fn is not None else None
    return stage.evolve(
        fn=ThreadedCall(fn, count),
        batch_fn=ThreadedCall(batch_fn, count) if batch_fn is not None else None,
        meta={**stage.meta, STAGE_META_KEY: dict(settings)},
    )


def stage_plan(stage: Stage) -> dict[str, Any] | None:
    """The thread settings a stage runs its calls under, when a plan is in force on it
    (its function is a :class:`ThreadedCall`), else ``None``."""
    if not isinstance(stage.fn, ThreadedCall):
        return None
    settings = stage.meta.get(STAGE_META_KEY)
    return dict(settings) if isinstance(settings, Mapping) else {"threads": stage.fn.count}


def _unplanned(fn: Any) -> Any:
    while isinstance(fn, ThreadedCall):
        fn = fn.__wrapped__  # type: ignore[attr-defined]
    return fn


# -- internals ----------------------------------------------------------------------------

_NATIVE: dict[str, Any] = {"modules": -1, "libraries": ()}


def _native_controllers() -> tuple[Any, ...]:
    """threadpoolctl's controllers of the loaded native pools, refreshed when modules were
    imported since the last look (a new import may have loaded a new library)."""
    modules = len(sys.modules)
    if _NATIVE["modules"] != modules:
        libraries: tuple[Any, ...] = ()
        try:
            from threadpoolctl import ThreadpoolController

            libraries = tuple(ThreadpoolController().lib_controllers)
        except Exception:  # not installed, or a library it cannot read
            libraries = ()
        _NATIVE.update(modules=modules, libraries=libraries)
    return tuple(_NATIVE["libraries"])


def _apply(pin: _Pin) -> None:
    loaded = [pool for pool in thread_pools() if pool.loaded()]
    # Record every pool's count before setting any: torch and a plugin's library may share
    # one OpenMP runtime, so setting torch first would change what the other reports.
    for pool in loaded:
        if pool.name not in pin.restore:
            with contextlib.suppress(Exception):
                pin.restore[pool.name] = int(pool.get())
    for pool in loaded:
        try:
            if int(pool.get()) != pin.threads:
                pool.set(pin.threads)
        except Exception as exc:  # a broken or partial install must not stop a run
            _note(pin, f"{pool.name} threads not set: {exc}")
    torch = sys.modules.get("torch")
    if torch is not None and pin.interop is not None:
        try:
            if torch.get_num_interop_threads() != pin.interop:
                torch.set_num_interop_threads(pin.interop)
        except Exception:
            _note(
                pin,
                f"torch inter-op threads stay at {torch.get_num_interop_threads()} "
                f"(asked {pin.interop}): torch sizes that pool once per process",
            )


def _restore(pin: _Pin) -> None:
    by_name = {pool.name: pool for pool in thread_pools()}
    for name, count in pin.restore.items():
        pool = by_name.get(name)
        if pool is not None and pool.loaded():
            with contextlib.suppress(Exception):
                pool.set(count)


def _threadpool_limits(count: int) -> Any:
    """Limit already-loaded BLAS/OpenMP pools with threadpoolctl, when it is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    try:
        limits = threadpool_limits(limits=count)
        limits.__enter__()
        return limits
    except Exception:
        return None


def _note(pin: _Pin, message: str) -> None:
    if message not in pin.notes:
        pin.notes.append(message)


def _affinity() -> int | None:
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return None
