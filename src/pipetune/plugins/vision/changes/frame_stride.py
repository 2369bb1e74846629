"""``vision.frame_stride``: classify every k-th frame and repeat the result in between (k
searched on the tuning split; k <= 4 sees every event within 3 frames). Lossy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.vision.changes.common import replace_stage
from pipetune.plugins.vision.changes.motion_gate import gated_stage, tune_gate

ID = "vision.frame_stride"


@dataclass(frozen=True)
class FrameStrideParams(ChangeParams):
    mode: str = "stride"
    stride: int = 3
    frames: str = "clip"  # "clip": an input is a clip; "items": an input is one frame


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return replace_stage(change, pipeline, gated_stage)


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_gate(proposal, pipeline, context, materialize)


CHANGE = ChangeType(ID, FrameStrideParams, materialize, tune, lossy=True)
