"""The replayed end-to-end estimate: what a stage speedup does to the metric, computed on a
profile's recorded per-input stage times (``Profile.stage_ms``).

The planner (:mod:`pipetune.core.loop.planner`) ranks proposals with it, and the validator
reports what a tune step found with it (:func:`tuned_estimate`); both use these functions,
so a figure is the same wherever it is shown. The planner's docstring says why the estimate
replays rows rather than applying Amdahl's law to averages.
"""

from __future__ import annotations

import math

import numpy as np

from pipetune.core.kernel.results import ALL_STAGES, Profile, Proposal

#: A stage speedup above this is treated as "the stage's time disappears".
MAX_STAGE_SPEEDUP = 1e6


def stage_columns(profile: Profile, stage: str) -> list[int]:
    """Columns of ``profile.stage_ms`` that ``stage`` names (``*``: every real stage)."""
    names = [s.name for s in profile.stages]
    if stage == ALL_STAGES:
        return [i for i, name in enumerate(names) if name != "other"]
    return [i for i, name in enumerate(names) if name == stage and name != "other"]


def metric_of(rows: np.ndarray, metric: str) -> float:
    """The metric's value on per-input end-to-end times (ms). Throughput is returned as
    inputs per second of sequential service (its ratio is what matters)."""
    totals = rows.sum(axis=1)
    if totals.size == 0:
        return 0.0
    if metric == "throughput":
        total = float(totals.sum())
        return totals.size / (total / 1000.0) if total > 0 else math.inf
    quantile = {"p50": 50, "p95": 95, "p99": 99, "max": 100}[metric]
    return float(np.percentile(totals, quantile))


def replay_speedup(profile: Profile, stage: str, stage_speedup: float, metric: str) -> float:
    """End-to-end speedup of ``metric`` if ``stage`` ran ``stage_speedup`` times faster,
    replaying the recorded per-input stage times. Higher is better for every metric."""
    speedup = min(max(float(stage_speedup), 1e-6), MAX_STAGE_SPEEDUP)
    columns = stage_columns(profile, stage)
    if not columns:
        return 1.0
    rows = np.asarray(profile.stage_ms, dtype=float)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != len(profile.stages):
        return amdahl(sum(profile.stages[i].share for i in columns), speedup)
    scaled = rows.copy()
    scaled[:, columns] /= speedup
    before, after = metric_of(rows, metric), metric_of(scaled, metric)
    if metric == "throughput":
        return after / before if before > 0 else 1.0
    return before / after if after > 0 else MAX_STAGE_SPEEDUP


def tuned_estimate(
    profile: Profile | None, proposal: Proposal, stage_speedup: float | None, metric: str
) -> float | None:
    """The end-to-end figure for the stage speedup a tune step found, on the profile the
    proposal was planned on (``None`` without either). It is reported beside the planner's
    estimate, which stays the proposal's one estimate for that profile."""
    if profile is None or not stage_speedup:
        return None
    return replay_speedup(profile, proposal.stage, stage_speedup, metric)


def amdahl(share: float, speedup: float) -> float:
    remaining = (1 - share) + share / speedup
    return 1 / remaining if remaining > 0 else MAX_STAGE_SPEEDUP
