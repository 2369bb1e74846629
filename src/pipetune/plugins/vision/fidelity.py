"""Fidelity for vision outputs: per-frame label agreement with the event-detection check
for video, PSNR for images when there is no classifier, IoU for masks, and the prediction
entropy that shows a classifier is not answering one class for everything."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.registry import OutputKind
from pipetune.core.kernel.results import Fidelity
from pipetune.core.measure.fidelity import share_agreeing
from pipetune.core.measure.stats import wilson_interval
from pipetune.plugins.vision.inputs import Skipped

#: An event must be detected within this many frames of its start (issue #6).
EVENT_WINDOW = 3
#: A baseline run shorter than this is classifier flicker, not a motion event (used only
#: when no ground-truth labels are given).
MIN_EVENT_FRAMES = 3
#: Two decoded images at or above this PSNR are counted as the same image.
PSNR_FLOOR_DB = 30.0


def prediction_entropy(labels: Sequence[Any]) -> dict[str, Any]:
    """Entropy (bits) of the distribution of predicted labels, with its maximum."""
    counts = Counter(str(label) for label in labels if not isinstance(label, Skipped))
    total = sum(counts.values())
    if not total:
        return {"entropy_bits": 0.0, "max_bits": 0.0, "classes_predicted": 0}
    probs = np.array(list(counts.values()), dtype=float) / total
    return {
        "entropy_bits": float(-(probs * np.log2(probs)).sum()),
        "max_bits": math.log2(len(counts)) if len(counts) > 1 else 0.0,
        "classes_predicted": len(counts),
        "distribution": dict(counts.most_common()),
    }


# -- video: per-frame agreement and events -------------------------------------------------


def _background(labels: Sequence[Any]) -> Any:
    counts = Counter(label for label in labels if not isinstance(label, Skipped))
    return counts.most_common(1)[0][0] if counts else None


def find_events(labels: Sequence[Any], min_frames: int = 1) -> list[tuple[int, int, Any]]:
    """Runs of frames whose label differs from the clip's dominant (background) label:
    (first frame, last frame, the run's most common label)."""
    background = _background(labels)
    events: list[tuple[int, int, Any]] = []
    start = None
    for i, label in enumerate([*labels, background]):
        active = label != background and not isinstance(label, Skipped)
        if active and start is None:
            start = i
        elif not active and start is not None:
            if i - start >= min_frames:
                run = labels[start:i]
                events.append((start, i - 1, Counter(run).most_common(1)[0][0]))
            start = None
    return events


def event_detection(
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    truth: Sequence[Any] | None = None,
    window: int = EVENT_WINDOW,
) -> dict[str, Any]:
    """Check that the candidate detects every motion event within ``window`` frames.

    Events come from the ground-truth labels when they are given (and use the model's
    vocabulary), else from the baseline's outputs (runs of at least
    :data:`MIN_EVENT_FRAMES`). An event counts as detected when the candidate outputs the
    event's label at most ``window`` frames after its start — or, when the full pipeline
    itself needs longer (an object entering at the frame's edge), no later than the full
    pipeline does. Events the full pipeline never reports cannot be asked of the candidate
    and are counted apart.
    """
    total = detected = baseline_missed = 0
    late: list[dict[str, Any]] = []
    latencies: list[int] = []
    source = "baseline"
    for clip, (base, cand) in enumerate(zip(baseline, candidate, strict=True)):
        if not isinstance(base, list) or not isinstance(cand, list):
            continue
        reference = truth[clip] if truth is not None else None
        vocabulary = set(base)
        if (
            isinstance(reference, list)
            and len(reference) == len(base)
            and (set(reference) & vocabulary - {_background(reference)})
        ):
            events = find_events(reference)
            source = "labels"
        else:
            events = find_events(base, MIN_EVENT_FRAMES)
        for start, end, label in events:
            base_first = next((f for f in range(start, end + 1) if base[f] == label), None)
            if base_first is None:
                baseline_missed += 1
                continue
            total += 1
            allowed = start + max(window, base_first - start)
            stop = min(end, len(cand) - 1)
            cand_first = next((f for f in range(start, stop + 1) if cand[f] == label), None)
            if cand_first is not None and cand_first <= allowed:
                detected += 1
                latencies.append(cand_first - start)
            else:
                late.append(
                    {
                        "clip": clip,
                        "start": start,
                        "label": str(label),
                        "baseline_frame": base_first,
                        "candidate_frame": cand_first,
                    }
                )
    return {
        "events": total,
        "detected_in_time": detected,
        "late_or_missed": late[:10],
        "late_count": len(late),
        "baseline_missed": baseline_missed,
        "max_latency_frames": max(latencies) if latencies else 0,
        "window_frames": window,
        "event_source": source,
    }


def frame_agreement(
    baseline: Sequence[Any], candidate: Sequence[Any], labels: Sequence[Any] | None
) -> Fidelity:
    """Per-frame label agreement over all clips, gated by event detection: the value is
    the agreement when every event is detected within :data:`EVENT_WINDOW` frames, and 0
    otherwise — a missed event is a hard failure, not a 1 % loss.

    Outputs that are one label per input (frames fed as workload items) are read as one
    clip in input order."""
    if _flat(baseline) and _flat(candidate):
        baseline, candidate = [list(baseline)], [list(candidate)]
        labels = [list(labels)] if labels is not None and _flat(labels) else None
    agree = frames = 0
    truth_agree_base = truth_agree_cand = truth_frames = 0
    for clip, (base, cand) in enumerate(zip(baseline, candidate, strict=True)):
        if not isinstance(base, list) or not isinstance(cand, list):
            frames += 1
            agree += base == cand
            continue
        frames += max(len(base), len(cand))
        agree += sum(b == c for b, c in zip(base, cand, strict=False))
        reference = labels[clip] if labels is not None else None
        if isinstance(reference, list) and len(reference) == len(base):
            truth_frames += len(reference)
            truth_agree_base += sum(b == y for b, y in zip(base, reference, strict=True))
            truth_agree_cand += sum(c == y for c, y in zip(cand, reference, strict=True))
    events = event_detection(baseline, candidate, labels)
    agreement = agree / frames if frames else 1.0
    on_time = events["late_count"] == 0
    details: dict[str, Any] = {
        "frame_agreement": agreement,
        "frames": frames,
        "agree": agree,
        "events_ok": on_time,
        **events,
    }
    if truth_frames:
        details["baseline_accuracy"] = truth_agree_base / truth_frames
        details["candidate_accuracy"] = truth_agree_cand / truth_frames
    return Fidelity(
        metric="frame_agreement_with_events",
        value=agreement if on_time else 0.0,
        n=frames,
        ci=wilson_interval(agree, frames),
        details=details,
    )


def _flat(values: Sequence[Any]) -> bool:
    """Labels per input rather than per clip (no list among them, not all skipped)."""
    return (
        len(values) > 0
        and not any(isinstance(v, list) for v in values)
        and not all(isinstance(v, Skipped) for v in values)
    )


# -- images without a classifier -----------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return 0.0
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def image_fidelity(baseline: Sequence[Any], candidate: Sequence[Any]) -> Fidelity:
    """Fraction of images whose PSNR against the baseline's is at least
    :data:`PSNR_FLOOR_DB`; mean and minimum PSNR in details."""
    values: list[float] = []
    same = 0
    for b, c in zip(baseline, candidate, strict=True):
        if isinstance(b, Skipped) or isinstance(c, Skipped):
            values.append(math.inf if b == c else 0.0)
        else:
            values.append(psnr(b, c))
        same += values[-1] >= PSNR_FLOOR_DB
    finite = [v for v in values if math.isfinite(v)]
    details = {
        "mean_psnr_db": float(np.mean(finite)) if finite else math.inf,
        "min_psnr_db": float(min(values)) if values else math.inf,
        "identical": sum(1 for v in values if math.isinf(v)),
    }
    return share_agreeing(f"psnr>={PSNR_FLOOR_DB:g}dB", same, len(values), details)


def mask_iou(baseline: Sequence[Any], candidate: Sequence[Any]) -> Fidelity:
    """Mean intersection-over-union of boolean masks."""
    ious = []
    for b, c in zip(baseline, candidate, strict=True):
        left, right = np.asarray(b, dtype=bool), np.asarray(c, dtype=bool)
        if left.shape != right.shape:
            ious.append(0.0)
            continue
        union = np.logical_or(left, right).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(left, right).sum() / union))
    return Fidelity(
        metric="mean_iou",
        value=float(np.mean(ious)) if ious else 1.0,
        n=len(ious),
        details={"min_iou": float(min(ious)) if ious else 1.0},
    )


def output_kinds() -> list[OutputKind]:
    """What ``register_output_kinds`` returns for the vision plugin."""
    return [
        OutputKind(
            "frame_labels",
            "frame_agreement_with_events",
            frame_agreement,
            "per-frame label agreement, with every event of the baseline detected in time",
        ),
        OutputKind(
            "image",
            f"psnr>={PSNR_FLOOR_DB:g}dB",
            lambda baseline, candidate, labels: image_fidelity(baseline, candidate),
            "image closeness (PSNR)",
        ),
        OutputKind(
            "masks",
            "mean_iou",
            lambda baseline, candidate, labels: mask_iou(baseline, candidate),
            "mean intersection over union of masks",
        ),
    ]
