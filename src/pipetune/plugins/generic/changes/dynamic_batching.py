"""``generic.dynamic_batching``: serve the pipeline in batches (batch size, and online the
batching delay, tuned on the requirement's metric). Lossy in principle: a batched model
call may round differently from one input at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.generic import batching

ID = "generic.dynamic_batching"


@dataclass(frozen=True)
class DynamicBatchingParams(ChangeParams):
    batch_size: int
    max_delay_ms: float = 0.0


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return batching.tune(pipeline, context.workload, context.requirements, log=context.log)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    return batching.materialize(pipeline, dict(change.params))


CHANGE = ChangeType(ID, DynamicBatchingParams, materialize, tune, lossy=True)
