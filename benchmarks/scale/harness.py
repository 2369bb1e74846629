"""The scale benchmarks' harness: side-by-side passes, interleaved, and the results file.

Every figure is a set of passes of each side, run in alternating order round after round
(A B, then B A, ...), the same number of passes per side, on the same inputs; a ratio is
the median of the per-round ratios with their range (a few passes give a range, not a
confidence interval). The host's load average is recorded before and after each part.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "scale.json"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    from pipetune.core.runtime.machine import detect_machine

    found = detect_machine()
    return {
        "cpu": found.cpu,
        "cores": found.cores,
        "usable_cores": found.usable_cores,
        "memory_gb": found.memory_gb,
        "fingerprint": found.fingerprint,
    }


def side_by_side(
    sides: Mapping[str, Callable[[int], dict[str, Any]]],
    passes: int,
    log: Callable[[str], None] = print,
) -> dict[str, list[dict[str, Any]]]:
    """``passes`` passes of every side, interleaved; each call gets its round number."""
    names = list(sides)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(passes):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            started = time.perf_counter()
            found = sides[name](round_)
            found.setdefault("seconds", time.perf_counter() - started)
            results[name].append(found)
            log(f"  round {round_ + 1}/{passes} {name}: {_brief(found)}")
    return results


def _brief(found: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in found.items() if isinstance(v, int | float)}
    return ", ".join(f"{k} {v:.3g}" for k, v in shown.items())


def spread(values: Sequence[float]) -> dict[str, Any]:
    clean = [float(v) for v in values]
    return {
        "median": statistics.median(clean) if clean else None,
        "min": min(clean) if clean else None,
        "max": max(clean) if clean else None,
        "n": len(clean),
        "values": clean,
    }


def paired_ratio(top: Sequence[float], bottom: Sequence[float]) -> dict[str, Any]:
    """Per-round ``top / bottom``: its median and range."""
    return spread([a / b for a, b in zip(top, bottom, strict=True) if b])


def write_section(section: str, data: dict[str, Any]) -> Path:
    """Replace ``section`` in the results file, keeping the others."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        current = json.loads(RESULTS.read_text())
        if not isinstance(current, dict):
            current = {}
    except (OSError, ValueError):
        current = {}
    current[section] = data
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, default=str) + "\n")
    tmp.replace(RESULTS)
    return RESULTS
