"""Hook implementations of the vision plugin; each calls into the module that does the work.

Recognizes decode-and-resize steps (blocks, decoder slots, and plain decode code read from
the stage's source), video frame loops, workloads of consecutive frames and the model's
input size; measures source resolution against model input, the reduced-decode gain on the
workload's own files, decode's share, the CPU→GPU transfer and the frame-to-frame change;
proposes reduced-resolution JPEG decode, DALI / nvJPEG decode,
parallel batch decode and frame skipping (motion-gated or fixed stride); supplies fidelity
for per-frame labels (with the event-detection check), images (PSNR) and masks (IoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.registry import Demo, Dependency
from pipetune.plugins import _shared as hooks

PIPETUNE_API = 2


@hookimpl
def register_dependencies() -> Sequence[Dependency]:
    return (
        Dependency("cv2", "vision", "image and video decoding", "opencv-python-headless"),
        Dependency("PIL", "vision", "Pillow decoding (draft mode)", "pillow"),
        Dependency("nvidia.dali", "vision", "DALI decode pipelines", "nvidia-dali-cuda130"),
        Dependency("torch", "vision", "the demo classifiers"),
        Dependency("torchvision", None, "nvJPEG GPU decode where DALI is missing"),
        Dependency("skimage", "vision", "photographs for the demo data", "scikit-image"),
    )


@hookimpl
def register_demos() -> Sequence[Demo]:
    from pipetune.demos.vision.demo import DEMOS

    return DEMOS


register_changes = hooks.register_changes("pipetune.plugins.vision")
register_output_kinds = hooks.register_output_kinds("pipetune.plugins.vision")


inspect_pipeline = hooks.inspect_pipeline("pipetune.plugins.vision", "static_facts")
stage_hints = hooks.stage_hints("pipetune.plugins.vision")
profile_pipeline = hooks.profile_pipeline(
    "pipetune.plugins.vision", "profile_facts", with_workload=False
)


propose_changes = hooks.propose_changes("pipetune.plugins.vision")


@hookimpl
def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    """What the classifier's model receives (normalized NCHW batches of one), for
    calibrating int8 quantization of a vision block's model."""
    from pipetune.plugins.vision.calibration import calibration_batches

    return calibration_batches(pipeline, stage, workload)


scan_rules = hooks.scan_rules("pipetune.plugins.vision")
