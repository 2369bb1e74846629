"""A :class:`~pipetune.core.kernel.results.Profile` built from measured runs: stage shares
and percentiles, CPU/wall ratios, CUDA-event medians, errors, and the mode-specific
figures (online queueing, stream time to first output) pooled over runs. The profiler
summarizes its timing pass here; tests and builders summarize runs of their own."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.results import ErrorSummary, LatencyStats, Profile, StageStats
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.result import RunResult


def summarize(
    pipeline: Pipeline,
    workload: Workload,
    runs: list[RunResult],
    *,
    threads: dict[str, Any] | None = None,
) -> Profile:
    """Build a :class:`Profile` from measured runs (any mode; the first run's mode).

    Stage shares are of the time inside stages plus glue (``other``), over inputs that
    completed; in online and stream modes that is service time, and queue wait is reported
    in ``runtime``. Shares always sum to 1: with no completed input, ``other`` holds 1.
    """
    k = len(pipeline)
    ok_rows = [r.stage_s[r.ok_mask] for r in runs]
    stage_s = np.concatenate(ok_rows) if ok_rows else np.zeros((0, k + 1))
    latency = np.concatenate([r.latency_s[r.ok_mask] for r in runs]) if runs else np.zeros(0)
    wall = sum(r.wall_s for r in runs)
    completed = sum(r.completed for r in runs)
    if threads is None:
        threads = runs[0].threads if runs else _threads.thread_settings()
    mode = runs[0].mode if runs else workload.mode
    return Profile(
        pipeline=pipeline.name,
        mode=mode,
        samples=len(latency),
        throughput_rps=completed / wall if wall > 0 else 0.0,
        latency_ms=LatencyStats(**percentiles_ms(latency)),
        stages=tuple(_stage_stats(pipeline, runs, stage_s)),
        machine=detect_machine(threads),
        stage_ms=tuple(tuple(float(v * 1000) for v in row) for row in stage_s),
        errors=_error_summary(runs),
        workload=workload.describe(),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        runtime=runtime_summary(runs),
        stopped=any(r.stopped for r in runs),
    )


def _stage_stats(
    pipeline: Pipeline, runs: list[RunResult], stage_s: np.ndarray
) -> list[StageStats]:
    """One :class:`StageStats` per stage, then ``other`` (glue), from the completed rows."""
    k = len(pipeline)
    totals = stage_s.sum(axis=0) if len(stage_s) else np.zeros(k + 1)
    grand = float(totals.sum())
    shares = totals / grand if grand > 0 else np.zeros(k + 1)
    shares[-1] = 1.0 - float(shares[:-1].sum())  # exact sum to 1; 'other' absorbs rounding
    shares[-1] = max(0.0, shares[-1])
    names = [*pipeline.stage_names, "other"]
    kinds = [stage.kind for stage in pipeline.stages] + ["other"]
    cpu, cpu_base = _cpu_totals(runs, k)
    gpu_ms = _gpu_medians(runs, k)
    stages = []
    for column, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        col = stage_s[:, column] if len(stage_s) else np.zeros(1)
        ratio = None
        if column < k and cpu is not None and cpu_base[column] > 0:
            ratio = float(cpu[column] / cpu_base[column])
        pct = percentiles_ms(col)
        stages.append(
            StageStats(
                name=name,
                kind=kind,
                share=float(shares[column]),
                p50_ms=pct["p50"],
                mean_ms=pct["mean"],
                p95_ms=pct["p95"],
                p99_ms=pct["p99"],
                max_ms=pct["max"],
                cpu_ratio=ratio,
                calls=len(stage_s),
                gpu_ms=gpu_ms[column] if column < k else None,
            )
        )
    return stages


def _error_summary(runs: list[RunResult]) -> ErrorSummary:
    """The failed inputs of ``runs``: how many, per stage, and the first few."""
    errors = [e for r in runs for e in r.errors]
    by_stage: dict[str, int] = {}
    for error in errors:
        by_stage[error.stage] = by_stage.get(error.stage, 0) + 1
    return ErrorSummary(
        count=len(errors),
        by_stage=by_stage,
        examples=tuple(f"input #{e.index} in {e.stage}: {e.error}" for e in errors[:5]),
    )


def _cpu_totals(runs: list[RunResult], k: int) -> tuple[np.ndarray | None, np.ndarray]:
    """CPU seconds per stage and the wall seconds they compare with (same rows)."""
    measured = [r for r in runs if r.cpu_s is not None]
    if not measured:
        return None, np.zeros(k)
    cpu = np.sum([r.cpu_s for r in measured if r.cpu_s is not None], axis=0)
    base = np.sum([_stage_wall(r, k) for r in measured], axis=0)
    return cpu, base


def _stage_wall(run: RunResult, k: int) -> np.ndarray:
    """Wall seconds per stage. The inputs of a batch share its time in ``stage_s``: count
    each batch once (its rows have the same start and end), as its CPU time is counted."""
    rows = run.stage_s[:, :k]
    if not run.batch_sizes or run.start_s is None or run.done_s is None:
        return rows.sum(axis=0)
    _, first = np.unique(np.stack([run.start_s, run.done_s], axis=1), axis=0, return_index=True)
    return rows[first].sum(axis=0)


def _gpu_medians(runs: list[RunResult], k: int) -> list[float | None]:
    rows = [r.gpu_stage_s[r.ok_mask] for r in runs if r.gpu_stage_s is not None]
    if not rows:
        return [None] * k
    data = np.concatenate(rows)
    medians: list[float | None] = []
    for column in range(k):
        values = data[:, column]
        values = values[~np.isnan(values)]
        medians.append(float(np.median(values) * 1000) if values.size else None)
    return medians


def runtime_summary(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The mode-specific figures of a set of runs, pooled (``Profile.runtime``)."""
    if not runs:
        return {}
    first = runs[0]
    summary: dict[str, Any] = {
        "mode": first.mode,
        "workers": first.workers,
        "executor": first.executor,
        "runs": len(runs),
    }
    if first.executor == "process":
        summary["startup_s"] = [r.startup_s for r in runs]
    if any(r.online is not None for r in runs):
        summary["online"] = _online_summary(runs)
    if any(r.stream is not None for r in runs):
        summary["stream"] = _stream_summary(runs)
    return summary


def _online_summary(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The online runs' arrivals, queueing and batching, pooled (``runtime["online"]``)."""
    online = [r.online for r in runs if r.online is not None]
    queue = np.concatenate([r.queue_s[r.ok_mask] for r in runs if r.online is not None])
    worst = next((o for o in online if o.overloaded), online[-1])
    return {
        "source": online[0].source,
        "requests_per_run": online[0].requests,
        "offered_rps": online[0].offered_rps,
        "scheduled_rps": float(np.mean([o.scheduled_rps for o in online])),
        "submitted_rps": float(np.mean([o.submitted_rps for o in online])),
        "completed_rps": float(np.mean([o.completed_rps for o in online])),
        "queue_ms": percentiles_ms(queue),
        "lag_ms_p99": float(max(o.lag_ms["p99"] for o in online)),
        "max_queue_depth": int(max(o.max_queue_depth for o in online)),
        "utilization": float(np.mean([o.utilization for o in online])),
        "max_batch": online[0].max_batch,
        "max_wait_ms": online[0].max_wait_ms,
        "mean_batch": float(np.mean([o.mean_batch for o in online])),
        "overloaded": any(o.overloaded for o in online),
        "verdict": worst.verdict,
        "per_run": [o.to_dict() for o in online],
    }


def _stream_summary(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The stream runs' time to first output, gaps and in-flight figures, pooled
    (``runtime["stream"]``)."""
    streams = [r.stream for r in runs if r.stream is not None]
    ok_runs = [r for r in runs if r.stream is not None and r.first_output_s is not None]
    ttft = (
        np.concatenate(
            [(r.first_output_s - r.arrival_s)[r.ok_mask] for r in ok_runs]  # type: ignore[operator]
        )
        if ok_runs
        else np.zeros(0)
    )
    return {
        "protocol": 1,
        "requests_per_run": streams[0].requests,
        "offered_rps": streams[0].offered_rps,
        "ttft_ms": percentiles_ms(ttft),
        "per_output_ms": percentiles_ms(
            np.concatenate([r.output_gaps_s for r in runs if r.output_gaps_s is not None])
        ),
        "completion_ms": percentiles_ms(
            np.concatenate([r.latency_s[r.ok_mask] for r in runs if r.stream is not None])
        ),
        "outputs_per_s": float(np.mean([s.outputs_per_s for s in streams])),
        "max_in_flight": int(max(s.max_in_flight for s in streams)),
        "mean_in_flight": float(np.mean([s.mean_in_flight for s in streams])),
        "per_run": [s.to_dict() for s in streams],
    }
