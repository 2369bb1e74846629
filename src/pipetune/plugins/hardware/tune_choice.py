"""Timing the built candidates against the current stage and choosing one: each candidate's
record (:class:`CandidateResult`), passes interleaved round by round on the same inputs
(batch 1, and batches when the requirement is throughput), and, from the fastest down, the
first whose pipeline outputs hold fidelity (steps 4-5 of :mod:`.tune`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Proposal
from pipetune.plugins.hardware.apply import Candidate
from pipetune.plugins.hardware.fidelity import OutputAgreement

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Requirements

MAX_TIMING_INPUTS = 24
MAX_TIMING_INPUTS_GENERATE = 2
ROUNDS = 3
BATCH = 32


@dataclass
class CandidateResult:
    """What trying one candidate gave: its status and why, its build time, the check
    against the eager module, its speedups, its fidelity, and the built value."""

    candidate: Candidate
    status: str = "ok"  # ok | failed | fallback | unavailable | mismatch | slower | fidelity
    reason: str = ""
    build_s: float = 0.0
    module: OutputAgreement | None = None
    speedup: float | None = None
    batch_speedup: float | None = None
    stage_ms: float | None = None
    fidelity: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    value: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.label,
            "backend": self.candidate.backend,
            "precision": self.candidate.precision,
            "status": self.status,
            "reason": self.reason,
            "build_s": round(self.build_s, 2),
            "module": self.module.to_dict() if self.module else None,
            "speedup": self.speedup,
            "batch_speedup": self.batch_speedup,
            "stage_ms": self.stage_ms,
            "fidelity": self.fidelity,
            **self.details,
        }

    def summary(self) -> str:
        if self.status in ("ok", "slower", "fidelity") and self.speedup is not None:
            if self.batch_speedup is not None:
                text = (
                    f"{self.candidate.label} {self.batch_speedup:.2f}x batched "
                    f"({self.speedup:.2f}x at batch 1)"
                )
            else:
                text = f"{self.candidate.label} {self.speedup:.2f}x"
            return text + (f": {self.reason}" if self.reason else "")
        return f"{self.candidate.label}: {self.reason}"


def time_and_choose(
    proposal: Proposal,
    pipeline: Pipeline,
    stage: Stage,
    slot: str,
    inputs: Sequence[Any],
    results: list[CandidateResult],
    requirements: Requirements,
    context: TuneContext,
    generates: bool,
) -> CandidateResult:
    """The candidate to keep: the fastest of those still ``ok`` whose pipeline outputs hold
    fidelity (a generate stage's is left to the validator). Raises :class:`Rejected` with
    every candidate's figures when none is kept."""
    alive = [r for r in results if r.status == "ok"]
    if not alive:
        raise Rejected(
            f"{proposal.id} on {stage.name!r}: " + "; ".join(r.summary() for r in results)
        )
    timing_inputs = list(inputs[: timing_cap(generates)])
    stages = {"current": stage}
    for r in alive:
        stages[r.candidate.label] = stage.with_slots(**{slot: r.value})
    rounds = 2 if generates else ROUNDS  # a generation takes seconds: fewer, longer passes
    try:
        per_item = interleaved_times(stages, timing_inputs, batch_size=1, rounds=rounds)
    except Exception as exc:
        raise Rejected(
            f"{proposal.id}: a candidate failed inside stage {stage.name!r}: {one_line(exc)}"
        ) from None
    batched = None
    if requirements.metric == "throughput" and stage.batchable and len(timing_inputs) > 1:
        batched = interleaved_times(
            stages, timing_inputs, batch_size=min(BATCH, len(timing_inputs)), rounds=rounds
        )
    _record_speedups(alive, per_item, batched, context)
    ranked = sorted(
        (r for r in alive if r.status == "ok"),
        key=lambda r: r.batch_speedup if r.batch_speedup is not None else (r.speedup or 0),
        reverse=True,
    )
    chosen = _first_holding_fidelity(ranked, pipeline, stage, slot, context, generates)
    if chosen is None:
        raise Rejected(_verdict(proposal, stage, results))
    return chosen


def _record_speedups(
    alive: Sequence[CandidateResult],
    per_item: Mapping[str, list[float]],
    batched: Mapping[str, list[float]] | None,
    context: TuneContext,
) -> None:
    """Each candidate's time and speedups against the current stage (medians of the
    passes); one not faster, batched when batches were timed, is marked ``slower``."""
    base = statistics.median(per_item["current"])
    for r in alive:
        label = r.candidate.label
        r.stage_ms = statistics.median(per_item[label]) * 1000
        r.speedup = round(base / statistics.median(per_item[label]), 3)
        if batched is not None:
            r.batch_speedup = round(
                statistics.median(batched["current"]) / statistics.median(batched[label]), 3
            )
        decisive = r.batch_speedup if batched is not None else r.speedup
        if decisive is not None and decisive <= 1.0:
            r.status = "slower"
            r.reason = "not faster than the current stage"
        context.log(f"{label}: {r.speedup:.2f}x the current stage")


def _first_holding_fidelity(
    ranked: Sequence[CandidateResult],
    pipeline: Pipeline,
    stage: Stage,
    slot: str,
    context: TuneContext,
    generates: bool,
) -> CandidateResult | None:
    """From the fastest down, the first candidate whose pipeline outputs on the tuning
    split pass the fidelity floor (the fastest, for a generate stage); ``None`` if none."""
    for r in ranked:
        if generates:
            return r
        candidate = pipeline.replace(stage.name, stage.with_slots(**{slot: r.value}))
        try:
            fidelity = context.fidelity(context.outputs(candidate))
        except Exception as exc:
            r.status, r.reason = "failed", f"pipeline outputs: {one_line(exc)}"
            continue
        r.fidelity = fidelity.to_dict()
        if fidelity.passed:
            return r
        r.status = "fidelity"
        r.reason = (
            f"{fidelity.metric} {fidelity.value:.4f} below the floor {fidelity.threshold:.4f}"
        )
    return None


def interleaved_times(
    stages: Mapping[str, Stage], inputs: Sequence[Any], *, batch_size: int = 1, rounds: int = ROUNDS
) -> dict[str, list[float]]:
    """Seconds per input for each stage, ``rounds`` passes each. Passes are interleaved
    and the order rotates each round, so a slow patch of a shared machine (or a CPU
    frequency change) falls on every variant alike instead of on one."""
    names = list(stages)
    warm = list(inputs[: max(2, batch_size)])
    for name in names:
        _one_pass(stages[name], warm, batch_size)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_one_pass(stages[name], inputs, batch_size))
    return samples


def _one_pass(stage: Stage, inputs: Sequence[Any], batch_size: int) -> float:
    started = time.perf_counter()
    if batch_size > 1:
        for i in range(0, len(inputs), batch_size):
            stage.call_batch(list(inputs[i : i + batch_size]))
    else:
        for item in inputs:
            stage(item)
    return (time.perf_counter() - started) / max(len(inputs), 1)


def _verdict(proposal: Proposal, stage: Stage, results: Sequence[CandidateResult]) -> str:
    """Why no candidate was kept, candidate by candidate, on one line."""
    return f"{proposal.id} on {stage.name!r}: " + "; ".join(r.summary() for r in results)


def timing_cap(generates: bool) -> int:
    return MAX_TIMING_INPUTS_GENERATE if generates else MAX_TIMING_INPUTS


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
