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
    from pipetune.core.runtime.machine import detect_machine

    info = detect_machine()
    return {
        "cpu": info.cpu,
        "cores": info.cores,
        "logical_cores": info.logical_cores,
        "gpu": info.gpu,
        "memory_gb": info.memory_gb,
    }


@contextlib.contextmanager
def host_load() -> Iterator[dict[str, Any]]:
    """The host's load while the block runs (:class:`pipetune.core.measure.load.HostLoad`:
    this process's run-queue wait, other processes' CPU, the load average), with the load
    average at the start; filled in when the block exits."""
    from pipetune.core.measure.load import HostLoadMeter

    record: dict[str, Any] = {"load_average_before": os.getloadavg()[0]}
    meter = HostLoadMeter().start()
    try:
        yield record
    finally:
        record.update(meter.stop().to_dict())


def side_by_side(
    reference: Any,
    candidate: Any,
    items: Sequence[Any],
    *,
    rounds: int,
    per_round: int,
    threads: int,
    in_flight: Any = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``candidate`` against ``reference`` through the project's harness (paired,
    interleaved ABBA rounds, equal passes, a bootstrap interval), as a results row.
    ``in_flight``: what the candidate needs (a frame gate: its inputs in order)."""
    from pipetune.core.measure.comparison import CompareSettings, compare
    from pipetune.core.measure.timed_pass import RuntimeSpec

    settings = CompareSettings(
        rounds=rounds, items_per_round=min(per_round, len(items)), in_flight=in_flight
    )
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
    interval, the P99 ratio (only where enough samples stand behind it), how many inputs
    and samples the figures rest on, and the host's load while it ran."""
    samples = comparison.samples_per_side or len(comparison.latencies_ms.get("a", ()))
    timed = comparison.inputs_timed or min(
        inputs_total, comparison.rounds * comparison.items_per_round
    )
    enough = comparison.shown("p99")
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
        "coverage": comparison.coverage,
        "coverage_note": comparison.coverage_note,
        "host_load": None if comparison.host_load is None else dict(comparison.host_load),
        "in_flight": None if comparison.in_flight is None else comparison.in_flight.to_dict(),
    }


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
