"""How the recsys benchmark measures: every pair of variants side by side through
``pipetune.core.measure.comparison.compare`` (paired ABBA/BAAB rounds, equal passes, a
bootstrap interval), each variant wrapped as a one-stage pipeline; every figure says how
many distinct inputs and latency samples it rests on and the host's load while it ran.

Thread counts: each variant runs at its own best count, measured here (1, 2, 4, ... up to
the cores), never assumed: a wrapper sets BLAS (numpy's and faiss's OpenBLAS) and faiss's
OpenMP pool around every call, so the comparison's process-wide pin does not decide it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.measure.comparison import CompareSettings, compare
from pipetune.core.measure.timed_pass import RuntimeSpec
from pipetune.plugins.recsys import selection
from pipetune.plugins.recsys.threads import blas_thread_count, faiss_thread_count

#: ABBA rounds per comparison (the validator's default).
ROUNDS = 8


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_now() -> dict[str, Any]:
    """The host's load average (1, 5, 15 minutes) and core count, as ``uptime`` shows."""
    one, five, fifteen = os.getloadavg() if hasattr(os, "getloadavg") else (None,) * 3
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen, "cpus": os.cpu_count()}


@contextmanager
def all_threads(count: int) -> Iterator[None]:
    """BLAS and faiss on ``count`` threads for a block."""
    with blas_thread_count(count), faiss_thread_count(count):
        yield


class AtThreads:
    """``fn`` called with BLAS and faiss on ``threads`` threads (restored after each call)."""

    def __init__(self, fn: Callable[[Any], Any], threads: int) -> None:
        self.fn = fn
        self.threads = threads

    def __call__(self, item: Any) -> Any:
        with all_threads(self.threads):
            return self.fn(item)


def at_best_threads(
    fn: Callable[[Any], Any], inputs: Sequence[Any]
) -> tuple[AtThreads, dict[str, float]]:
    """``fn`` pinned to its fastest thread count on ``inputs`` (one at a time), and the
    milliseconds per input measured at every count."""
    threads, by_count = selection.best_threads(fn, inputs, all_threads)
    return AtThreads(fn, threads), by_count


def one_stage(name: str, fn: Callable[[Any], Any]) -> Pipeline:
    """A variant as a pipeline of one stage, so ``compare`` can time it."""
    return Pipeline(name, (Stage("run", fn, kind="retrieval"),), output_kind="ranked_ids")


def side_by_side(
    a: Pipeline,
    b: Pipeline,
    items: Sequence[Any],
    *,
    rounds: int = ROUNDS,
    label: str = "",
) -> dict[str, Any]:
    """``b`` against ``a`` through ``compare`` on ``items``: the throughput speedup and its
    interval, both sides' time per input and P99, and what the figure rests on."""
    log(f"  compare {label or b.name} vs {a.name} on {len(items)} inputs")
    before = load_now()
    started = time.perf_counter()
    result = compare(
        a,
        b,
        list(items),
        metric="throughput",
        runtime=RuntimeSpec(threads=None),
        settings=CompareSettings(rounds=rounds),
    ).to_dict()
    side_a, side_b = result["a"], result["b"]
    timed = result.get("inputs_timed") or min(
        len(items), result["rounds"] * result["items_per_round"]
    )
    return {
        "a": a.name,
        "b": b.name,
        "speedup": result["speedup"]["throughput"],
        "ci": result["ci"]["throughput"],
        "p99_speedup": result["speedup"]["p99"],
        "p99_ci": result["ci"]["p99"],
        "a_ms_per_input": 1000.0 / side_a["throughput_rps"],
        "b_ms_per_input": 1000.0 / side_b["throughput_rps"],
        "a_p99_ms": side_a["latency_ms"].get("p99"),
        "b_p99_ms": side_b["latency_ms"].get("p99"),
        "rounds": result["rounds"],
        "items_per_round": result["items_per_round"],
        "inputs_timed": timed,
        "inputs_total": result.get("inputs_total") or len(items),
        "samples_per_side": result.get("samples_per_side") or side_a["items"],
        "coverage_note": result.get("coverage_note", ""),
        "host_load": result.get("host_load") or {"before": before, "after": load_now()},
        "seconds": time.perf_counter() - started,
    }


def ratio_text(entry: dict[str, Any] | None) -> str:
    """``12.3x [11.0, 13.9] (timed on N of M inputs, S samples per side)``."""
    if not entry:
        return "-"
    low, high = entry["ci"]
    return (
        f"{entry['speedup']:.2f}x [{low:.2f}, {high:.2f}] (timed on {entry['inputs_timed']} of "
        f"{entry['inputs_total']} inputs, {entry['samples_per_side']} samples per side)"
    )
