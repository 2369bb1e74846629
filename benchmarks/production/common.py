"""Shared by the production benchmarks: the machine, the load, and the results file
(``benchmarks/results/production.json``, one section per script)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipetune.core.runtime.machine import detect_machine

RESULTS = Path(__file__).resolve().parents[1] / "results" / "production.json"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    found = detect_machine()
    return {
        "cpu": found.cpu,
        "cores": found.cores,
        "logical_cores": found.logical_cores,
        "usable_cores": found.usable_cores,
        "memory_gb": found.memory_gb,
        "gpu": found.gpu,
        "fingerprint": found.fingerprint,
        "threads": dict(found.threads),
    }


def write_section(section: str, data: dict[str, Any]) -> Path:
    """Replace ``section`` in the results file, keeping the other scripts' sections."""
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
