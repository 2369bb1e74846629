"""``vision.motion_gate``: run the frame classifier only when the scene changes (a cheap
motion gate on small grey frames) and repeat the last result otherwise. Lossy: the
threshold is searched for per-frame agreement, with every motion event caught within 3
frames. Its materialize and tune (the gate search) serve the fixed stride too.

``frames="clip"``: each input is a clip (a frame loop's capture and model are wrapped);
``frames="items"``: each input is one frame of a clip, in order, and the stage's function
runs behind the gate (:class:`~pipetune.plugins.vision.frame_items.GatedFrames`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, InFlight, Proposal, Tuned
from pipetune.core.kernel.state import reset_state
from pipetune.plugins.vision import frame_skip
from pipetune.plugins.vision.blocks import Clip, read_frames
from pipetune.plugins.vision.changes.common import Materialize, build_candidate, replace_stage

ID = "vision.motion_gate"
#: What a gate over frames fed as items needs from the passes that time it: the frames in
#: the workload's order, contiguous (spread over the split, neighbours would be far apart).
FRAMES_IN_ORDER = InFlight(
    inputs=1,
    arrival="workload",
    in_order=True,
    assumes="the frames arrive in order (the gate compares each with the last one it ran on)",
)


@dataclass(frozen=True)
class MotionGateParams(ChangeParams):
    threshold: float
    mode: str = "motion"
    width: int = 64
    delta: float = 8.0
    max_interval: int = 150
    active_interval: int = 5
    min_gap: int = 1
    frames: str = "clip"  # "clip": an input is a clip; "items": an input is one frame


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return replace_stage(change, pipeline, gated_stage)


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_gate(proposal, pipeline, context, materialize)


def gated_stage(stage: Stage, params: dict[str, Any]) -> Stage:
    if params.get("frames") == "items":
        from pipetune.plugins.vision.frame_items import GatedFrames

        # One frame at a time, in order: a batch path would bypass the gate.
        return stage.evolve(fn=GatedFrames(stage.fn, params), batch_fn=None)
    gate = frame_skip.make_gate(params)
    if "gate" in stage.slots and stage.injects("gate"):
        return stage.with_slots(gate=gate)
    signal = frame_skip.GateSignal(gate)
    capture = stage.slots.get("capture")
    if capture is None:
        import cv2

        capture = cv2.VideoCapture
    return stage.with_slots(
        capture=frame_skip.GatedCapture(capture, signal),
        model=frame_skip.GatedModel(stage.slots["model"], signal),
    )


def _frames_of(item: Any, stage: Stage) -> Any:
    """The frames of a clip (a Clip, or a path read with the stage's capture), streamed:
    a clip's decoded frames would not fit in memory."""
    if isinstance(item, Clip):
        return item.frames()
    if isinstance(item, str | os.PathLike):
        return read_frames(os.fspath(item), stage.slots.get("capture"))
    return None


def _tuning_frames(
    proposal: Proposal, pipeline: Pipeline, context: TuneContext
) -> tuple[list[Any], list[list[Any]]]:
    """The full pipeline's outputs and the small grey frames the gate sees, per clip: for
    frames fed as items, the tuning split in order is one clip."""
    stage = pipeline.stage(proposal.stage)
    baseline = context.baseline_outputs()
    width = int(proposal.params.get("width", 64))
    inputs = context.stage_inputs(pipeline, proposal.stage)
    if proposal.params.get("frames") == "items":
        from pipetune.plugins.vision.frame_items import frame_signal

        signals = [frame_signal(item, width) for item in inputs]
        if any(signal is None for signal in signals):
            raise Rejected(f"stage {stage.name!r}: some of its inputs are not image frames")
        return [list(baseline)], [signals]
    smalls = []
    for item in inputs:
        frames = _frames_of(item, stage)
        smalls.append([] if frames is None else frame_skip.clip_smalls(frames, width))
    return baseline, smalls


def _series(proposal: Proposal) -> tuple[list[list[dict[str, Any]]], int]:
    """The parameter grids searched, each from its conservative end, and how many grid
    steps of margin to keep below the first failure."""
    if proposal.id == ID:
        series = [
            [
                {**proposal.params, "threshold": t, "active_interval": a, "min_gap": g}
                for t in frame_skip.THRESHOLD_GRID
            ]
            for a in frame_skip.ACTIVE_INTERVALS
            for g in frame_skip.MIN_GAPS
        ]
        return series, frame_skip.THRESHOLD_MARGIN_STEPS
    return [[{"mode": "stride", "stride": k} for k in frame_skip.STRIDES]], 0


def _point(params: dict[str, Any], run_fraction: float, details: Any, ok: bool) -> dict[str, Any]:
    keys = ("threshold", "active_interval", "min_gap", "stride")
    return {
        "params": {k: params[k] for k in keys if k in params},
        "run_fraction": run_fraction,
        "agreement": details.get("frame_agreement"),
        "events_ok": details.get("events_ok"),
        "ok": ok,
    }


def tune_gate(
    proposal: Proposal, pipeline: Pipeline, context: TuneContext, materialize: Materialize
) -> Tuned:
    """Search the motion threshold (or the stride) by simulation, then confirm by running
    the gated pipeline.

    On a frame where the gate runs the model, the gated pipeline computes exactly what the
    full pipeline computes; elsewhere it repeats the last result. So the full pipeline's
    per-frame labels and each clip's small grey frames give the gated outputs for every
    threshold without running the model again.
    """
    baseline, smalls = _tuning_frames(proposal, pipeline, context)
    # The user's fidelity budget decides (the video demo asks for 98 %: a 0.02 drop).
    floor = context.fidelity_floor
    series, margin = _series(proposal)
    items = proposal.params.get("frames") == "items"
    curve: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for grid in series:
        passing: list[dict[str, Any]] = []
        failed = False
        for params in grid:
            outputs, run_fraction = frame_skip.simulate(
                frame_skip.make_gate(params), smalls, baseline
            )
            if items:
                outputs = outputs[0]  # one label per input, as the pipeline outputs them
            fidelity = context.fidelity(outputs, "frame_labels")
            ok = bool(fidelity.details.get("events_ok", True)) and fidelity.value >= floor
            curve.append(_point(params, run_fraction, fidelity.details, ok))
            if not ok:
                # Stay in the contiguous passing region from the conservative end: a value
                # that passes only beyond a failing one is luck on this split, not margin.
                failed = True
                break
            passing.append({"params": params, "run_fraction": run_fraction, "fidelity": fidelity})
        if not passing:
            continue
        choice = passing[max(0, len(passing) - 1 - margin)] if failed else passing[-1]
        if best is None or choice["run_fraction"] < best["run_fraction"] - 1e-9:
            best = choice
    if best is None:
        raise Rejected(
            f"no {'threshold' if proposal.id == ID else 'stride'} keeps per-frame agreement "
            f">= {floor:.3f} with every event detected within 3 frames on the tuning split"
        )
    candidate = build_candidate(proposal, pipeline, best["params"], materialize)
    reset_state(candidate)  # the gate starts from no key frame, as in a measured pass
    confirmed = context.fidelity(context.outputs(candidate), "frame_labels")
    if not (confirmed.details.get("events_ok", True) and confirmed.value >= floor):
        raise Rejected(
            f"the simulated gate passed but the real run did not: "
            f"{confirmed.details.get('frame_agreement', 0):.4f} agreement, "
            f"{confirmed.details.get('late_count', 0)} late events"
        )
    context.log(
        f"{proposal.id}: {best['params']} runs the model on {best['run_fraction']:.1%} of frames"
    )
    return Tuned(
        params={k: v for k, v in best["params"].items()},
        notes={
            "curve": curve,
            "run_fraction": best["run_fraction"],
            "confirmed": confirmed.to_dict(),
        },
        est_stage_speedup=None,
        in_flight=FRAMES_IN_ORDER if items else None,
    )


CHANGE = ChangeType(ID, MotionGateParams, materialize, tune, lossy=True)
