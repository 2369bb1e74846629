"""The profiler's separate passes: hot functions, per-layer time, the GIL check, memory.

Each runs in its own pass over a bounded number of inputs, after the timing pass, because
each distorts what it runs: cProfile slows Python calls several-fold, forward hooks add a
call per layer, tracemalloc slows every allocation, and two threads share the cores. The
timing pass stays clean; these passes say *why* a stage is slow.
"""

from __future__ import annotations

import contextlib
import cProfile
import math
import pstats
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import ConcurrencyPoint, HotFunction, LayerTime
from pipetune.core.runtime.observe import input_size, runqueue

#: A stage whose 2-thread throughput is below this multiple of its 1-thread throughput
#: does not run in parallel with itself.
GIL_SCALING_THRESHOLD = 1.3
#: CPU time per wall second above which a stage runs native threads (it releases the GIL).
MULTITHREADED_CPU_RATIO = 1.5
#: CPU time per wall second below which a stage mostly waits (I/O, sleep, a device).
WAITING_CPU_RATIO = 0.5
#: The knee: the lowest concurrency reaching this fraction of the best throughput measured.
KNEE_FRACTION = 0.9


# -- running a pass over bounded inputs ---------------------------------------------------


def _bounded(items: Sequence[Any], max_items: int, budget_s: float) -> Any:
    """Yield inputs until ``max_items`` or ``budget_s`` seconds (at least one input)."""
    end = time.perf_counter() + budget_s
    for count, item in enumerate(items[:max_items]):
        if count and time.perf_counter() >= end:
            return
        yield item


def _bounded_passes(
    pipeline: Pipeline,
    items: Sequence[Any],
    max_items: int,
    budget_s: float,
    on_item: Callable[[int], None] | None,
    call: Callable[[Stage, Any], Any],
) -> int:
    """Run bounded inputs (:func:`_bounded`) through the stages, each stage call made by
    ``call(stage, value)`` (which profiles or times it); returns the inputs used."""
    used = 0
    for item in _bounded(items, max_items, budget_s):
        value = item
        for stage in pipeline.stages:
            value = call(stage, value)
        used += 1
        if on_item is not None:
            on_item(used)
    return used


# -- hot functions ------------------------------------------------------------------------

#: Frames from pipetune's Stage wrapper are left out of hot functions.
_STAGE_WRAPPER = str(Path("pipetune", "core", "kernel", "model.py"))


def hot_functions(
    pipeline: Pipeline,
    items: Sequence[Any],
    *,
    max_items: int = 32,
    budget_s: float = 10.0,
    top: int = 10,
    on_item: Callable[[int], None] | None = None,
) -> tuple[dict[str, tuple[HotFunction, ...]], int]:
    """The functions where each stage spends its time, by self time (cProfile).

    Returns ``({stage: top functions}, inputs used)``. A stage's share is of the time
    cProfile saw inside that stage; ``self_ms``/``cum_ms`` are per stage call (inflated by
    cProfile's own overhead, which is why this is not the timing pass).
    """
    profilers = {stage.name: cProfile.Profile() for stage in pipeline.stages}

    def profiled(stage: Stage, value: Any) -> Any:
        with profilers[stage.name]:  # enable(), and disable() however the stage ends
            return stage(value)

    used = _bounded_passes(pipeline, items, max_items, budget_s, on_item, profiled)
    result: dict[str, tuple[HotFunction, ...]] = {}
    for name, prof in profilers.items():
        result[name] = _top_functions(prof, used, top)
    return result, used


def _top_functions(prof: cProfile.Profile, calls: int, top: int) -> tuple[HotFunction, ...]:
    try:
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    except TypeError:  # nothing was recorded
        return ()
    rows = []
    for (filename, line, func), (_, ncalls, self_s, cum_s, _) in stats.items():
        if "_lsprof.Profiler" in func:  # the profiler's own disable()
            continue
        if filename.endswith(_STAGE_WRAPPER):  # Stage.__call__ passing slots: not user code
            continue
        rows.append((self_s, cum_s, ncalls, _label(filename, line, func)))
    total = sum(row[0] for row in rows)
    if total <= 0 or calls <= 0:
        return ()
    rows.sort(key=lambda row: row[0], reverse=True)
    return tuple(
        HotFunction(
            function=label,
            share=self_s / total,
            calls=int(ncalls),
            self_ms=self_s * 1000 / calls,
            cum_ms=cum_s * 1000 / calls,
        )
        for self_s, cum_s, ncalls, label in rows[:top]
    )


def _label(filename: str, line: int, func: str) -> str:
    if filename == "~":  # a builtin: "<built-in method time.sleep>"
        return func
    return f"{func} ({_short_path(filename)}:{line})"


def _short_path(filename: str) -> str:
    path = Path(filename)
    parts = path.parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            return "/".join(parts[parts.index(marker) + 1 :])
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return "/".join(parts[-2:])


# -- per-layer time of torch modules ------------------------------------------------------


def torch_modules(stage: Stage) -> list[tuple[str, Any]]:
    """``(slot name, module)`` for the torch modules in a stage's slots (or held by a slot
    object as ``.model``). Empty when torch is not loaded."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    found = []
    for slot, value in stage.slots.items():
        if isinstance(value, torch.nn.Module):
            found.append((slot, value))
        elif isinstance(getattr(value, "model", None), torch.nn.Module):
            found.append((f"{slot}.model", value.model))
    return found


def layer_times(
    pipeline: Pipeline,
    items: Sequence[Any],
    *,
    max_items: int = 16,
    budget_s: float = 10.0,
    top: int = 25,
    on_item: Callable[[int], None] | None = None,
) -> tuple[dict[str, tuple[LayerTime, ...]], int]:
    """Time per leaf layer of every torch module found in stage slots, with forward
    pre/post hooks (removed afterwards: the user's modules are left as they were).

    Returns ``({stage: layers}, inputs used)``; each stage's list ends with
    ``(outside leaf layers)``, the stage time not spent in any leaf module (Python glue,
    functional ops in a parent's ``forward``), so shares sum to 1. On CUDA the hooks
    synchronize the device so each layer's time covers its kernels.
    """
    torch = sys.modules.get("torch")
    targets = {stage.name: torch_modules(stage) for stage in pipeline.stages}
    if torch is None or not any(targets.values()):
        return {}, 0
    hooks = _LayerHooks(torch)
    try:
        hooks.attach_leaves(targets)
        used = _bounded_passes(pipeline, items, max_items, budget_s, on_item, hooks.run_stage)
    finally:
        hooks.remove()
    result: dict[str, tuple[LayerTime, ...]] = {}
    for stage_name, modules in targets.items():
        if not modules or used == 0:
            continue
        layers = _stage_layers(stage_name, hooks, hooks.stage_time.get(stage_name, 0.0), used, top)
        if layers:
            result[stage_name] = layers
    return result, used


class _LayerHooks:
    """Forward pre/post hooks on leaf modules that add up each layer's time per stage."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.stage = ""  # the stage running now: the layers' time is charged to it
        self.totals: dict[tuple[str, str], list[float]] = {}  # (stage, layer) -> [seconds, calls]
        self.kinds: dict[str, str] = {}  # layer -> module class name
        self.handles: list[Any] = []
        self.starts: dict[int, list[float]] = {}
        self.stage_time: dict[str, float] = {}  # stage -> seconds in it, layers or not

    def attach_leaves(self, targets: dict[str, list[tuple[str, Any]]]) -> None:
        """Hook every leaf module once (a module shared by stages is timed once)."""
        seen: set[int] = set()
        for modules in targets.values():
            for slot, root in modules:
                for name, module in root.named_modules():
                    if id(module) in seen or any(True for _ in module.children()):
                        continue
                    seen.add(id(module))
                    self.attach(f"{slot}.{name}" if name else slot, module)

    def attach(self, name: str, module: Any) -> None:
        """Time ``module`` as layer ``name``: the pre hook stamps, the post hook adds."""
        perf = time.perf_counter
        sync = self._sync_for(module)
        key = id(module)
        starts = self.starts

        def pre(_module: Any, _args: Any) -> None:
            if sync is not None:
                sync()
            starts.setdefault(key, []).append(perf())

        def post(_module: Any, _args: Any, _output: Any) -> None:
            if sync is not None:
                sync()
            stack = starts.get(key)
            if not stack:
                return
            elapsed = perf() - stack.pop()
            record = self.totals.setdefault((self.stage, name), [0.0, 0])
            record[0] += elapsed
            record[1] += 1

        self.handles.append(module.register_forward_pre_hook(pre))
        self.handles.append(module.register_forward_hook(post))
        self.kinds[name] = type(module).__name__

    def _sync_for(self, module: Any) -> Callable[[], None] | None:
        """CUDA's synchronize for a module on the GPU, so its time covers its kernels."""
        with contextlib.suppress(StopIteration, Exception):
            if next(module.parameters()).is_cuda:
                return self.torch.cuda.synchronize
        return None

    def run_stage(self, stage: Stage, value: Any) -> Any:
        """``stage(value)``, timed, with the layers that run meanwhile charged to it."""
        self.stage = stage.name
        t0 = time.perf_counter()
        value = stage(value)
        spent = time.perf_counter() - t0
        self.stage_time[stage.name] = self.stage_time.get(stage.name, 0.0) + spent
        return value

    def remove(self) -> None:
        """Take every hook off again: the user's modules are left as they were."""
        for handle in self.handles:
            handle.remove()


def _stage_layers(
    stage_name: str, hooks: _LayerHooks, spent: float, used: int, top: int
) -> tuple[LayerTime, ...]:
    """A stage's ``top`` layers by time, then the rest as one row; empty if none ran."""
    rows = sorted(
        ((layer, s, c) for (st, layer), (s, c) in hooks.totals.items() if st == stage_name),
        key=lambda row: row[1],
        reverse=True,
    )
    if not rows:
        return ()
    inside = sum(row[1] for row in rows)
    denominator = max(spent, inside) or 1.0
    layers = [
        LayerTime(
            layer=layer,
            ms=seconds * 1000 / used,
            share=seconds / denominator,
            calls=round(calls / used),
            module=hooks.kinds.get(layer, ""),
        )
        for layer, seconds, calls in rows[:top]
    ]
    rest = max(0.0, denominator - sum(row[1] for row in rows[:top]))
    layers.append(
        LayerTime(
            layer="(outside leaf layers)" if len(rows) <= top else "(other layers and glue)",
            ms=rest * 1000 / used,
            share=rest / denominator,
        )
    )
    return tuple(layers)


# -- the GIL ------------------------------------------------------------------------------


def scaling_check(stage: Stage, inputs: Sequence[Any], budget_s: float = 0.3) -> dict[str, Any]:
    """Calls per second of ``stage`` with 1 thread, then 2 threads calling it at once.

    Returns ``{"scaling": r2 / r1, "thread_cpu_ratio": ...}`` (each thread's CPU time per
    wall second in the 2-thread run: about 0.5 when the two take turns on the GIL), or
    ``{"error": ...}`` when the stage raised (some objects are not thread-safe).

    ``cpu_ratio`` is the 1-thread run's CPU time per second it could run: where the kernel
    reports run-queue waits (:func:`runqueue`), the time spent runnable but waiting for a
    CPU (other processes on the host) is left out, so a busy host does not make a CPU-bound
    stage look like it waits. The scaling is *not* corrected that way: while the thread
    holding the GIL waits for a CPU the other cannot run either, so subtracting waits would
    overstate it; both threads get the same fair share of a busy host, so the raw ratio
    stays meaningful.
    """
    inputs = list(inputs)
    if not inputs:
        return {"error": "no recorded inputs"}
    try:
        stage(inputs[0])  # warm caches before either measurement
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    loop = _CallLoop(stage, inputs, budget_s)
    one: list[_LoopRun] = []
    loop.run(one, 0, None)
    if loop.errors or not one:
        return {"error": loop.errors[0] if loop.errors else "no result"}
    two = _two_threads(loop)
    if loop.errors or len(two) < 2:
        return {
            "error": f"raised when called from 2 threads: {loop.errors[0] if loop.errors else '?'}"
        }
    return _scaling_evidence(one[0], two)


#: One thread's loop: (calls, wall seconds, thread CPU seconds, run-queue wait or -1.0).
_LoopRun = tuple[int, float, float, float]


class _CallLoop:
    """Calls one stage over the inputs for a time budget, from any thread; keeps errors."""

    def __init__(self, stage: Stage, inputs: list[Any], budget_s: float) -> None:
        self.stage = stage
        self.inputs = inputs
        self.budget_s = budget_s
        self.errors: list[str] = []

    def measure(self, offset: int, start: threading.Barrier | None) -> _LoopRun:
        """Call the stage from input ``offset`` on until the budget is spent (2 calls at least)."""
        perf = time.perf_counter
        if start is not None:
            start.wait()
        calls = 0
        queue0 = runqueue()
        t0, c0 = perf(), time.thread_time()
        end = t0 + self.budget_s
        while perf() < end or calls < 2:
            self.stage(self.inputs[(offset + calls) % len(self.inputs)])
            calls += 1
        wall, cpu = perf() - t0, time.thread_time() - c0
        queue1 = runqueue()
        waited = queue1[1] - queue0[1] if queue0 is not None and queue1 is not None else -1.0
        return calls, wall, cpu, waited

    def run(self, out: list[_LoopRun], offset: int, start: threading.Barrier | None) -> None:
        """:meth:`measure` into ``out``; an exception is kept and breaks the other's barrier."""
        try:
            out.append(self.measure(offset, start))
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            if start is not None:
                start.abort()


def _two_threads(loop: _CallLoop) -> list[_LoopRun]:
    """Two threads run ``loop`` at once (released together), from opposite halves of the inputs."""
    barrier = threading.Barrier(2)
    two: list[_LoopRun] = []
    workers = [
        threading.Thread(
            target=loop.run, args=(two, k * len(loop.inputs) // 2, barrier), daemon=True
        )
        for k in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return two


def _scaling_evidence(one: _LoopRun, two: list[_LoopRun]) -> dict[str, Any]:
    """The 2-thread over 1-thread rate, and CPU per wall second net of run-queue waits."""
    calls_one, wall_one, cpu_one, wait_one = one
    calls_two = sum(row[0] for row in two)
    rate_one = calls_one / wall_one
    rate_two = calls_two / max(row[1] for row in two)
    evidence: dict[str, Any] = {
        "scaling": rate_two / rate_one if rate_one > 0 else None,
        "thread_cpu_ratio": float(np.mean([row[2] / row[1] for row in two if row[1] > 0])),
        "calls": [calls_one, calls_two],
        "cpu_ratio": cpu_one / wall_one if wall_one > 0 else None,
    }
    if wait_one >= 0 and wall_one > 0:
        evidence.update(
            cpu_ratio=cpu_one / max(wall_one - wait_one, 1e-9),
            runqueue_wait_share=wait_one / wall_one,
        )
    return evidence


def classify_gil(cpu_ratio: float | None, scaling: float | None, cores: int) -> bool | None:
    """Does the stage hold the GIL while it runs? ``None`` when the evidence cannot tell.

    * CPU time per wall second below :data:`WAITING_CPU_RATIO`: it mostly waits (I/O,
      sleep, a device) and the GIL is released while waiting: **no**.
    * Above :data:`MULTITHREADED_CPU_RATIO`: several cores work while it runs, i.e. native
      threads outside the GIL: **no**.
    * Otherwise it keeps one core busy: Python bytecode (holds the GIL) or single-threaded
      native code (usually releases it). Only the scaling check tells them apart: with 2
      threads on a machine with 2+ cores, less than :data:`GIL_SCALING_THRESHOLD` times the
      1-thread throughput means the calls serialize: **yes**; more: **no**.
    """
    if cpu_ratio is None or not math.isfinite(cpu_ratio):
        return None
    if cpu_ratio < WAITING_CPU_RATIO or cpu_ratio > MULTITHREADED_CPU_RATIO:
        return False
    if scaling is None or cores < 2:
        return None
    return scaling < GIL_SCALING_THRESHOLD


# -- memory -------------------------------------------------------------------------------


class PeakRSS:
    """The resident-set high-water mark over a block.

    On Linux the kernel's counter (``VmHWM``) is reset on entry by writing ``5`` to
    ``/proc/self/clear_refs`` (which resets only that counter), so the peak is the block's.
    Where that is not possible the process-lifetime peak (``ru_maxrss``) is reported and
    labelled as such.
    """

    def __init__(self) -> None:
        self.method = "ru_maxrss (process lifetime)"
        self.start_mb: float | None = None
        self.peak_mb: float | None = None

    def __enter__(self) -> PeakRSS:
        self.start_mb = _status_mb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            if _status_mb("VmHWM") is not None:
                self.method = "VmHWM (reset at the start of the pass)"
        except OSError:
            pass
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self.method.startswith("VmHWM"):
            self.peak_mb = _status_mb("VmHWM")
        else:
            try:
                import resource  # POSIX only
            except ImportError:
                self.method = "unavailable on this platform"
                return
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.peak_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024

    def summary(self) -> dict[str, Any]:
        return {"rss_peak_mb": self.peak_mb, "rss_start_mb": self.start_mb, "method": self.method}


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def python_heap_by_stage(
    pipeline: Pipeline,
    items: Sequence[Any],
    *,
    max_items: int = 8,
    budget_s: float = 5.0,
) -> tuple[dict[str, float], int]:
    """Peak Python-heap growth inside each stage, in MB (tracemalloc: numpy arrays are
    traced, torch tensors and other native allocations are not)."""
    already = tracemalloc.is_tracing()
    if not already:
        tracemalloc.start()
    peaks = {stage.name: 0.0 for stage in pipeline.stages}
    used = 0
    try:
        for item in _bounded(items, max_items, budget_s):
            value = item
            for stage in pipeline.stages:
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                value = stage(value)
                peak = tracemalloc.get_traced_memory()[1]
                peaks[stage.name] = max(peaks[stage.name], (peak - before) / 2**20)
            used += 1
    finally:
        if not already:
            tracemalloc.stop()
    return peaks, used


# -- the concurrency knee -----------------------------------------------------------------


def find_knee(points: Sequence[ConcurrencyPoint]) -> int | None:
    """The lowest concurrency reaching :data:`KNEE_FRACTION` of the best throughput
    measured: beyond it, more concurrency buys at most 10 % more throughput. ``None`` when
    fewer than two levels were measured or throughput still rises at the highest level."""
    ordered = sorted(points, key=lambda p: p.concurrency)
    if len(ordered) < 2:
        return None
    best = max(p.throughput_rps for p in ordered)
    if best <= 0:
        return None
    for point in ordered:
        if point.throughput_rps >= KNEE_FRACTION * best:
            return None if point is ordered[-1] else point.concurrency
    return None


def knee_note(points: Sequence[ConcurrencyPoint], knee: int | None, machine: Any) -> str:
    """The sweep in one sentence, labelled as specific to this host."""
    ordered = sorted(points, key=lambda p: p.concurrency)
    if len(ordered) < 2:
        return ""
    host = f"{machine.cpu}, {machine.cores} cores" + (f", {machine.gpu}" if machine.gpu else "")
    caveat = (
        f"This is specific to this host ({host}) and its load at the time; re-measure on the "
        "machine that will serve."
    )
    if knee is None:
        top = ordered[-1]
        return (
            f"Throughput still rises at the highest concurrency measured ({top.concurrency}: "
            f"{top.throughput_rps:.1f} req/s); measure higher levels to find the knee. {caveat}"
        )
    at = next(p for p in ordered if p.concurrency == knee)
    last = ordered[-1]
    best = max(p.throughput_rps for p in ordered)
    return (
        f"Knee at concurrency {knee}: {at.throughput_rps:.1f} req/s "
        f"({at.throughput_rps / best:.0%} of the best measured); going to {last.concurrency} "
        f"gives {last.throughput_rps:.1f} req/s while P99 goes from {at.p99_ms:.1f} to "
        f"{last.p99_ms:.1f} ms. {caveat}"
    )


# -- workload realism ---------------------------------------------------------------------


def size_summary(items: Sequence[Any], limit: int = 10_000) -> dict[str, Any] | None:
    """Size statistics over (up to ``limit``) inputs, or ``None`` when sizes are unknown."""
    sizes = [input_size(item) for item in items[:limit]]
    known = [s for s in sizes if s is not None]
    if not known or len(known) < len(sizes):
        return None
    values = np.array([value for _, value in known])
    return {
        "measure": known[0][0],
        "min": float(values.min()),
        "p50": float(np.median(values)),
        "max": float(values.max()),
        "distinct": int(np.unique(values).size),
        "inputs": len(values),
    }
