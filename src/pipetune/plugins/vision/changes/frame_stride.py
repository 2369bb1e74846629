"""``vision.frame_stride``: classify every k-th frame and repeat the result in between (k
searched on the tuning split; k <= 4 sees every event within 3 frames). Lossy."""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType

# The motion gate's materialize and tune serve the stride as they are: the params' mode
# picks the gate, and the proposal's id picks the grid searched.
from pipetune.plugins.vision.changes.motion_gate import materialize, tune

ID = "vision.frame_stride"


@dataclass(frozen=True)
class FrameStrideParams(ChangeParams):
    mode: str = "stride"
    stride: int = 3
    frames: str = "clip"  # "clip": an input is a clip; "items": an input is one frame


CHANGE = ChangeType(ID, FrameStrideParams, materialize, tune, lossy=True)
