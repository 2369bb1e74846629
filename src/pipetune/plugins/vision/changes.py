"""The vision plugin's changes: what it proposes from the profile, how it tunes each
change on the tuning split, and how it builds the changed pipeline (deterministically,
from parameters alone, never touching the original)."""

from __future__ import annotations

import os
import time
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change, Profile, Proposal, Tuned
from pipetune.plugins.vision import frame_skip
from pipetune.plugins.vision.blocks import CLASSIFY, Clip, open_capture
from pipetune.plugins.vision.dali import DALI, DaliDecoder, cuda_available
from pipetune.plugins.vision.gpu_decode import NvJpegDecoder, nvjpeg_availability
from pipetune.plugins.vision.parallel import ParallelBatch, default_workers
from pipetune.plugins.vision.recognize import (
    find_decode_steps,
    find_frame_loops,
    inference_after,
)
from pipetune.plugins.vision.reduced_decode import FACTORS, as_size, replacement_for

PLUGIN = "vision"
REDUCED = "vision.reduced_decode"
DALI_DECODE = "vision.dali_decode"
GPU_DECODE = "vision.gpu_decode"
PARALLEL = "vision.parallel_decode"
MOTION = "vision.motion_gate"
STRIDE = "vision.frame_stride"
DECODER_SWAPS = (REDUCED, DALI_DECODE, GPU_DECODE)
#: Below this share of end-to-end time a decode change cannot matter (Amdahl).
MIN_SHARE = 0.05


def _vision_facts(profile: Profile) -> dict[str, Any]:
    return dict(profile.facts.get(PLUGIN, {}))


# -- propose -------------------------------------------------------------------------------


def propose(pipeline: Pipeline, profile: Profile, requirements: Requirements) -> list[Proposal]:
    facts = _vision_facts(profile)
    proposals: list[Proposal] = []
    for step in find_decode_steps(pipeline):
        if not step.transformable:
            continue
        info = facts.get("decode", {}).get(step.stage, {})
        share = profile.share(step.stage)
        proposals.extend(_decode_proposals(pipeline, step, info, share))
    for loop in find_frame_loops(pipeline):
        if not loop.transformable or loop.gated:
            continue
        info = facts.get("video", {}).get(loop.stage, {})
        proposals.extend(_frame_proposals(loop.stage, info))
    return proposals


def _decode_proposals(
    pipeline: Pipeline, step: Any, info: dict[str, Any], share: float
) -> list[Proposal]:
    out: list[Proposal] = []
    target = step.target or (as_size(info["model_input"]) if info.get("model_input") else None)
    factor = info.get("dct_factor", {})
    jpegs = info.get("formats", {}).get("jpeg", 0)
    timing = info.get("sample_timing_ms", {})
    evidence = {
        k: info[k]
        for k in (
            "source_resolution",
            "model_input",
            "dct_factor",
            "discarded_pixel_share",
            "formats",
            "sample_timing_ms",
        )
        if k in info
    }
    small_note = (
        ""
        if share >= MIN_SHARE
        else (
            f" The stage is only {share:.0%} of end-to-end time, so even a large stage speedup "
            "cannot matter much."
        )
    )
    if target and jpegs and factor.get("max", 1) > 1 and not step.reduced:
        speedup = float(timing.get("speedup") or {8: 4.0, 4: 2.5, 2: 1.6}[factor["max"]])
        median = info.get("source_resolution", {}).get("median", ["?", "?"])
        out.append(
            Proposal(
                id=REDUCED,
                plugin=PLUGIN,
                stage=step.stage,
                title=f"Decode JPEGs at 1/{factor['max']} size (DCT scaling) before the resize",
                rationale=(
                    f"Sources are {median[0]}x{median[1]} but the model takes "
                    f"{target[0]}x{target[1]}: {info.get('discarded_pixel_share', 0):.1%} of "
                    f"decoded pixels are thrown away by the resize. libjpeg can decode at "
                    f"1/{factor['max']} scale directly (largest factor keeping at least the "
                    f"model input, chosen per image); on sampled images full decode+resize "
                    f"took {timing.get('full', float('nan')):.1f} ms and reduced "
                    f"{timing.get('reduced', float('nan')):.1f} ms." + small_note
                ),
                est_stage_speedup=max(1.0, speedup),
                effort="minutes",
                accuracy_risk="low",
                params={"max_factor": int(factor["max"]), "target": list(target)},
                conflicts=(DALI_DECODE, GPU_DECODE),
                evidence=evidence,
            )
        )
    if step.how != "block":
        # DALI and nvJPEG replace the whole decode-and-resize, which only the plugin's own
        # block exposes; plain code keeps its own resize after a library decoder.
        return out
    dali = DALI.check()
    gpu = cuda_available()
    out.append(
        Proposal(
            id=DALI_DECODE,
            plugin=PLUGIN,
            stage=step.stage,
            title="NVIDIA DALI decode-resize-normalize pipeline "
            + ("(nvJPEG on the GPU)" if gpu else "(CPU operators)"),
            rationale=(
                "DALI decodes, resizes and normalizes a batch in one pipeline with its own "
                "thread pool; "
                + (
                    "with a GPU the mixed decoder runs nvJPEG and the resize on the device."
                    if gpu
                    else "on this CPU-only machine it runs its CPU operators (no faster per image "
                    "than libjpeg-turbo through OpenCV: expect parity, measured, not assumed)."
                )
            ),
            est_stage_speedup=4.0 if gpu else 1.0,
            effort="hours",
            accuracy_risk="low",
            status="proposed" if dali else "unavailable",
            reason="" if dali else dali.reason,
            install=None if dali else dali.install,
            params={
                "device": "gpu" if gpu else "cpu",
                "threads": default_workers(),
                "max_batch": 16,
            },
            conflicts=(REDUCED, GPU_DECODE),
            evidence=evidence,
        )
    )
    nvjpeg = nvjpeg_availability()
    reason = nvjpeg.reason
    if nvjpeg and dali:
        reason = "DALI is installed and covers GPU decode (vision.dali_decode)"
    out.append(
        Proposal(
            id=GPU_DECODE,
            plugin=PLUGIN,
            stage=step.stage,
            title="Batched nvJPEG decode on the GPU (torchvision.io.decode_jpeg)",
            rationale="Decode a batch of JPEGs on the GPU with nvJPEG where DALI is missing.",
            est_stage_speedup=4.0,
            effort="hours",
            accuracy_risk="low",
            status="proposed" if (nvjpeg and not dali) else "unavailable",
            reason="" if (nvjpeg and not dali) else reason,
            install=nvjpeg.install,
            params={"device": "cuda"},
            conflicts=(REDUCED, DALI_DECODE),
        )
    )
    workers = default_workers()
    if workers > 1 and share >= MIN_SHARE:
        out.append(
            Proposal(
                id=PARALLEL,
                plugin=PLUGIN,
                stage=step.stage,
                title=f"Decode batches in a {workers}-thread pool",
                rationale=(
                    f"Decode is {share:.0%} of the time and OpenCV/Pillow release the GIL "
                    "while decoding, so a batch decodes on all cores. Pays only when the "
                    "pipeline runs in batches (generic batching): at batch size 1 there is "
                    "nothing to parallelize."
                ),
                est_stage_speedup=min(workers, 4) * 0.8,
                effort="minutes",
                accuracy_risk="none",
                params={"workers": workers},
                evidence={"decode_share": share},
            )
        )
    return out


def _frame_proposals(stage: str, info: dict[str, Any]) -> list[Proposal]:
    change = info.get("frame_change", {})
    static = change.get("static_share", {})
    run_fraction = float(info.get("gate_run_fraction_at_0.01", 0.25))
    decode = float(info.get("decode_share_of_loop", 0.1))
    # Amdahl inside the loop: decode stays, the model runs on run_fraction of frames.
    est = 1.0 / (decode + (1 - decode) * max(run_fraction, 0.02))
    evidence = {
        k: info[k]
        for k in (
            "frame_change",
            "decode_ms_per_frame",
            "ms_per_frame",
            "decode_share_of_loop",
            "gate_run_fraction_at_0.01",
        )
        if k in info
    }
    static_text = (
        f"{static.get('0.01', 0):.0%} of consecutive frames change less than 1 % of pixels; "
        if static
        else ""
    )
    return [
        Proposal(
            id=MOTION,
            plugin=PLUGIN,
            stage=stage,
            title="Motion-gated frame skipping: run the model only when the scene changes",
            rationale=(
                static_text + f"a motion gate at a middle threshold would run the model on "
                f"{run_fraction:.0%} of frames and reuse the last result on the others. The "
                "threshold is tuned for per-frame agreement, and every motion event must be "
                "detected within 3 frames."
            ),
            est_stage_speedup=max(1.0, est),
            effort="minutes",
            accuracy_risk="medium",
            params={"mode": "motion", "width": 64, "delta": 8.0, "max_interval": 150},
            conflicts=(STRIDE,),
            fidelity_kind="frame_labels",
            evidence=evidence,
        ),
        Proposal(
            id=STRIDE,
            plugin=PLUGIN,
            stage=stage,
            title="Fixed-stride frame skipping: run the model on every k-th frame",
            rationale=(
                "Classify every k-th frame and repeat the result in between; k is tuned, and "
                "k ≤ 4 is needed to see every event within 3 frames."
            ),
            est_stage_speedup=max(1.0, 1.0 / (decode + (1 - decode) / 3)),
            effort="minutes",
            accuracy_risk="medium",
            params={"mode": "stride", "stride": 3},
            conflicts=(MOTION,),
            fidelity_kind="frame_labels",
            evidence=evidence,
        ),
    ]


# -- materialize ---------------------------------------------------------------------------


def materialize(change: Change, pipeline: Pipeline) -> Pipeline:
    stage = pipeline.stage(change.stage)
    params = dict(change.params)
    if change.proposal == REDUCED:
        new = _reduced_stage(stage, params)
    elif change.proposal in (DALI_DECODE, GPU_DECODE):
        new = _accelerated_stage(pipeline, stage, change.proposal, params)
    elif change.proposal == PARALLEL:
        new = _parallel_stage(stage, int(params.get("workers", default_workers())))
    elif change.proposal in (MOTION, STRIDE):
        new = _gated_stage(stage, params)
    else:
        raise PipelineError(f"the vision plugin has no change {change.proposal!r}")
    return pipeline.replace(stage.name, new.noted(vision=change.proposal, vision_params=params))


def _reduced_stage(stage: Stage, params: dict[str, Any]) -> Stage:
    target = as_size(params["target"])
    replacement = replacement_for(
        stage.slots.get("decoder"), target, int(params.get("max_factor", 8))
    )
    if replacement is None:
        raise PipelineError(
            f"stage {stage.name!r}: its decoder {stage.slots.get('decoder')!r} has no reduced-"
            "resolution replacement"
        )
    return stage.with_slots(decoder=replacement)


def _normalization_after(pipeline: Pipeline, stage: Stage) -> Any:
    follower = inference_after(pipeline, stage.name)
    if follower is not None and follower.meta.get("block") == CLASSIFY:
        return (tuple(follower.slots["mean"]), tuple(follower.slots["std"]))
    return None


def _accelerated_stage(
    pipeline: Pipeline, stage: Stage, proposal: str, params: dict[str, Any]
) -> Stage:
    normalize = _normalization_after(pipeline, stage) if params.get("normalize", True) else None
    if proposal == DALI_DECODE:
        decoder: Any = DaliDecoder(
            device=params.get("device", "cpu"),
            threads=int(params.get("threads", 2)),
            max_batch=int(params.get("max_batch", 16)),
            normalize=normalize,
        )
    else:
        decoder = NvJpegDecoder(device=params.get("device", "cuda"), normalize=normalize)
    return stage.with_slots(decoder=decoder)


def _parallel_stage(stage: Stage, workers: int) -> Stage:
    if "workers" in stage.slots and stage.batch_fn is not None:
        return stage.with_slots(workers=workers)
    return stage.evolve(batch_fn=ParallelBatch(stage.fn, workers))


def _gated_stage(stage: Stage, params: dict[str, Any]) -> Stage:
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


# -- tune ----------------------------------------------------------------------------------


def tune(proposal: Proposal, pipeline: Pipeline, workload: Workload, context: TuneContext) -> Tuned:
    if proposal.id == REDUCED:
        return _tune_reduced(proposal, pipeline, context)
    if proposal.id in (DALI_DECODE, GPU_DECODE):
        return _tune_accelerated(proposal, pipeline, context)
    if proposal.id == PARALLEL:
        return Tuned(params={"workers": proposal.params.get("workers", default_workers())})
    if proposal.id in (MOTION, STRIDE):
        return _tune_gate(proposal, pipeline, context)
    raise Rejected(f"the vision plugin cannot tune {proposal.id!r}")


def _candidate(proposal: Proposal, pipeline: Pipeline, params: dict[str, Any]) -> Pipeline:
    change = Change.from_proposal(proposal).evolve(params={**proposal.params, **params})
    return materialize(change, pipeline)


def _stage_time(pipeline: Pipeline, stage: str, inputs: list[Any], repeats: int = 3) -> float:
    target = pipeline.stage(stage)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in inputs:
            target(item)
        best = min(best, time.perf_counter() - start)
    return best


def _tune_reduced(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Largest DCT factor first (it already never goes below the model input); smaller
    factors only if the largest loses fidelity."""
    tried: list[dict[str, Any]] = []
    start = int(proposal.params.get("max_factor", 8))
    sample = context.stage_inputs(pipeline, proposal.stage)[:4]
    for factor in [f for f in FACTORS if f <= start]:
        candidate = _candidate(proposal, pipeline, {"max_factor": factor})
        fidelity = context.fidelity(context.outputs(candidate), proposal.fidelity_kind)
        tried.append({"max_factor": factor, "fidelity": fidelity.value, "metric": fidelity.metric})
        context.log(f"reduced decode 1/{factor}: {fidelity.metric} {fidelity.value:.4f}")
        if fidelity.passed:
            base = _stage_time(pipeline, proposal.stage, sample)
            fast = _stage_time(candidate, proposal.stage, sample)
            return Tuned(
                params={"max_factor": factor},
                notes={
                    "tried": tried,
                    "stage_ms_full": base * 1000 / max(len(sample), 1),
                    "stage_ms_reduced": fast * 1000 / max(len(sample), 1),
                },
                est_stage_speedup=base / fast if fast > 0 else None,
            )
    raise Rejected(
        "reduced-resolution decode lost fidelity at every factor: "
        + ", ".join(f"1/{t['max_factor']}: {t['fidelity']:.4f}" for t in tried)
    )


def _tune_accelerated(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    if proposal.status != "proposed":
        raise Rejected(proposal.reason or f"{proposal.id} is unavailable here")
    params = dict(proposal.params)
    candidate = _candidate(proposal, pipeline, params)
    try:
        outputs = context.outputs(candidate)
    except Exception as exc:
        raise Rejected(
            f"{proposal.id} failed on the tuning split: {type(exc).__name__}: {exc}"
        ) from None
    fidelity = context.fidelity(outputs, proposal.fidelity_kind)
    if not fidelity.passed:
        raise Rejected(
            f"{proposal.id}: {fidelity.metric} {fidelity.value:.4f} below {fidelity.threshold:.4f}"
        )
    return Tuned(params=params, notes={"fidelity": fidelity.to_dict()})


def _frames_of(item: Any, stage: Stage) -> Any:
    """The frames of a clip (a Clip, or a path read with the stage's capture), streamed:
    a clip's decoded frames would not fit in memory."""
    if isinstance(item, Clip):
        return item.frames()
    if isinstance(item, str | os.PathLike):
        return _read(os.fspath(item), stage.slots.get("capture"))
    return None


def _read(path: str, capture: Any) -> Any:
    cap = open_capture(path, capture)
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame
    finally:
        cap.release()


def _tune_gate(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Search the motion threshold (or the stride) by simulation, then confirm by running
    the gated pipeline.

    On a frame where the gate runs the model, the gated pipeline computes exactly what the
    full pipeline computes; elsewhere it repeats the last result. So the full pipeline's
    per-frame labels and each clip's small grey frames give the gated outputs for every
    threshold without running the model again.
    """
    stage = pipeline.stage(proposal.stage)
    baseline = context.baseline_outputs()
    width = int(proposal.params.get("width", 64))
    smalls = []
    for item in context.stage_inputs(pipeline, proposal.stage):
        frames = _frames_of(item, stage)
        smalls.append([] if frames is None else frame_skip.clip_smalls(frames, width))
    # The user's fidelity budget decides (the video demo asks for 98 %: a 0.02 drop).
    floor = context.fidelity_floor
    if proposal.id == MOTION:
        series = [
            [
                {**proposal.params, "threshold": t, "active_interval": a, "min_gap": g}
                for t in frame_skip.THRESHOLD_GRID
            ]
            for a in frame_skip.ACTIVE_INTERVALS
            for g in frame_skip.MIN_GAPS
        ]
        margin = frame_skip.THRESHOLD_MARGIN_STEPS
    else:
        series = [[{"mode": "stride", "stride": k} for k in frame_skip.STRIDES]]
        margin = 0
    curve: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for grid in series:
        passing: list[dict[str, Any]] = []
        failed = False
        for params in grid:
            outputs, run_fraction = frame_skip.simulate(
                frame_skip.make_gate(params), smalls, baseline
            )
            fidelity = context.fidelity(outputs, "frame_labels")
            ok = bool(fidelity.details.get("events_ok", True)) and fidelity.value >= floor
            curve.append(
                {
                    "params": {
                        k: params[k]
                        for k in ("threshold", "active_interval", "min_gap", "stride")
                        if k in params
                    },
                    "run_fraction": run_fraction,
                    "agreement": fidelity.details.get("frame_agreement"),
                    "events_ok": fidelity.details.get("events_ok"),
                    "ok": ok,
                }
            )
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
            f"no {'threshold' if proposal.id == MOTION else 'stride'} keeps per-frame agreement "
            f">= {floor:.3f} with every event detected within 3 frames on the tuning split"
        )
    candidate = _candidate(proposal, pipeline, best["params"])
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
    )
