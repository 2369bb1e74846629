"""Frame skipping for video: a fixed stride, or a motion gate that runs the model only when
the scene changed, reusing the last result for the frames in between.

The motion gate compares each frame with the *key frame* (the last frame the model ran on),
not with the previous frame: slow motion then accumulates until it matters, and a static
camera's sensor noise never does. Frames are compared as small grayscale images
(``width`` pixels wide, area-averaged, which also averages the sensor noise away) after
matching the key frame's mean brightness to the current one's, so slow lighting drift is
not motion. The score is the fraction of pixels that changed by more than ``delta`` grey
levels; the model runs when it exceeds ``threshold`` — the parameter tuned for fidelity
(per-frame agreement and every event detected within 3 frames) on the tuning split.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Thresholds tried by the tuner (fraction of changed pixels), smallest first.
THRESHOLD_GRID = tuple(float(v) for v in np.geomspace(0.0005, 0.3, 28))
#: Re-check intervals (frames) while an alert is up, tried by the tuner.
ACTIVE_INTERVALS = (3, 6, 12)
#: Minimum gaps between model runs tried by the tuner (1: none).
MIN_GAPS = (1, 2, 3)
#: Grid steps kept below the first failing threshold (about a factor 1.9): a threshold
#: that just passes on the tuning clips has no margin on others.
THRESHOLD_MARGIN_STEPS = 3
STRIDES = (2, 3, 4, 5, 6, 8, 10, 12, 15)


def gray_small(frame: np.ndarray, width: int = 64) -> np.ndarray:
    """A BGR (or grey) frame as a small float32 grayscale image ``width`` pixels wide."""
    import cv2

    height = max(1, round(frame.shape[0] * width / frame.shape[1]))
    small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    if small.ndim == 3:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return small.astype(np.float32)


def motion_score(current: np.ndarray, key: np.ndarray, delta: float = 8.0) -> float:
    """Fraction of pixels of ``current`` that differ from ``key`` by more than ``delta``
    grey levels, after scaling ``key`` to ``current``'s mean brightness (lighting drift)."""
    key_mean = float(key.mean())
    adjusted = key * (float(current.mean()) / key_mean) if key_mean > 1.0 else key
    return float((np.abs(current - adjusted) > delta).mean())


@dataclass(frozen=True)
class MotionGate:
    """Run the model when the motion score against the key frame exceeds ``threshold``,
    or when ``max_interval`` frames have passed since the last run (a periodic refresh).

    ``active_interval``: while the last result differs from the clip's resting result (the
    most frequent one so far), re-run at least every ``active_interval`` frames. An object
    that leaves with little contrast against the scene may not change enough pixels to
    trip the threshold; this re-check clears the alert within ``active_interval`` frames
    instead of holding it until the next refresh. It needs results that can be compared
    (labels); for other results only the threshold and the refresh apply.

    ``min_gap``: after a run, the next ``min_gap - 1`` frames reuse its result even if
    they moved (a moving object rarely changes class between consecutive frames). It halves
    or thirds the model calls during motion; an event is still seen at most
    ``min_gap - 1`` frames late, which the tuner checks against the 3-frame limit."""

    threshold: float
    width: int = 64
    delta: float = 8.0
    max_interval: int = 150
    active_interval: int = 5
    min_gap: int = 1

    def start(self) -> MotionState:
        return MotionState(self)


class MotionState:
    """One clip's gate state (the key frame, and the results seen)."""

    def __init__(self, gate: MotionGate):
        self.gate = gate
        self.key: np.ndarray | None = None
        self.since = 0
        self.runs = 0
        self.frames = 0
        self.counts: dict[Any, int] = {}
        self.last: Any = None

    def note_result(self, result: Any) -> None:
        """Tell the gate what the model answered on the frame it just ran on."""
        try:
            self.counts[result] = self.counts.get(result, 0) + 1
        except TypeError:  # unhashable results (tensors): no active re-checks
            return
        self.last = result

    @property
    def active(self) -> bool:
        if self.last is None or not self.counts:
            return False
        resting = max(self.counts, key=self.counts.__getitem__)
        return self.last != resting

    def should_run(self, frame: np.ndarray) -> bool:
        return self.should_run_small(gray_small(frame, self.gate.width))

    def should_run_small(self, small: np.ndarray) -> bool:
        self.frames += 1
        gate = self.gate
        if self.key is not None and self.since + 1 < gate.min_gap:
            self.since += 1
            return False
        if (
            self.key is None
            or self.since + 1 >= gate.max_interval
            or (self.active and self.since + 1 >= gate.active_interval)
            or motion_score(small, self.key, gate.delta) > gate.threshold
        ):
            self.key = small
            self.since = 0
            self.runs += 1
            return True
        self.since += 1
        return False


@dataclass(frozen=True)
class StrideGate:
    """Run the model on every ``stride``-th frame."""

    stride: int

    def start(self) -> StrideState:
        return StrideState(self.stride)


class StrideState:
    def __init__(self, stride: int):
        self.stride = max(1, int(stride))
        self.frames = 0
        self.runs = 0

    def should_run(self, frame: Any = None) -> bool:
        run = self.frames % self.stride == 0
        self.frames += 1
        self.runs += run
        return run

    should_run_small = should_run

    def note_result(self, result: Any) -> None:
        return None


def make_gate(params: dict[str, Any]) -> MotionGate | StrideGate:
    if params.get("mode") == "stride":
        return StrideGate(int(params["stride"]))
    return MotionGate(
        threshold=float(params["threshold"]),
        width=int(params.get("width", 64)),
        delta=float(params.get("delta", 8.0)),
        max_interval=int(params.get("max_interval", 150)),
        active_interval=int(params.get("active_interval", 5)),
        min_gap=int(params.get("min_gap", 1)),
    )


# -- simulation (tuning without re-running the model) --------------------------------------


def simulate(
    gate: MotionGate | StrideGate,
    smalls: Sequence[Sequence[np.ndarray]],
    baseline: Sequence[Sequence[Any]],
) -> tuple[list[list[Any]], float]:
    """What a gated pipeline outputs, from each clip's small frames and the full
    pipeline's per-frame labels: on a frame the model runs on, the gated pipeline computes
    exactly the baseline's label; on the others it repeats the last one. Returns the
    outputs and the fraction of frames the model runs on."""
    outputs: list[Any] = []
    runs = frames = 0
    for clip_smalls, clip_labels in zip(smalls, baseline, strict=True):
        if not isinstance(clip_labels, list):  # a skipped clip stays skipped
            outputs.append(clip_labels)
            continue
        state = gate.start()
        labels: list[Any] = []
        last: Any = None
        for i, small in enumerate(clip_smalls):
            if state.should_run_small(small) or last is None:
                last = clip_labels[i]
                state.note_result(last)
            labels.append(last)
        labels.extend(clip_labels[len(labels) :])  # unread frames stay markers
        outputs.append(labels)
        runs += state.runs
        frames += len(clip_smalls)
    return outputs, runs / frames if frames else 1.0


def clip_smalls(frames: Any, width: int = 64) -> list[np.ndarray]:
    return [gray_small(frame, width) for frame in frames]


def change_distribution(smalls: Sequence[np.ndarray], delta: float = 8.0) -> list[float]:
    """Frame-to-frame motion scores (each frame against the previous one)."""
    return [motion_score(b, a, delta) for a, b in itertools.pairwise(smalls)]


# -- gating plain frame loops: wrap the capture and the model -----------------------------


class GateSignal:
    """Shared between a :class:`GatedCapture` and a :class:`GatedModel`: whether the frame
    just read needs the model, and the last result (per thread, so concurrent clips do not
    mix)."""

    def __init__(self, gate: MotionGate | StrideGate):
        self.gate = gate
        self._local = threading.local()

    @property
    def state(self) -> Any:
        return getattr(self._local, "state", None)

    def begin(self) -> None:
        self._local.state = self.gate.start()
        self._local.run = True
        self._local.cached = None

    def observe(self, frame: np.ndarray) -> None:
        state = self.state
        if state is None:
            self.begin()
            state = self.state
        self._local.run = state.should_run(frame)

    @property
    def run(self) -> bool:
        return getattr(self._local, "run", True) or getattr(self._local, "cached", None) is None


class GatedCapture:
    """Wraps a capture factory (``cv2.VideoCapture``): every opened capture reports each
    frame it reads to the gate."""

    def __init__(self, factory: Any, signal: GateSignal):
        self.factory = factory
        self.signal = signal

    def __call__(self, *args: Any, **kwargs: Any) -> _GatedReader:
        self.signal.begin()
        return _GatedReader(self.factory(*args, **kwargs), self.signal)


class _GatedReader:
    def __init__(self, capture: Any, signal: GateSignal):
        self._capture = capture
        self._signal = signal

    def read(self, *args: Any) -> Any:
        ok, frame = self._capture.read(*args)
        if ok and frame is not None:
            self._signal.observe(frame)
        return ok, frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._capture, name)

    def __iter__(self) -> Any:
        return iter(self._capture)


class GatedModel:
    """Wraps the model a frame loop calls once per frame: when the gate says the frame is
    static, the last result is returned without running the model."""

    def __init__(self, model: Any, signal: GateSignal):
        self.model = model
        self.signal = signal

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        local = self.signal._local
        if self.signal.run:
            local.cached = self.model(*args, **kwargs)
            state = self.signal.state
            if state is not None:
                state.note_result(local.cached)
        return local.cached

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)
