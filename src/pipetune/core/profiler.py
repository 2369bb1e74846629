"""The profiler: where the time goes, measured on the workload.

One shared timing pass (offline) records per-input stage times; plugins add their domain
facts from the same run's observed stage inputs and outputs.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.core.context import Observations
from pipetune.core.machine import detect_machine
from pipetune.core.model import Pipeline, Workload
from pipetune.core.results import (
    ErrorSummary,
    LatencyStats,
    Profile,
    StageStats,
)
from pipetune.core.runtime import OnError, RunResult, run_offline
from pipetune.core.serving import ServingOptions
from pipetune.core.state import reset_state
from pipetune.core.stats import percentiles_ms

if TYPE_CHECKING:
    from pipetune.core.manager import PipetunePluginManager

#: How many inputs' stage inputs/outputs plugins get to observe.
OBSERVE_ITEMS = 256


def profile(
    pipeline: Pipeline,
    workload: Workload,
    *,
    pm: PipetunePluginManager | None = None,
    on_error: OnError = "stop",
    timeout_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Profile:
    """Profile ``pipeline`` on ``workload``: stage shares, latency percentiles, throughput,
    and every plugin's domain facts."""
    from pipetune.core.manager import get_plugin_manager

    workload.require_items()
    pm = pm or get_plugin_manager()
    items = list(workload.items)
    total = workload.warmup + workload.repeats
    # A pipeline that asks to be served in batches (meta["serving"]) is profiled that way.
    batch_size = ServingOptions.of(pipeline).batch_size

    facts: dict[str, dict[str, Any]] = {}
    for plugin, value in pm.call_each("inspect_pipeline", pipeline=pipeline):
        facts.setdefault(plugin, {}).update(value)

    for round_ in range(workload.warmup):
        reset_state(pipeline)  # warm state (a result cache) must not carry into a pass
        run_offline(
            pipeline,
            items[: max(1, min(len(items), 16))],
            batch_size=batch_size,
            on_error=on_error,
            timeout_s=timeout_s,
        )
        if progress:
            progress(round_ + 1, total)
    runs: list[RunResult] = []
    for round_ in range(workload.repeats):
        reset_state(pipeline)
        result = run_offline(
            pipeline,
            items,
            batch_size=batch_size,
            on_error=on_error,
            timeout_s=timeout_s,
            observe=OBSERVE_ITEMS if round_ == 0 else 0,
            measure_cpu=True,
        )
        runs.append(result)
        if progress:
            progress(workload.warmup + round_ + 1, total)
        if result.stopped:
            break

    prof = summarize(pipeline, workload, runs)
    observed = runs[0].observed or Observations()
    for plugin, value in pm.call_each(
        "profile_pipeline", pipeline=pipeline, workload=workload, profile=prof, observed=observed
    ):
        facts.setdefault(plugin, {}).update(value)
    hints: list[str] = []
    for stage in pipeline.stages:
        for _, values in pm.call_each("stage_hints", stage=stage, pipeline=pipeline):
            hints.extend(values)
    return prof.evolve(facts=facts, hints=tuple(hints))


def summarize(pipeline: Pipeline, workload: Workload, runs: list[RunResult]) -> Profile:
    """Build a :class:`Profile` from measured passes."""
    ok_rows = [r.stage_s[np.asarray(r.ok, dtype=bool)] for r in runs]
    stage_s = np.concatenate(ok_rows) if ok_rows else np.zeros((0, len(pipeline) + 1))
    latency = np.concatenate([r.latency_s[np.asarray(r.ok, dtype=bool)] for r in runs])
    wall = sum(r.wall_s for r in runs)
    completed = sum(r.completed for r in runs)
    totals = stage_s.sum(axis=0)
    grand = float(totals.sum()) or 1.0
    names = [*pipeline.stage_names, "other"]
    kinds = [stage.kind for stage in pipeline.stages] + ["other"]
    cpu = sum((r.cpu_s for r in runs if r.cpu_s is not None), np.zeros(len(pipeline)))
    stages = []
    for column, (name, kind) in enumerate(zip(names, kinds, strict=True)):
        col = stage_s[:, column] if len(stage_s) else np.zeros(1)
        ratio = None
        if column < len(pipeline) and totals[column] > 0:
            ratio = float(cpu[column] / totals[column])
        stages.append(
            StageStats(
                name=name,
                kind=kind,
                share=float(totals[column] / grand),
                p50_ms=float(np.percentile(col, 50) * 1000),
                mean_ms=float(col.mean() * 1000),
                p99_ms=float(np.percentile(col, 99) * 1000),
                cpu_ratio=ratio,
                calls=len(col),
            )
        )
    errors = [e for r in runs for e in r.errors]
    by_stage: dict[str, int] = {}
    for error in errors:
        by_stage[error.stage] = by_stage.get(error.stage, 0) + 1
    pct = percentiles_ms(latency)
    return Profile(
        pipeline=pipeline.name,
        mode="offline",
        samples=len(latency),
        throughput_rps=completed / wall if wall > 0 else 0.0,
        latency_ms=LatencyStats(**pct),
        stages=tuple(stages),
        machine=detect_machine(),
        stage_ms=tuple(tuple(float(v * 1000) for v in row) for row in stage_s),
        errors=ErrorSummary(
            count=len(errors),
            by_stage=by_stage,
            examples=tuple(f"input #{e.index} in {e.stage}: {e.error}" for e in errors[:5]),
        ),
        workload=workload.describe(),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
