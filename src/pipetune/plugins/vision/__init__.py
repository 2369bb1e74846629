"""The vision plugin: reduced-resolution and GPU JPEG decode, motion-gated frame
skipping, batched preprocessing.

Building blocks are exported lazily, so ``import pipetune.plugins.vision`` needs neither
OpenCV nor torch.
"""

from __future__ import annotations

from pipetune.plugins._lazy import lazy_exports

_EXPORTS = {
    "decode_resize_stage": "pipetune.plugins.vision.blocks",
    "classify_stage": "pipetune.plugins.vision.blocks",
    "frame_source_stage": "pipetune.plugins.vision.blocks",
    "classify_frames_stage": "pipetune.plugins.vision.blocks",
    "Clip": "pipetune.plugins.vision.blocks",
    "OpenCVDecoder": "pipetune.plugins.vision.reduced_decode",
    "PillowDecoder": "pipetune.plugins.vision.reduced_decode",
    "ReducedImread": "pipetune.plugins.vision.reduced_decode",
    "DraftOpen": "pipetune.plugins.vision.reduced_decode",
    "ReducedArrayRead": "pipetune.plugins.vision.reduced_decode",
    "GatedFrames": "pipetune.plugins.vision.frame_items",
    "choose_factor": "pipetune.plugins.vision.reduced_decode",
    "DaliDecoder": "pipetune.plugins.vision.dali",
    "NvJpegDecoder": "pipetune.plugins.vision.gpu_decode",
    "MotionGate": "pipetune.plugins.vision.frame_skip",
    "StrideGate": "pipetune.plugins.vision.frame_skip",
    "Skipped": "pipetune.plugins.vision.inputs",
    "BadInput": "pipetune.plugins.vision.inputs",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
