"""What the vision plugin proposes from the profile: reduced-resolution JPEG decode,
DALI / nvJPEG decode, parallel batch decode, and frame skipping (motion-gated or fixed
stride). How each change is tuned and built lives in :mod:`.changes`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.model import Pipeline, Requirements
from pipetune.core.kernel.results import InFlight, Profile, Proposal
from pipetune.plugins.vision import frame_items
from pipetune.plugins.vision.changes.dali_decode import ID as DALI_DECODE
from pipetune.plugins.vision.changes.frame_stride import ID as STRIDE
from pipetune.plugins.vision.changes.gpu_decode import ID as GPU_DECODE
from pipetune.plugins.vision.changes.motion_gate import FRAMES_IN_ORDER
from pipetune.plugins.vision.changes.motion_gate import ID as MOTION
from pipetune.plugins.vision.changes.parallel_decode import ID as PARALLEL
from pipetune.plugins.vision.changes.reduced_decode import ID as REDUCED
from pipetune.plugins.vision.code_decode import suggested_change
from pipetune.plugins.vision.dali import DALI, cuda_available
from pipetune.plugins.vision.gpu_decode import nvjpeg_availability
from pipetune.plugins.vision.parallel import default_workers
from pipetune.plugins.vision.recognize import find_decode_steps, find_frame_loops
from pipetune.plugins.vision.reduced_decode import as_size

PLUGIN = "vision"
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
        info = facts.get("decode", {}).get(step.stage, {})
        share = profile.share(step.stage)
        if step.transformable:
            proposals.extend(_decode_proposals(pipeline, step, info, share))
        elif step.code and not step.reduced:
            proposals.extend(_by_hand(step, info, share))
    for loop in find_frame_loops(pipeline):
        if not loop.transformable or loop.gated:
            continue
        info = facts.get("video", {}).get(loop.stage, {})
        proposals.extend(_frame_proposals(loop.stage, info))
    items = facts.get("frame_items")
    if items:
        proposals.extend(_frame_proposals(items["stage"], items, frames="items"))
    return proposals


def _gain_text(timing: dict[str, Any]) -> str:
    if not timing:
        return ""
    return (
        f" Measured on {timing.get('images', '?')} of the workload's own JPEGs "
        f"({timing.get('how', '')}): {timing['full']:.1f} ms against {timing['reduced']:.1f} "
        f"ms, {timing['speedup']:.2f}x."
    )


def _by_hand(step: Any, info: dict[str, Any], share: float) -> list[Proposal]:
    """Reduced decode for plain code whose decoder pipetune cannot swap: the exact change
    to make, with its measured gain (advice: the loop cannot apply it)."""
    factor = info.get("dct_factor", {})
    target = as_size(info["model_input"]) if info.get("model_input") else step.target
    if not target or factor.get("max", 1) < 2 or not info.get("formats", {}).get("jpeg"):
        return []
    timing = info.get("sample_timing_ms", {})
    suggested = [suggested_change(d, target, int(factor.get("min", 1))) for d in step.code]
    changes = [c for c in suggested if c is not None]
    first = step.code[0]
    edit = (
        "\n".join(
            f"  {c['where']}:\n    {c['before']}\n  becomes\n    {c['after']}" for c in changes
        )
        if changes
        else f"  {first.where()}: decode at reduced size ({first.written} takes options)"
    )
    return [
        Proposal(
            id=REDUCED,
            plugin=PLUGIN,
            stage=step.stage,
            title=f"Decode JPEGs at reduced size: change {first.written} at {first.where()}",
            rationale=(
                f"The stage decodes full-size JPEGs with {first.written} and resizes them to "
                f"{target[0]}x{target[1]}; pipetune cannot swap this decoder itself "
                f"({step.unreachable})." + _gain_text(timing) + "\n" + edit
            ),
            est_stage_speedup=max(1.0, float(timing.get("speedup") or 1.0)),
            effort="minutes",
            accuracy_risk="low",
            applicable=False,
            params={"max_factor": int(factor["max"]), "target": list(target)},
            evidence={
                "one_line_change": changes,
                "sample_timing_ms": timing,
                "dct_factor": factor,
                "decode_share": share,
            },
        )
    ]


_DECODE_EVIDENCE = (
    "source_resolution",
    "model_input",
    "dct_factor",
    "discarded_pixel_share",
    "formats",
    "sample_timing_ms",
)


def _reduced_proposal(step: Any, info: dict[str, Any], share: float) -> Proposal | None:
    """Reduced decode where sources are JPEGs larger than the model input: through the
    decoder slot, or by rebinding the decoder name plain code calls."""
    target = step.target or (as_size(info["model_input"]) if info.get("model_input") else None)
    factor = info.get("dct_factor", {})
    timing = info.get("sample_timing_ms", {})
    jpegs = info.get("formats", {}).get("jpeg", 0)
    if not (target and jpegs and factor.get("max", 1) > 1 and not step.reduced):
        return None
    speedup = float(timing.get("speedup") or {8: 4.0, 4: 2.5, 2: 1.6}[factor["max"]])
    median = info.get("source_resolution", {}).get("median", ["?", "?"])
    params: dict[str, Any] = {"max_factor": int(factor["max"]), "target": list(target)}
    how = ""
    if step.how == "code":
        params["rebind"] = list(step.rebind)
        first = step.code[0]
        how = (
            f" The stage's own code decodes with {first.written} ({first.where()}): "
            f"pipetune runs its function with {', '.join(step.rebind)} rebound to a "
            "reduced-size drop-in (your module is not modified)."
        )
    small_note = (
        ""
        if share >= MIN_SHARE
        else (
            f" The stage is only {share:.0%} of end-to-end time, so even a large stage speedup "
            "cannot matter much."
        )
    )
    return Proposal(
        id=REDUCED,
        plugin=PLUGIN,
        stage=step.stage,
        title=f"Decode JPEGs at 1/{factor['max']} size (DCT scaling) before the resize",
        rationale=(
            f"Sources are {median[0]}x{median[1]} but the model takes "
            f"{target[0]}x{target[1]}: {info.get('discarded_pixel_share', 0):.1%} of "
            f"decoded pixels are thrown away by the resize. libjpeg can decode at "
            f"1/{factor['max']} scale directly (largest factor keeping at least the "
            f"model input, chosen per image)." + _gain_text(timing) + how + small_note
        ),
        est_stage_speedup=max(1.0, speedup),
        effort="minutes",
        accuracy_risk="low",
        params=params,
        conflicts=(DALI_DECODE, GPU_DECODE),
        evidence={k: info[k] for k in _DECODE_EVIDENCE if k in info},
    )


def _accelerated_proposals(step: Any, evidence: dict[str, Any]) -> list[Proposal]:
    """DALI's decode-resize-normalize pipeline and batched nvJPEG, for the decode block."""
    out: list[Proposal] = []
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
    return out


def _decode_proposals(
    pipeline: Pipeline, step: Any, info: dict[str, Any], share: float
) -> list[Proposal]:
    reduced = _reduced_proposal(step, info, share)
    out: list[Proposal] = [reduced] if reduced is not None else []
    evidence = {k: info[k] for k in _DECODE_EVIDENCE if k in info}
    if step.how != "block":
        # DALI and nvJPEG replace the whole decode-and-resize, which only the plugin's own
        # block exposes; plain code keeps its own resize after a library decoder.
        return out
    out.extend(_accelerated_proposals(step, evidence))
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


#: The facts of a frame loop (or of consecutive-frame items) kept as a frame-skipping
#: proposal's evidence, where measured.
_FRAME_EVIDENCE = (
    "frame_change",
    "decode_ms_per_frame",
    "ms_per_frame",
    "decode_share_of_loop",
    "gate_run_fraction_at_0.01",
    "frames_sampled",
    "source",
    "frame_size",
    "named_in_order",
    "similar_pair_share",
    "signal_ms",
    "stage_ms",
)


@dataclass(frozen=True)
class _FrameSkip:
    """What the two frame-skipping proposals share: their estimates, the rationale's
    opening, the extra params and the in-flight need (frames as items run in order)."""

    est: float
    stride_est: float
    text: str
    extra: dict[str, Any]
    in_order: InFlight | None


def _frame_proposals(stage: str, info: dict[str, Any], frames: str = "clip") -> list[Proposal]:
    """Motion-gated and fixed-stride frame skipping, for a frame loop inside a stage
    (``frames="clip"``) or a workload whose items are consecutive frames (``"items"``)."""
    run_fraction = float(info.get("gate_run_fraction_at_0.01", 0.25))
    skip = _frame_skip(stage, info, frames, run_fraction)
    evidence = {k: info[k] for k in _FRAME_EVIDENCE if k in info}
    return [
        _motion_proposal(stage, skip, run_fraction, evidence),
        _stride_proposal(stage, skip, evidence),
    ]


def _frame_skip(stage: str, info: dict[str, Any], frames: str, run_fraction: float) -> _FrameSkip:
    """The estimates and rationale opening: Amdahl inside the loop (decode stays, the model
    runs on ``run_fraction`` of frames, or a third for stride 3); for frames as items, the
    measured estimate and the whole stage's cost behind the gate."""
    change = info.get("frame_change", {})
    static = change.get("static_share", {})
    decode = float(info.get("decode_share_of_loop", 0.1))
    # Amdahl inside the loop: decode stays, the model runs on run_fraction of frames.
    est = 1.0 / (decode + (1 - decode) * max(run_fraction, 0.02))
    stride_est = max(1.0, 1.0 / (decode + (1 - decode) / 3))
    static_text = (
        f"{static.get('0.01', 0):.0%} of consecutive frames change less than 1 % of pixels; "
        if static
        else ""
    )
    if frames != "items":
        return _FrameSkip(est, stride_est, static_text, {}, None)
    stride_est = frame_items.estimated_speedup(
        float(info.get("stage_ms", 0.0)), 1 / 3, float(info.get("signal_ms", 0.0))
    )
    static_text = (
        f"The workload's items are consecutive frames of one source "
        f"({info.get('frames_sampled')} sampled, {info.get('similar_pair_share', 0):.0%} "
        f"of consecutive pairs nearly identical): stage {stage!r} runs behind the gate, "
        "in input order. " + static_text
    )
    return _FrameSkip(
        float(info.get("est_stage_speedup", est)),
        stride_est,
        static_text,
        {"frames": "items"},
        FRAMES_IN_ORDER,
    )


def _motion_proposal(
    stage: str, skip: _FrameSkip, run_fraction: float, evidence: dict[str, Any]
) -> Proposal:
    """Motion-gated frame skipping: the model runs only when the scene changes."""
    return Proposal(
        id=MOTION,
        plugin=PLUGIN,
        stage=stage,
        title="Motion-gated frame skipping: run the model only when the scene changes",
        rationale=(
            skip.text + f"a motion gate at a middle threshold would run the model on "
            f"{run_fraction:.0%} of frames and reuse the last result on the others. The "
            "threshold is tuned for per-frame agreement, and every motion event must be "
            "detected within 3 frames."
        ),
        est_stage_speedup=max(1.0, skip.est),
        effort="minutes",
        accuracy_risk="medium",
        params={"mode": "motion", "width": 64, "delta": 8.0, "max_interval": 150, **skip.extra},
        conflicts=(STRIDE,),
        fidelity_kind="frame_labels",
        evidence=evidence,
        in_flight=skip.in_order,
    )


def _stride_proposal(stage: str, skip: _FrameSkip, evidence: dict[str, Any]) -> Proposal:
    """Fixed-stride frame skipping: the model runs on every k-th frame (k tuned)."""
    return Proposal(
        id=STRIDE,
        plugin=PLUGIN,
        stage=stage,
        title="Fixed-stride frame skipping: run the model on every k-th frame",
        rationale=(
            "Classify every k-th frame and repeat the result in between; k is tuned, and "
            "k ≤ 4 is needed to see every event within 3 frames."
        ),
        est_stage_speedup=skip.stride_est,
        effort="minutes",
        accuracy_risk="medium",
        params={"mode": "stride", "stride": 3, **skip.extra},
        conflicts=(MOTION,),
        fidelity_kind="frame_labels",
        evidence=evidence,
        in_flight=skip.in_order,
    )
