"""``nlp.length_bucketing``: embed a document's sections in batches of similar length (the
batch size timed on the tuning split). Lossy in principle: batched kernels round
differently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.nlp.changes.common import noted, slot_of

ID = "nlp.length_bucketing"


@dataclass(frozen=True)
class LengthBucketingParams(ChangeParams):
    candidates: tuple[int, ...] = (4, 8, 16, 32)
    batch_size: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_bucketing(proposal, pipeline, context.workload, context)


def tune_bucketing(
    proposal: Proposal, pipeline: Pipeline, workload: Workload, context: TuneContext
) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    sample = list(workload.items[: min(len(workload.items), 12)])
    if not sample:
        raise Rejected("no tuning inputs to time batch sizes on")
    candidates = [int(c) for c in proposal.params.get("candidates", (4, 8, 16, 32))]
    timings: dict[int, float] = {}
    for size in [1, *candidates]:
        candidate = pipeline.replace(stage.name, stage.with_slots(batch_size=size, bucket=True))
        timings[size] = context.time_per_item(candidate, sample, repeats=2)
        context.log(f"length bucketing: batch {size}: {timings[size] * 1000:.1f} ms per input")
    best = min(candidates, key=timings.__getitem__)
    gain = timings[1] / timings[best] if timings[best] > 0 else 1.0
    notes = {"ms_per_input": {str(k): round(v * 1000, 2) for k, v in timings.items()}}
    if gain < 1.05:
        raise Rejected(
            f"batching sections does not pay here: best batch {best} is {gain:.2f}x "
            f"one-at-a-time ({notes['ms_per_input']})"
        )
    return Tuned(params={"batch_size": best}, notes=notes, est_stage_speedup=None)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    slot_of(stage, "batch_size", change)
    size = change.params.get("batch_size")
    if not isinstance(size, int) or size < 1:
        raise PipelineError(f"change {change.proposal}: batch_size {size!r} is not tuned")
    new = stage.with_slots(batch_size=size, bucket=True)
    return pipeline.replace(stage.name, noted(new, change))


CHANGE = ChangeType(ID, LengthBucketingParams, materialize, tune, lossy=True)
