"""Shared helpers for the vision benchmarks: thread pinning, timing, the results file."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
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
