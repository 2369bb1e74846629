"""``vision.gpu_decode``: decode a batch of JPEGs on the GPU with nvJPEG
(``torchvision.io.decode_jpeg``) where DALI is missing. Lossy: nvJPEG's IDCT differs
from libjpeg-turbo's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.vision.changes.common import replace_stage
from pipetune.plugins.vision.changes.dali_decode import accelerated_stage, tune_accelerated

ID = "vision.gpu_decode"


@dataclass(frozen=True)
class GpuDecodeParams(ChangeParams):
    device: str = "cuda"
    normalize: bool = True


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return replace_stage(
        change,
        pipeline,
        lambda stage, params: accelerated_stage(pipeline, stage, change.proposal, params),
    )


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_accelerated(proposal, pipeline, context, materialize)


CHANGE = ChangeType(ID, GpuDecodeParams, materialize, tune, lossy=True)
