"""``vision.parallel_decode``: decode a batch of images on a thread pool (OpenCV and
Pillow release the GIL while decoding). Exact: each image is decoded as before."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.vision.changes.common import replace_stage
from pipetune.plugins.vision.parallel import ParallelBatch, default_workers

ID = "vision.parallel_decode"


@dataclass(frozen=True)
class ParallelDecodeParams(ChangeParams):
    workers: int


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return replace_stage(
        change,
        pipeline,
        lambda stage, params: _parallel_stage(stage, int(params.get("workers", default_workers()))),
    )


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return Tuned(params={"workers": proposal.params.get("workers", default_workers())})


def _parallel_stage(stage: Stage, workers: int) -> Stage:
    if "workers" in stage.slots and stage.batch_fn is not None:
        return stage.with_slots(workers=workers)
    return stage.evolve(batch_fn=ParallelBatch(stage.fn, workers))


CHANGE = ChangeType(ID, ParallelDecodeParams, materialize, tune)
