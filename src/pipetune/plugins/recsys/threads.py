"""Thread settings for faiss (OpenMP), numpy's BLAS and torch: read, pin, restore.

Baseline and candidate must run with the same thread settings, or a speedup measures the
thread count rather than the change. faiss parallelizes a search over the queries of a
batch with OpenMP; a single query gains nothing from extra threads but still pays to wake
them, which is why single-query serving usually runs faiss with one thread (the tune step
measures both and records the choice).
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_BLAS_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_BLAS_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)


def _openblas() -> list[tuple[str, Any, Any]]:
    """Every loaded OpenBLAS with its thread setter and getter (Linux). numpy ships one,
    and the faiss-cpu wheel bundles another: both must be pinned."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    found = []
    for path in sorted(paths):
        functions = _blas_functions(path)
        if functions is not None:
            found.append((path, *functions))
    # numpy's first: it is the one blas_threads() reports.
    return sorted(found, key=lambda entry: "numpy" not in entry[0])


@functools.lru_cache(maxsize=8)
def _blas_functions(path: str) -> tuple[Any, Any] | None:
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    setter = next((getattr(library, n) for n in _BLAS_SETTERS if hasattr(library, n)), None)
    getter = next((getattr(library, n) for n in _BLAS_GETTERS if hasattr(library, n)), None)
    return (setter, getter) if setter is not None and getter is not None else None


def blas_threads() -> int | None:
    """numpy's BLAS thread count (``None`` when it cannot be read)."""
    import numpy  # noqa: F401  (loads OpenBLAS)

    found = _openblas()
    return int(found[0][2]()) if found else None


def set_blas_threads(count: int) -> bool:
    """Set every loaded OpenBLAS (numpy's, faiss's) to ``count`` threads."""
    import numpy  # noqa: F401

    found = _openblas()
    for _, setter, _ in found:
        setter(int(count))
    return bool(found)


def faiss_pool() -> Any:
    """faiss's OpenMP pool, for pipetune to pin, record and set per stage
    (``register_thread_pools``): ``omp_set_num_threads`` may be set around each call."""
    import sys

    from pipetune.core.kernel.registry import ThreadPool

    return ThreadPool(
        "faiss",
        module="faiss",
        get=lambda: int(sys.modules["faiss"].omp_get_max_threads()),
        set=lambda count: sys.modules["faiss"].omp_set_num_threads(int(count)),
        description="faiss's OpenMP pool (faiss.omp_set_num_threads)",
    )


def faiss_threads() -> int | None:
    try:
        import faiss
    except ImportError:
        return None
    return int(faiss.omp_get_max_threads())


def build_threads() -> int:
    """faiss threads for building an index: every core this process may use (a build is
    one-off offline work). The HNSW build estimate measures its sample builds on the same
    count, so the estimate and the build it predicts agree whatever threads searches are
    pinned to."""
    from pipetune.core.runtime.machine import detect_machine

    usable = detect_machine().usable_cores
    return max(1, int(usable)) if usable else max(1, os.cpu_count() or 1)


@contextmanager
def faiss_thread_count(count: int | None) -> Iterator[None]:
    """Run a block with faiss's OpenMP thread count set to ``count`` (``None``: as is)."""
    if count is None:
        yield
        return
    import faiss

    previous = faiss.omp_get_max_threads()
    if previous == count:
        yield
        return
    faiss.omp_set_num_threads(int(count))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


@contextmanager
def blas_thread_count(count: int | None) -> Iterator[None]:
    """Run a block with every loaded OpenBLAS on ``count`` threads (``None``: as is)."""
    previous = blas_threads() if count is not None else None
    if count is None or previous is None or previous == count:
        yield
        return
    set_blas_threads(count)
    try:
        yield
    finally:
        set_blas_threads(previous)


def thread_candidates() -> list[int]:
    """Thread counts worth measuring on this host: 1, 2, 4, ... up to the cores this
    process may run on, and that count itself. The best is measured, never assumed to be
    the core count: on a busy host one thread is often the fastest."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    counts = {1, cores}
    value = 2
    while value < cores:
        counts.add(value)
        value *= 2
    return sorted(counts)


@contextmanager
def pinned_threads(count: int) -> Iterator[dict[str, Any]]:
    """Pin faiss, BLAS and torch (when imported) to ``count`` threads; restore afterwards.
    Yields the settings in force, for the results."""
    import sys

    saved: dict[str, Any] = {"faiss": faiss_threads(), "blas": blas_threads()}
    torch = sys.modules.get("torch")
    if torch is not None:
        saved["torch"] = torch.get_num_threads()
    try:
        if saved["faiss"] is not None:
            import faiss

            faiss.omp_set_num_threads(count)
        if saved["blas"] is not None:
            set_blas_threads(count)
        if torch is not None:
            torch.set_num_threads(count)
        yield thread_settings()
    finally:
        if saved["faiss"] is not None:
            import faiss

            faiss.omp_set_num_threads(saved["faiss"])
        if saved["blas"] is not None:
            set_blas_threads(saved["blas"])
        if torch is not None:
            torch.set_num_threads(saved["torch"])


def thread_settings() -> dict[str, Any]:
    """The thread settings in force, for results and reports."""
    import sys

    torch = sys.modules.get("torch")
    return {
        "faiss_omp": faiss_threads(),
        "blas": blas_threads(),
        "torch": torch.get_num_threads() if torch is not None else None,
        "cpu_count": os.cpu_count(),
        "env": {
            name: os.environ[name]
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
            if name in os.environ
        },
    }
