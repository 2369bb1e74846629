"""Shared helpers for the vision benchmarks: thread pinning, side-by-side comparisons
through :func:`pipetune.core.measure.comparison.compare`, host load, the results file."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "vision.json"


def pin_threads(threads: int) -> dict[str, Any]:
    """The same intra-op thread counts for every variant (torch and OpenCV), recorded."""
    import cv2

    cv2.setNumThreads(threads)
    pinned: dict[str, Any] = {"opencv": threads}
    try:
        import torch

        torch.set_num_threads(threads)
        pinned["torch"] = threads
    except ImportError:
        pass
    return pinned


def machine() -> dict[str, Any]:
    from pipetune.core.measure.machine import detect_machine

    info = detect_machine()
    return {
        "cpu": info.cpu,
        "cores": info.cores,
        "logical_cores": info.logical_cores,
        "gpu": info.gpu,
        "memory_gb": info.memory_gb,
    }


#: A latency quantile is shown only with at least this many samples per side.
P99_MIN_SAMPLES = 100


def _task_waits() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a CPU."""
    total = 0.0
    try:
        for task in os.listdir("/proc/self/task"):
            with (
                contextlib.suppress(OSError, ValueError),
                open(f"/proc/self/task/{task}/schedstat") as handle,
            ):
                total += int(handle.read().split()[1]) / 1e9
    except OSError:
        return None
    return total


@contextlib.contextmanager
def host_load() -> Iterator[dict[str, Any]]:
    """The host's load while the block runs: load averages before and after, and the share
    of the run this process's threads spent waiting for a CPU (run-queue wait; threads
    that ended during the block are not counted). Filled in when the block exits."""
    record: dict[str, Any] = {"loadavg_before": list(os.getloadavg()), "cpus": os.cpu_count()}
    waits, start = _task_waits(), time.perf_counter()
    try:
        yield record
    finally:
        wall = time.perf_counter() - start
        after = _task_waits()
        record["loadavg_after"] = list(os.getloadavg())
        record["wall_s"] = wall
        record["run_queue_wait"] = (
            (after - waits) / wall if waits is not None and after is not None and wall > 0 else None
        )


def side_by_side(
    reference: Any,
    candidate: Any,
    items: Sequence[Any],
    *,
    rounds: int,
    per_round: int,
    threads: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``candidate`` against ``reference`` through the project's harness (paired,
    interleaved ABBA rounds, equal passes, a bootstrap interval), as a results row."""
    from pipetune.core.measure.comparison import CompareSettings, RuntimeSpec, compare

    settings = CompareSettings(rounds=rounds, items_per_round=min(per_round, len(items)))
    comparison = compare(
        reference,
        candidate,
        list(items),
        runtime=RuntimeSpec(threads=threads),
        settings=settings,
        log=log,
    )
    return comparison_row(comparison, len(items))


def comparison_row(comparison: Any, inputs_total: int) -> dict[str, Any]:
    """What a table needs from a :class:`Comparison`: the throughput ratio and its
    interval, the P99 ratio (only with :data:`P99_MIN_SAMPLES` samples per side), and
    how many inputs and samples the figures rest on."""
    samples = len(comparison.latencies_ms.get("a", ()))
    timed = getattr(comparison, "inputs_timed", None)
    if timed is None:
        timed = min(inputs_total, comparison.rounds * comparison.items_per_round)
    enough = samples >= P99_MIN_SAMPLES
    return {
        "speedup": comparison.primary,
        "ci": list(comparison.primary_ci),
        "confidence": comparison.confidence,
        "rounds": comparison.rounds,
        "items_per_round": comparison.items_per_round,
        "inputs_timed": timed,
        "inputs_total": inputs_total,
        "samples_per_side": samples,
        "throughput_rps": {"a": comparison.a.throughput_rps, "b": comparison.b.throughput_rps},
        "ms_per_item": {
            "a": 1000.0 / comparison.a.throughput_rps if comparison.a.throughput_rps else None,
            "b": 1000.0 / comparison.b.throughput_rps if comparison.b.throughput_rps else None,
        },
        "p99_ms": {
            "a": comparison.a.latency_ms.get("p99"),
            "b": comparison.b.latency_ms.get("p99"),
        },
        "p99_speedup": comparison.speedup.get("p99") if enough else None,
        "p99_note": None if enough else f"n/a ({samples} samples)",
    }


def coverage(row: dict[str, Any] | None) -> str:
    """ "timed on N of M inputs, S latency samples per side"."""
    if not row:
        return "-"
    return (
        f"timed on {row['inputs_timed']} of {row['inputs_total']} inputs, "
        f"{row['samples_per_side']} latency samples per side"
    )


def timed_passes(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Run ``fn`` once to warm up, then ``repeats`` times; the median pass time (seconds),
    all pass times, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def write_section(section: str, data: dict[str, Any]) -> Path:
    """Merge one script's results into benchmarks/results/vision.json."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if RESULTS.is_file():
        try:
            existing = json.loads(RESULTS.read_text())
        except json.JSONDecodeError:
            existing = {}
    existing[section] = data
    RESULTS.write_text(json.dumps(existing, indent=2, default=str) + "\n")
    return RESULTS


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain-text table: columns are (key, header)."""
    cells = [[header for _, header in columns]]
    for row in rows:
        cells.append([_fmt(row.get(key)) for key, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)
