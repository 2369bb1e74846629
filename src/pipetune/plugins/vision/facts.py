"""Domain measurements for the profile: source resolution against the model input, decode's
share, the CPU→GPU transfer share when a GPU model follows, and for video the frame-to-frame
change distribution. Computed from the profiler's observed stage inputs and outputs, plus a
few small, bounded timings (a handful of decodes, a couple of clips read once)."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

import numpy as np

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.results import Profile
from pipetune.plugins.vision import frame_skip
from pipetune.plugins.vision.inputs import (
    BadInput,
    Skipped,
    count_skipped,
    image_size,
    read_image_bytes,
    sniff_format,
)
from pipetune.plugins.vision.recognize import (
    DecodeStep,
    FrameLoop,
    find_decode_steps,
    find_frame_loops,
    inference_after,
    model_input_size,
    torch_model_device,
    wrapped_chain,
)
from pipetune.plugins.vision.reduced_decode import OpenCVDecoder, PillowDecoder, choose_factor

SAMPLE_IMAGES = 64
TIMED_IMAGES = 4
TIMED_ROUNDS = 3
MOTION_CLIPS = 2
MOTION_FRAMES = 600
#: Motion thresholds the profile reports the share of static frames for.
REPORTED_THRESHOLDS = (0.002, 0.01, 0.05)


def _output_size(outputs: list[Any]) -> tuple[int, int] | None:
    """(width, height) of the first image among ``outputs``: an HWC or CHW array (or a
    batch of one), or a PIL image."""
    for value in outputs:
        if hasattr(value, "getbands") and isinstance(getattr(value, "size", None), tuple):
            width, height = value.size
            return (int(width), int(height))
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) == 4 and shape[0] == 1:
            shape = shape[1:]
        if shape is not None and len(shape) == 3:
            # HWC uint8 or CHW normalized
            if shape[0] in (1, 3) and shape[2] not in (1, 3):
                return (int(shape[2]), int(shape[1]))
            return (int(shape[1]), int(shape[0]))
    return None


def _target(
    pipeline: Pipeline, step: DecodeStep, observed: Observations, pixels: int | None
) -> tuple[int, int] | None:
    """The size the decoded image ends at: declared, else what the stage outputs when
    that is smaller than the sources, else what a later stage outputs (a decode stage
    whose image a later stage resizes)."""
    if step.target:
        return step.target
    own = _output_size(observed.outputs_of(step.stage))
    if own is None or pixels is None or own[0] * own[1] < pixels / 2:
        return own
    for later in pipeline.stages[pipeline.index(step.stage) + 1 :]:
        size = _output_size(observed.outputs_of(later.name))
        if size is not None and size[0] * size[1] < pixels / 2:
            return size
    return own


def decode_facts(
    pipeline: Pipeline, step: DecodeStep, profile: Profile, observed: Observations
) -> dict[str, Any]:
    inputs = observed.inputs_of(step.stage)[:SAMPLE_IMAGES]
    formats: Counter[str] = Counter()
    sizes: list[tuple[int, int]] = []
    jpegs: list[tuple[Any, bytes]] = []
    for item in inputs:
        try:
            data = read_image_bytes(item)
        except BadInput:
            formats["unreadable"] += 1
            continue
        formats[sniff_format(data) or "unknown"] += 1
        dims = image_size(data)
        if dims:
            sizes.append(dims)
        if sniff_format(data) == "jpeg" and len(jpegs) < TIMED_IMAGES:
            jpegs.append((item, data))
    pixels = [w * h for w, h in sizes]
    target = _target(pipeline, step, observed, int(statistics.median(pixels)) if pixels else None)
    facts: dict[str, Any] = {
        "stage": step.stage,
        "recognized": step.to_dict(),
        "decode_share": profile.share(step.stage),
        "model_input": list(target) if target else None,
        "formats": dict(formats),
        "sampled": len(inputs),
    }
    if sizes:
        facts["source_resolution"] = {
            "median": list(sizes[int(np.argsort(pixels)[len(pixels) // 2])]),
            "min_pixels": min(pixels),
            "max_pixels": max(pixels),
            "distinct": len(set(sizes)),
        }
        if target:
            ratio = statistics.median(pixels) / (target[0] * target[1])
            factors = [choose_factor(w, h, target) for w, h in sizes]
            facts["pixels_per_model_pixel"] = ratio
            facts["discarded_pixel_share"] = max(0.0, 1.0 - 1.0 / ratio) if ratio > 0 else 0.0
            facts["dct_factor"] = {
                "min": min(factors),
                "max": max(factors),
                "counts": dict(Counter(factors)),
            }
    if jpegs and target and facts.get("dct_factor", {}).get("max", 1) > 1 and not step.reduced:
        facts["sample_timing_ms"] = measured_gain(pipeline, step, jpegs, target)
    return facts


def measured_gain(
    pipeline: Pipeline, step: DecodeStep, jpegs: list[tuple[Any, bytes]], target: tuple[int, int]
) -> dict[str, Any]:
    """Full against reduced decode on a few of the workload's own JPEGs, interleaved.

    A stage whose decoder pipetune can swap is timed itself, as written and with the
    change applied (everything else the stage does included); otherwise the same
    library's decode + resize is timed (Pillow's for Pillow, imageio and scikit-image,
    OpenCV's for OpenCV), which is what the change the proposal shows would give."""
    if step.how == "code" and step.transformable:
        from pipetune.plugins.vision.changes.reduced_decode import rebound_stage

        stage = pipeline.stage(step.stage)
        try:
            fast = rebound_stage(stage, step.rebind, target, 8)
            return _interleaved(
                [(lambda i=item: stage(i), lambda i=item: fast(i)) for item, _ in jpegs],
                "stage as written against the stage with reduced decode",
            )
        except Exception:  # the stage raised on a sample: time the library instead
            pass
    full: Any
    reduced: Any
    if step.library in ("pillow", "imageio", "skimage"):
        full, reduced = PillowDecoder(), PillowDecoder(reduce=True)
        how = "Pillow decode + resize, full against draft"
    else:
        full, reduced = OpenCVDecoder(), OpenCVDecoder(reduce=True)
        how = "OpenCV decode + resize, full against IMREAD_REDUCED_*"
    return _interleaved(
        [
            (
                lambda d=data: full.decode_resize(d, target),
                lambda d=data: reduced.decode_resize(d, target),
            )
            for _, data in jpegs
        ],
        how,
    )


def _interleaved(pairs: list[tuple[Any, Any]], how: str) -> dict[str, Any]:
    """Each image timed both ways back to back, :data:`TIMED_ROUNDS` rounds, the order
    alternating (after one untimed call of each on the first image): the median ms of
    each side, and the speedup as the median of the paired ratios (a drift in the host's
    load between rounds cancels within a pair)."""
    times: dict[str, list[float]] = {"full": [], "reduced": []}
    ratios: list[float] = []
    pairs[0][0](), pairs[0][1]()  # warm-up: lazy imports, first-call allocations
    for round_ in range(TIMED_ROUNDS):
        for full, reduced in pairs:
            order = (("full", full), ("reduced", reduced))
            taken = {}
            for name, call in order if round_ % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                call()
                taken[name] = (time.perf_counter() - start) * 1000
                times[name].append(taken[name])
            ratios.append(taken["full"] / max(taken["reduced"], 1e-9))
    result: dict[str, Any] = {name: statistics.median(v) for name, v in times.items()}
    result["speedup"] = statistics.median(ratios)
    result["images"] = len(pairs)
    result["samples_per_side"] = len(times["full"])
    result["how"] = how
    return result


def transfer_facts(
    pipeline: Pipeline, stage: str, observed: Observations, end_to_end_ms: float = 0.0
) -> dict[str, Any]:
    """CPU→GPU copy time of what the model stage receives, when its model is on a GPU."""
    follower = inference_after(pipeline, stage)
    if follower is None:
        return {"status": "skipped", "reason": "no model stage follows the decode step"}
    device = torch_model_device(follower.slots.get("model"))
    if device is None:
        return {"status": "skipped", "reason": "the model is not a torch module"}
    if device != "cuda":
        return {"status": "skipped", "reason": f"the model runs on {device}: no transfer"}
    import torch

    arrays = [a for a in observed.inputs_of(follower.name)[:16] if isinstance(a, np.ndarray)]
    if not arrays:
        return {"status": "skipped", "reason": "no array inputs observed"}
    torch.cuda.synchronize()
    start = time.perf_counter()
    for array in arrays:
        torch.from_numpy(np.ascontiguousarray(array)).to("cuda", non_blocking=False)
    torch.cuda.synchronize()
    per_item_ms = (time.perf_counter() - start) * 1000 / len(arrays)
    return {
        "status": "measured",
        "per_item_ms": per_item_ms,
        "share": per_item_ms / end_to_end_ms if end_to_end_ms > 0 else None,
        "model_stage": follower.name,
    }


def _clip_frames(item: Any, stage_slots: dict[str, Any]) -> Any:
    """Frames of an observed clip: a Clip from the frame source, or a path read with the
    stage's capture slot."""
    from pipetune.plugins.vision.blocks import Clip, read_frames

    if isinstance(item, Clip):
        return item.frames()
    if isinstance(item, str):
        return read_frames(item, stage_slots.get("capture"))
    return None


def video_facts(
    pipeline: Pipeline, loop: FrameLoop, profile: Profile, observed: Observations
) -> dict[str, Any]:
    stage = pipeline.stage(loop.stage)
    facts: dict[str, Any] = {
        "stage": loop.stage,
        "recognized": loop.to_dict(),
        "share": profile.share(loop.stage),
    }
    scores: list[float] = []
    frames_read = 0
    decode_s = 0.0
    smalls_per_clip = []
    for item in observed.inputs_of(loop.stage)[:MOTION_CLIPS]:
        frames = _clip_frames(item, dict(stage.slots))
        if frames is None:
            continue
        smalls = []
        start = time.perf_counter()
        for frame in frames:
            decode_s += time.perf_counter() - start
            smalls.append(frame_skip.gray_small(frame))
            frames_read += 1
            if len(smalls) >= MOTION_FRAMES:
                break
            start = time.perf_counter()
        smalls_per_clip.append(smalls)
        scores.extend(frame_skip.change_distribution(smalls))
    outputs = observed.outputs_of(loop.stage)
    per_clip = [len(o) for o in outputs if isinstance(o, list)]
    facts["frames_per_clip"] = per_clip
    facts["skipped"] = count_skipped(outputs)
    if frames_read:
        facts["decode_ms_per_frame"] = decode_s * 1000 / frames_read
        stage_ms = profile.stage(loop.stage).mean_ms if loop.stage in _names(profile) else 0.0
        total_frames = sum(per_clip) / max(len(per_clip), 1)
        if stage_ms and total_frames:
            per_frame = stage_ms / total_frames
            facts["ms_per_frame"] = per_frame
            facts["decode_share_of_loop"] = min(1.0, facts["decode_ms_per_frame"] / per_frame)
    if scores:
        arr = np.asarray(scores)
        facts["frame_change"] = {
            "frames": int(arr.size),
            "percentiles": {str(q): float(np.percentile(arr, q)) for q in (50, 75, 90, 95, 99)},
            "static_share": {str(t): float((arr <= t).mean()) for t in REPORTED_THRESHOLDS},
        }
        # How often a motion gate at a middle threshold would run the model on these frames.
        gate = frame_skip.MotionGate(threshold=0.01)
        runs = frames = 0
        for smalls in smalls_per_clip:
            state = gate.start()
            for small in smalls:
                state.should_run_small(small)
            runs, frames = runs + state.runs, frames + state.frames
        facts["gate_run_fraction_at_0.01"] = runs / frames if frames else 1.0
    return facts


def _names(profile: Profile) -> set[str]:
    return {s.name for s in profile.stages}


def frame_item_facts(
    pipeline: Pipeline, profile: Profile, observed: Observations
) -> dict[str, Any] | None:
    """When the workload's items are consecutive frames of one source: the evidence, and
    the stage a frame gate would skip (the costliest stage that receives frames and is not
    gated already)."""
    from pipetune.plugins.vision import frame_items

    if pipeline.output_kind not in ("labels", "frame_labels"):
        return None
    evidence = frame_items.detect(observed.inputs_of(pipeline.stages[0].name))
    if evidence is None:
        return None
    times = {s.name: s.mean_ms for s in profile.stages}
    candidates = []
    for stage in pipeline.stages:
        sample = observed.inputs_of(stage.name)[:2]
        gated = any(isinstance(fn, frame_items.GatedFrames) for fn in wrapped_chain(stage.fn))
        if sample and not gated and all(frame_items.frame_size(x) for x in sample):
            candidates.append(stage.name)
    if not candidates:
        return None
    chosen = max(candidates, key=lambda name: times.get(name, 0.0))
    stage_ms = times.get(chosen, 0.0)
    evidence.update(
        stage=chosen,
        stage_ms=stage_ms,
        share=profile.share(chosen),
        est_stage_speedup=frame_items.estimated_speedup(
            stage_ms, evidence["gate_run_fraction_at_0.01"], evidence["signal_ms"]
        ),
    )
    return evidence


def profile_facts(
    pipeline: Pipeline, profile: Profile, observed: Observations
) -> dict[str, Any] | None:
    steps = find_decode_steps(pipeline)
    loops = find_frame_loops(pipeline)
    frames = None if loops else frame_item_facts(pipeline, profile, observed)
    if not steps and not loops and frames is None:
        return None
    facts: dict[str, Any] = {}
    if frames is not None:
        facts["frame_items"] = frames
    decode = {}
    for step in steps:
        entry = decode_facts(pipeline, step, profile, observed)
        entry["gpu_transfer"] = transfer_facts(
            pipeline, step.stage, observed, profile.latency_ms.mean or profile.latency_ms.p50
        )
        decode[step.stage] = entry
    if decode:
        facts["decode"] = decode
    video = {loop.stage: video_facts(pipeline, loop, profile, observed) for loop in loops}
    if video:
        facts["video"] = video
    last = pipeline.stages[-1].name
    skipped = count_skipped(observed.outputs_of(last))
    facts["skipped_inputs"] = {"total": sum(skipped.values()), "by_reason": skipped}
    return facts


def is_skipped(value: Any) -> bool:
    return isinstance(value, Skipped)


def static_facts(pipeline: Pipeline) -> dict[str, Any] | None:
    """What the pipeline's declaration shows without running it: its decode steps, its
    video frame loops and the model's input size."""
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
