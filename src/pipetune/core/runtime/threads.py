"""Pin the thread counts of torch, OpenMP/BLAS and faiss for a measurement, and record them.

A speedup measured with torch on 8 intra-op threads for the baseline and 2 for the candidate
is a measurement of thread counts, not of the change. The validator therefore runs baseline
and candidate inside one :func:`pin_threads` block, and the settings in force are recorded
in ``Machine.threads`` of every profile (:func:`thread_settings`).

Libraries are handled lazily: nothing is imported here.

* torch and faiss, when already imported, are set through their APIs
  (``torch.set_num_threads``, ``faiss.omp_set_num_threads``) and restored on exit;
* the environment variables that OpenMP, MKL, OpenBLAS, Accelerate and numexpr read when
  they load are set too, so a library imported *later* inside the block starts with the
  same count;
* every runtime run calls :func:`reapply` first, so a library imported between entering
  the block and the run (a candidate pipeline that loads faiss) is pinned before it is timed;
* ``threadpoolctl``, when installed, also limits BLAS pools that were already loaded (numpy's
  OpenBLAS reads its environment variable only at load time).

torch's inter-op pool can be sized only once per process, before any inter-op work has run;
when that is no longer possible the count in force is recorded with a note, not silently
claimed.

Pinning is process-wide (thread counts are process state): use it around whole runs, not
from several threads at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Environment variables read by OpenMP, MKL, OpenBLAS, Apple Accelerate and numexpr.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class _Pin:
    """One active :func:`pin_threads` block: what it asked for and what it must restore."""

    threads: int
    interop: int | None
    saved_env: dict[str, str | None]
    restore: dict[str, Any] = field(default_factory=dict)  # library -> value before the pin
    notes: list[str] = field(default_factory=list)
    pool_limits: Any = None  # a threadpoolctl context, when threadpoolctl is installed


_STACK: list[_Pin] = []
_LOCK = threading.RLock()


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
    from pipetune.core.measure.machine import detect_machine

    return max(1, detect_machine().cores)


def thread_settings() -> dict[str, Any]:
    """The thread settings in force now, as recorded in ``Machine.threads``.

    ``None`` for a library means it is not loaded in this process (its count will come
    from the environment variables when it loads).
    """
    torch = sys.modules.get("torch")
    faiss = sys.modules.get("faiss")
    intra = inter = faiss_threads = None
    if torch is not None:
        with contextlib.suppress(Exception):
            intra = int(torch.get_num_threads())
            inter = int(torch.get_num_interop_threads())
    if faiss is not None:
        with contextlib.suppress(Exception):
            faiss_threads = int(faiss.omp_get_max_threads())
    settings: dict[str, Any] = {
        "pinned": bool(_STACK),
        "torch_intra_op": intra,
        "torch_inter_op": inter,
        "faiss_omp": faiss_threads,
        "env": {name: os.environ.get(name) for name in THREAD_ENV_VARS},
        "cpu_affinity": _affinity(),
    }
    if _STACK:
        settings["requested"] = _STACK[-1].threads
        if _STACK[-1].notes:
            settings["notes"] = list(_STACK[-1].notes)
    return settings


@contextlib.contextmanager
def pin_threads(
    threads: int | None = None, *, interop: int | None = None
) -> Iterator[dict[str, Any]]:
    """Pin torch, OpenMP/BLAS and faiss to ``threads`` for the block; restore on exit.

    Args:
        threads: intra-op / OpenMP / BLAS / faiss thread count. ``None`` freezes the current
            count (:func:`default_thread_count`), so libraries loaded inside the block get the
            same count as those already loaded.
        interop: torch's inter-op pool size. torch allows this once per process, before any
            inter-op work; if that is no longer possible the actual count is recorded with a
            note.

    Yields the settings in force (:func:`thread_settings`), for the record.
    """
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
    try:
        yield thread_settings()
    finally:
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


# -- internals ----------------------------------------------------------------------------


def _apply(pin: _Pin) -> None:
    torch = sys.modules.get("torch")
    faiss = sys.modules.get("faiss")
    # Record every library's count before setting any: torch and faiss may share one OpenMP
    # runtime, so setting torch first would change what faiss reports as its "before".
    if torch is not None and "torch" not in pin.restore:
        with contextlib.suppress(Exception):
            pin.restore["torch"] = int(torch.get_num_threads())
    if faiss is not None and "faiss" not in pin.restore:
        with contextlib.suppress(Exception):
            pin.restore["faiss"] = int(faiss.omp_get_max_threads())
    if torch is not None:
        try:
            if torch.get_num_threads() != pin.threads:
                torch.set_num_threads(pin.threads)
        except Exception as exc:  # a broken or partial torch install must not stop a run
            _note(pin, f"torch intra-op threads not set: {exc}")
        if pin.interop is not None:
            try:
                if torch.get_num_interop_threads() != pin.interop:
                    torch.set_num_interop_threads(pin.interop)
            except Exception:
                _note(
                    pin,
                    f"torch inter-op threads stay at {torch.get_num_interop_threads()} "
                    f"(asked {pin.interop}): torch sizes that pool once per process",
                )
    if faiss is not None and hasattr(faiss, "omp_set_num_threads"):
        try:
            faiss.omp_set_num_threads(pin.threads)
        except Exception as exc:
            _note(pin, f"faiss OpenMP threads not set: {exc}")


def _restore(pin: _Pin) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in pin.restore:
        with contextlib.suppress(Exception):
            torch.set_num_threads(pin.restore["torch"])
    faiss = sys.modules.get("faiss")
    if faiss is not None and "faiss" in pin.restore:
        with contextlib.suppress(Exception):
            faiss.omp_set_num_threads(pin.restore["faiss"])


def _threadpool_limits(count: int) -> Any:
    """Limit already-loaded BLAS/OpenMP pools with threadpoolctl, when it is installed."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-not-found]
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
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
