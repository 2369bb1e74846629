"""What every benchmark shares: one comparison harness, the host's load, the results file.

* :func:`side_by_side` measures a candidate against a reference through
  :func:`pipetune.core.measure.comparison.compare` (paired, interleaved ABBA/BAAB rounds,
  equal passes on both sides, a bootstrap interval) and returns a results row;
* :func:`comparison_row` is that row: the ratio and its interval, the P99 ratio only where
  enough samples stand behind it, how many distinct inputs and latency samples the figures
  rest on, and the host's load while it ran. ``benchmarks.render`` reads these keys;
* :func:`host_load` measures the load over a block that is not a comparison (a rate);
* :func:`write_section` merges one script's section into ``benchmarks/results/<area>.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def side_by_side(
    reference: Any,
    candidate: Any,
    items: Sequence[Any],
    *,
    settings: Any = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    expected_s: float | None = None,
) -> dict[str, Any]:
    """``candidate`` against ``reference`` (two :class:`~pipetune.Pipeline` objects) on
    ``items`` through ``compare``, offline, in the calling thread; a results row.
    ``expected_s``: about how long the slower side takes an input, where known (``compare``
    then probes one input instead of four, and sets its hang deadline from it)."""
    from pipetune.core.measure.comparison import CompareSettings, compare
    from pipetune.core.measure.timed_pass import RuntimeSpec

    comparison = compare(
        reference,
        candidate,
        list(items),
        runtime=RuntimeSpec(threads=threads),
        settings=settings or CompareSettings(),
        log=log,
        expected_item_s=expected_s,
    )
    return comparison_row(comparison, len(items))


def comparison_row(comparison: Any, inputs_total: int | None = None) -> dict[str, Any]:
    """What a table needs from a :class:`~pipetune.core.measure.comparison_result.Comparison`
    (the keys ``benchmarks.render`` reads for every side-by-side figure)."""
    samples = comparison.samples_per_side
    enough = comparison.shown("p99")
    a, b = comparison.a, comparison.b
    return {
        "harness": "pipetune.core.measure.comparison.compare",
        "metric": comparison.metric,
        "speedup": comparison.primary,
        "ci": list(comparison.primary_ci),
        "confidence": comparison.confidence,
        "rounds": comparison.rounds,
        "items_per_round": comparison.items_per_round,
        "inputs_timed": comparison.inputs_timed,
        "inputs_total": comparison.inputs_total or inputs_total,
        "samples_per_side": samples,
        "throughput_rps": {"a": a.throughput_rps, "b": b.throughput_rps},
        "ms_per_item": {
            "a": 1000.0 / a.throughput_rps if a.throughput_rps else None,
            "b": 1000.0 / b.throughput_rps if b.throughput_rps else None,
        },
        "p50_ms": {"a": a.latency_ms.get("p50"), "b": b.latency_ms.get("p50")},
        "p99_ms": {"a": a.latency_ms.get("p99"), "b": b.latency_ms.get("p99")},
        "p99_speedup": comparison.speedup.get("p99") if enough else None,
        "p99_note": None if enough else f"n/a ({samples} samples)",
        "coverage": comparison.coverage,
        "coverage_note": comparison.coverage_note,
        "threads": dict(comparison.threads),
        "host_load": None if comparison.host_load is None else dict(comparison.host_load),
    }


@contextlib.contextmanager
def host_load() -> Iterator[dict[str, Any]]:
    """The host's load while the block runs (:class:`pipetune.core.measure.load.HostLoad`:
    this process's run-queue wait, other processes' CPU, the load average), with the load
    average at the start; filled in when the block exits."""
    from pipetune.core.measure.load import HostLoadMeter

    record: dict[str, Any] = {"load_average_before": _load_average()}
    meter = HostLoadMeter().start()
    try:
        yield record
    finally:
        record.update(meter.stop().to_dict())


def write_section(
    area: str, section: str, data: dict[str, Any], *, flat_section: str | None = None
) -> Path:
    """Replace ``section`` of ``benchmarks/results/<area>.json``, keeping the others. A
    file written before it had sections (one benchmark's keys at the top) is kept as the
    section ``flat_section``."""
    path = RESULTS / f"{area}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = json.loads(path.read_text())
            current = loaded if isinstance(loaded, dict) else {}
            if "benchmark" in current:  # one benchmark's keys at the top: name its section
                current = {flat_section or "previous": current}
        except ValueError:
            current = {}
    current[section] = data
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def write_key(path: Path, key: str, data: dict[str, Any]) -> None:
    """Replace ``key`` in the results file ``path`` (any file, e.g. ``--out``), keeping
    everything else in it."""
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[key] = data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=1, default=str) + "\n")


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None
