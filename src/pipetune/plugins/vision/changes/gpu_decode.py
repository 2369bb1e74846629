"""``vision.gpu_decode``: decode a batch of JPEGs on the GPU with nvJPEG
(``torchvision.io.decode_jpeg``) where DALI is missing. Lossy: nvJPEG's IDCT differs
from libjpeg-turbo's."""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType

# The same tune and materialize steps as DALI decode: the change id picks the nvJPEG decoder.
from pipetune.plugins.vision.changes.dali_decode import materialize, tune

ID = "vision.gpu_decode"


@dataclass(frozen=True)
class GpuDecodeParams(ChangeParams):
    device: str = "cuda"
    normalize: bool = True


CHANGE = ChangeType(ID, GpuDecodeParams, materialize, tune, lossy=True)
