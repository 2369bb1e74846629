"""What a stream run reports per request: :class:`StreamStats` and the counts behind it.

Time to first output, per-output latency, completion latency, outputs per request and
requests in flight, summed up for ``RunResult.stream``; :mod:`.stream` fills it in from
what it timed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StreamStats:
    """Per-request generation figures of a stream run (milliseconds)."""

    requests: int
    completed: int
    offered_rps: float
    source: str
    ttft_ms: dict[str, float]  # time to first output
    per_output_ms: dict[str, float]  # gaps between outputs, per output
    completion_ms: dict[str, float]
    outputs_per_request: dict[str, float]
    outputs_per_s: float  # all outputs over the run
    max_in_flight: int
    mean_in_flight: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _in_flight(arrival: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Requests in flight (arrived, not done) as each request arrives."""
    if arrival.size == 0:
        return np.zeros(0, dtype=int)
    ends = np.sort(done)
    order = np.sort(arrival)
    return np.arange(1, order.size + 1) - np.searchsorted(ends, order, side="right")


def _count_stats(counts: np.ndarray) -> dict[str, float]:
    if counts.size == 0:
        return {"mean": 0.0, "p50": 0.0, "max": 0.0}
    return {
        "mean": float(counts.mean()),
        "p50": float(np.median(counts)),
        "max": float(counts.max()),
    }
