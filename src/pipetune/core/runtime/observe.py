"""What the runtime observes about a run while it runs it: the scheduler's run-queue wait
(contention on a busy host), an input's size (to match a recorded trace's request sizes)
and latency percentiles. Small and dependency-free, so the runtime and everything above it
(the profiler's probes, the load tests, the monitor) share one definition.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def percentiles_ms(latencies_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """P50/P95/P99/max/mean in milliseconds (linear interpolation)."""
    values = np.asarray(latencies_s, dtype=float) * 1000.0
    if values.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


def runqueue() -> tuple[float, float] | None:
    """``(seconds on a CPU, seconds runnable but waiting for one)`` of the calling thread
    (Linux ``/proc/thread-self/schedstat``), or ``None`` where unavailable.

    The wait is the host's contention: on a busy machine a CPU-bound stage's wall time grows
    while its CPU time does not, so CPU/wall understates it unless the wait is subtracted.
    """
    try:
        with open("/proc/thread-self/schedstat") as handle:
            on_cpu, waiting, _ = handle.read().split()
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return None


def process_runqueue() -> dict[int, tuple[float, float]] | None:
    """:func:`runqueue` for every thread of this process, by thread id (Linux
    ``/proc/self/task/*/schedstat``), or ``None`` where unavailable. Differences between
    two readings give the whole process's wait, whichever threads did the work."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    out: dict[int, tuple[float, float]] = {}
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as handle:
                on_cpu, waiting, _ = handle.read().split()
            out[int(task)] = (int(on_cpu) / 1e9, int(waiting) / 1e9)
        except (OSError, ValueError):
            continue  # the thread ended between listing and reading
    return out or None


def input_size(item: Any) -> tuple[str, float] | None:
    """A comparable size for one input: ``(measure, value)`` or ``None`` when unknown.

    Arrays and tensors: element count (``shape``); str/bytes and sequences: ``len()``;
    paths: bytes on disk; mappings: the sum of their values' sizes.
    """
    shape = getattr(item, "shape", None)
    if shape is not None and not isinstance(item, type):
        with contextlib.suppress(TypeError, ValueError):
            return "elements", float(math.prod(int(d) for d in shape))
    if isinstance(item, os.PathLike):
        try:
            return "bytes on disk", float(os.stat(item).st_size)
        except OSError:
            return None
    if isinstance(item, Mapping):
        parts = [input_size(v) for v in item.values()]
        if parts and all(p is not None for p in parts):
            return "len", float(sum(p[1] for p in parts if p is not None))
        return None
    if isinstance(item, str | bytes | bytearray | list | tuple):
        return "len", float(len(item))
    with contextlib.suppress(TypeError):
        return "len", float(len(item))
    return None
