"""The report of an optimize run, and its JSON form: a contract for the tools that read
it (fields may be added, never renamed).

Renderers (terminal, Markdown, HTML) read the JSON form, so a report loaded back from the
run store renders exactly like a fresh one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Requirements
from pipetune.core.kernel.results import SCHEMA_VERSION, Fidelity, Machine, Profile, Recipe, Trial
from pipetune.core.kernel.serial import to_dict
from pipetune.core.report import cost as cost_model

#: Points kept of each latency distribution for the CDF plots (quantiles 0..100).
CDF_POINTS = 101


@dataclass(frozen=True)
class Report:
    """Everything an optimize run found. ``to_dict`` is the JSON report contract."""

    pipeline: str
    machine: Machine
    requirements: Requirements
    baseline: Profile
    final: Profile
    trials: tuple[Trial, ...] = ()
    proposals: tuple[Mapping[str, Any], ...] = ()
    comparison: Mapping[str, Any] | None = None  # final vs original, side by side
    requirements_met: bool = False
    misses: tuple[str, ...] = ()
    stopped: str = ""
    recipe: Recipe | None = None
    fidelity: Fidelity | None = None
    run_id: str | None = None
    runtime: Mapping[str, Any] = field(default_factory=dict)
    workload: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    duration_s: float = 0.0
    created: str = ""
    #: The host's load over the run (run-queue wait, other processes' CPU).
    host_load: Mapping[str, Any] | None = None
    #: The thread and runtime settings the figures were measured under.
    execution: Mapping[str, Any] | None = None
    #: Inputs set aside (``on_error="skip"``): ``index`` (in the workload), ``stage``,
    #: ``error``; left out of both sides of every measurement.
    skipped: tuple[Mapping[str, Any], ...] = ()

    @property
    def accepted(self) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.status == "accepted")

    def speedup(self) -> dict[str, Any]:
        """Final against original, from the side-by-side re-measurement when there is one
        (else from the two profiles)."""
        if self.comparison:
            s, ci = self.comparison["speedup"], self.comparison["ci"]
            return {
                "throughput": s["throughput"],
                "p99_latency": s["p99"],
                "p50_latency": s["p50"],
                "throughput_ci": list(ci["throughput"]),
                "p99_latency_ci": list(ci["p99"]),
                "measured": "side by side",
                "inputs_timed": self.comparison.get("inputs_timed"),
                "inputs_total": self.comparison.get("inputs_total"),
                "samples_per_side": self.comparison.get("samples_per_side"),
                "measured_in": self.comparison.get("measured_in"),
            }
        base, final = self.baseline, self.final
        return {
            "throughput": final.throughput_rps / base.throughput_rps
            if base.throughput_rps > 0
            else 1.0,
            "p99_latency": base.latency_ms.p99 / final.latency_ms.p99
            if final.latency_ms.p99 > 0
            else 1.0,
            "p50_latency": base.latency_ms.p50 / final.latency_ms.p50
            if final.latency_ms.p50 > 0
            else 1.0,
            "measured": "profiles",
        }

    def to_dict(self) -> dict[str, Any]:
        speedup = self.speedup()
        before_rps, after_rps = self._throughputs()
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "pipeline": self.pipeline,
            "machine": {
                "cpu": self.machine.cpu,
                "cores": self.machine.cores,
                "gpu": self.machine.gpu,
                "threads": dict(self.machine.threads),
                "fingerprint": self.machine.fingerprint,
                "logical_cores": self.machine.logical_cores,
                "memory_gb": self.machine.memory_gb,
                "os": self.machine.os,
                "python": self.machine.python,
            },
            "baseline": _profile_summary(self.baseline),
            "proposals": [dict(p) for p in self.proposals],
            "trials": [trial_entry(t) for t in self.trials],
            "final": _profile_summary(self.final),
            "speedup": speedup,
            "cost": cost_model.estimate(self.requirements, before_rps, after_rps),
            "requirements_met": self.requirements_met,
            # additions to the contract (fields may be added, never renamed)
            "run_id": self.run_id,
            "created": self.created,
            "duration_s": self.duration_s,
            "metric": self.requirements.metric,
            "requirements": self.requirements.to_dict(),
            "misses": list(self.misses),
            "stopped": self.stopped,
            "runtime": dict(self.runtime),
            "workload": dict(self.workload),
            "fidelity": None if self.fidelity is None else self.fidelity.to_dict(),
            "recipe": None if self.recipe is None else self.recipe.to_dict(),
            "comparison": None if self.comparison is None else _comparison_entry(self.comparison),
            "warnings": list(self.warnings),
            "host_load": None if self.host_load is None else dict(self.host_load),
            "execution": None if self.execution is None else dict(self.execution),
            "interrupted": self.stopped == "interrupted",
            "skipped": [dict(entry) for entry in self.skipped],
        }
        return data

    def _throughputs(self) -> tuple[float, float]:
        if self.comparison:
            return (
                float(self.comparison["a"]["throughput_rps"]),
                float(self.comparison["b"]["throughput_rps"]),
            )
        return self.baseline.throughput_rps, self.final.throughput_rps


def trial_entry(trial: Trial) -> dict[str, Any]:
    """The report contract's trial object, with the estimate beside the measurement."""
    notes = dict(trial.notes)
    comparison = notes.pop("comparison", None)
    entry: dict[str, Any] = {
        "proposal": trial.proposal,
        "plugin": trial.plugin,
        "stage": trial.stage,
        "status": trial.status,
        "reason": trial.reason,
        "metric": trial.metric,
        "speedup": trial.speedup,
        "speedup_ci": list(trial.speedup_ci) if trial.speedup_ci else None,
        "est_speedup": trial.est_speedup,
        "fidelity": None if trial.fidelity is None else trial.fidelity.to_dict(),
        "duration_s": trial.duration_s,
        "artifact": trial.artifact,
        "command": trial.command,
        "change": None if trial.change is None else trial.change.to_dict(),
        "notes": to_dict(notes),
    }
    if comparison:
        entry["measured"] = {
            "speedups": comparison.get("speedup"),
            "ci": comparison.get("ci"),
            "rounds": comparison.get("rounds"),
            "items_per_round": comparison.get("items_per_round"),
            "stage_ms": {
                "before": comparison["a"]["stage_ms"],
                "after": comparison["b"]["stage_ms"],
            },
            "inputs_timed": comparison.get("inputs_timed"),
            "inputs_total": comparison.get("inputs_total"),
            "samples_per_side": comparison.get("samples_per_side"),
            "coverage_note": comparison.get("coverage_note", ""),
            "quantiles_shown": comparison.get("quantiles_shown"),
            "host_load": comparison.get("host_load"),
            "in_flight": comparison.get("in_flight"),
        }
    return entry


def _profile_summary(profile: Profile) -> dict[str, Any]:
    summary = profile.summary()
    summary["stages"] = [
        {**stage, "mean_ms": s.mean_ms, "p99_ms": s.p99_ms}
        for stage, s in zip(summary["stages"], profile.stages, strict=True)
    ]
    summary["latency_ms"]["mean"] = profile.latency_ms.mean
    summary["concurrency"] = [c.to_dict() for c in profile.concurrency]
    summary["cdf_ms"] = latency_cdf(profile)
    summary["warnings"] = list(profile.warnings)
    summary["hints"] = list(profile.hints)
    return summary


def latency_cdf(profile: Profile) -> list[float]:
    """End-to-end latency quantiles 0..100 (ms) from the recorded per-input rows."""
    if not profile.stage_ms:
        return []
    totals = np.asarray(profile.stage_ms, dtype=float).sum(axis=1)
    return quantiles(totals)


def quantiles(values: Sequence[float] | np.ndarray) -> list[float]:
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return []
    return [float(v) for v in np.percentile(array, np.linspace(0, 100, CDF_POINTS))]


def _comparison_entry(comparison: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in comparison.items() if k != "latencies_ms"}
