"""Hook implementations of the vision plugin (DESIGN §4).

Recognizes decode-and-resize steps, video frame loops and the model's input size; measures
source resolution against model input, decode's share, the CPU→GPU transfer and the
frame-to-frame change; proposes reduced-resolution JPEG decode, DALI / nvJPEG decode,
parallel batch decode and frame skipping (motion-gated or fixed stride); supplies fidelity
for per-frame labels (with the event-detection check), images (PSNR) and masks (IoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import Observations, TuneContext
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import Demo, DemoSetup, Dependency
from pipetune.core.kernel.results import Change, Fidelity, Profile, Proposal, Tuned
from pipetune.plugins.vision.scan_rules import scan_rules  # noqa: F401

PIPETUNE_API = 1
PLUGIN = "vision"


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
    cv2 = Dependency("cv2", "vision", "image and video decoding", "opencv-python-headless")
    torch = Dependency("torch", "vision", "the demo classifiers")
    skimage = Dependency("skimage", "vision", "demo data", "scikit-image")

    def vision(quick: bool) -> DemoSetup:
        from pipetune.demos.vision.demo import build_vision

        return build_vision(quick)

    def video(quick: bool) -> DemoSetup:
        from pipetune.demos.vision.demo import build_video

        return build_video(quick)

    return (
        Demo(
            "vision",
            "4000x3000 camera JPEGs into a 224x224 classifier",
            vision,
            requires=(cv2, torch, skimage),
        ),
        Demo(
            "video",
            "static security camera classified frame by frame",
            video,
            requires=(cv2, torch, skimage),
        ),
    )


@hookimpl
def inspect_pipeline(pipeline: Pipeline) -> dict[str, Any] | None:
    from pipetune.plugins.vision.recognize import (
        find_decode_steps,
        find_frame_loops,
        model_input_size,
    )

    steps = find_decode_steps(pipeline)
    loops = find_frame_loops(pipeline)
    if not steps and not loops:
        return None
    size = model_input_size(pipeline)
    return {
        "decode_steps": [s.to_dict() for s in steps],
        "frame_loops": [loop.to_dict() for loop in loops],
        "model_input": list(size) if size else None,
    }


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    from pipetune.plugins.vision.recognize import find_decode_steps, find_frame_loops

    hints = []
    for step in find_decode_steps(pipeline):
        if step.stage != stage.name:
            continue
        if step.how == "code":
            hints.append(
                f"stage {stage.name!r} seems to decode images inside its code: declare the "
                "decoder as a slot (decoder=cv2.imread, or PIL.Image.open) and the model "
                "input as size=(w, h) to unlock reduced-resolution JPEG decode "
                "(vision.reduced_decode)"
            )
        elif not step.transformable and step.library != "unknown":
            hints.append(
                f"stage {stage.name!r} has a decoder slot its function does not take: accept "
                "decoder= as a keyword argument so it can be replaced"
            )
        elif step.target is None:
            hints.append(
                f"stage {stage.name!r}: declare size=(w, h) (the model input) so the "
                "reduced-decode factor is chosen without observing outputs"
            )
    for loop in find_frame_loops(pipeline):
        if loop.stage == stage.name and not loop.transformable:
            hints.append(
                f"stage {stage.name!r} reads video frames inside its code: declare "
                "capture=cv2.VideoCapture and model= as slots (keyword arguments) to unlock "
                "frame skipping (vision.motion_gate)"
            )
    return hints or None


@hookimpl
def profile_pipeline(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> dict[str, Any] | None:
    from pipetune.plugins.vision.facts import profile_facts

    return profile_facts(pipeline, profile, observed)


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal] | None:
    from pipetune.plugins.vision.changes import propose

    return propose(pipeline, profile, requirements) or None


@hookimpl
def tune_proposal(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
) -> Tuned | None:
    if proposal.plugin != PLUGIN:
        return None
    from pipetune.plugins.vision.changes import tune

    return tune(proposal, pipeline, workload, context)


@hookimpl
def materialize_change(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline | None:
    if change.plugin != PLUGIN:
        return None
    from pipetune.plugins.vision.changes import materialize

    return materialize(change, pipeline)


@hookimpl
def compare_outputs(
    output_kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None,
) -> Fidelity | None:
    from pipetune.plugins.vision import fidelity

    if output_kind == "frame_labels":
        return fidelity.frame_agreement(baseline, candidate, labels)
    if output_kind == "image":
        return fidelity.image_fidelity(baseline, candidate)
    if output_kind == "masks":
        return fidelity.mask_iou(baseline, candidate)
    return None


@hookimpl
def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    """What the classifier's model receives (normalized NCHW batches of one), for
    calibrating int8 quantization of a vision block's model."""
    from pipetune.plugins.vision.calibration import calibration_batches

    return calibration_batches(pipeline, stage, workload)
