"""Frames as workload items: a clip's frames fed one per input (arrays, or frame files
extracted from one video), a common way to batch video.

Nothing in such a pipeline says "video": the workload does. :func:`detect` looks at the
first inputs in workload order — frame-like values of one size (image arrays, or image
files and bytes of one size) whose consecutive pairs barely differ — and
:class:`GatedFrames` then gives the chosen stage the motion gate (or fixed stride) of
:mod:`.frame_skip`: a frame that did not change since the last frame the stage ran on gets
that frame's result again. The gate is sequential: it assumes inputs arrive in frame order
(as the workload lists them), which the offline runtime and the loop's splits preserve.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.plugins.vision import frame_skip

#: File extensions of image files the detector reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Observed inputs the detector looks at, and the fewest it decides on.
SAMPLE = 120
MIN_FRAMES = 8
#: Consecutive frames whose motion score (share of changed pixels) is at most this are
#: "similar"; the items are frames when at least :data:`SIMILAR_SHARE` of pairs are.
SIMILAR_SCORE = 0.05
SIMILAR_SHARE = 0.6

_NONE = object()


# -- what a frame looks like to the gate ---------------------------------------------------


def _as_image_array(value: Any) -> np.ndarray | None:
    """``value`` as an (H, W) or (H, W, C) array when it holds an image: a uint8 array, a
    channels-first or -last float array or tensor, a PIL image; ``None`` otherwise."""
    if hasattr(value, "getbands") and hasattr(value, "size"):  # a PIL image
        value = np.asarray(value)
    elif hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.size == 0:
        return None
    array = _frame_layout(value)
    if array is None or min(array.shape[:2]) < 8:
        return None
    if array.dtype == np.uint8:
        return array
    return _to_pixel_range(array)


def _frame_layout(array: np.ndarray) -> np.ndarray | None:
    """``array`` as (H, W) or (H, W, 1-3): leading batch dimensions of 1 dropped, channels
    moved last, alpha dropped; ``None`` when it is no image layout."""
    while array.ndim > 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3:
        if array.shape[2] not in (1, 3, 4):
            return None
        return array[:, :, 0] if array.shape[2] == 1 else array[:, :, :3]
    if array.ndim != 2 or array.dtype != np.uint8:
        return None  # a 2-D float matrix is a feature matrix, not a grey frame
    return array


def _to_pixel_range(array: np.ndarray) -> np.ndarray:
    """A float frame on the 0-255 scale: a 0-1 frame scaled, any other range (a
    normalized input) stretched."""
    values = array.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if low >= -1e-3 and high <= 1.0 + 1e-3:
        return values * 255.0
    return (values - low) * (255.0 / max(high - low, 1e-6))  # normalized input: stretch


def _image_file(value: Any) -> str | None:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value.lower().endswith(IMAGE_EXTENSIONS):
        return value
    return None


def _decode_small_gray(data: bytes, width: int) -> np.ndarray | None:
    """A grey image at least ``width`` wide, decoded with DCT scaling when a JPEG."""
    import cv2

    from pipetune.plugins.vision.inputs import image_size, sniff_format
    from pipetune.plugins.vision.reduced_decode import choose_factor

    if sniff_format(data) is None:
        return None
    factor = 1
    dims = image_size(data)
    if dims is not None and sniff_format(data) == "jpeg":
        factor = choose_factor(*dims, (width, max(1, round(width * dims[1] / dims[0]))))
    flag = (
        cv2.IMREAD_GRAYSCALE if factor == 1 else getattr(cv2, f"IMREAD_REDUCED_GRAYSCALE_{factor}")
    )
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    return image if image is not None and image.size else None


def frame_signal(value: Any, width: int = 64) -> np.ndarray | None:
    """What the motion gate compares: ``value`` as a small grey float32 image
    (:func:`frame_skip.gray_small`), or ``None`` when it is not a frame. An image file or
    encoded bytes are decoded in grey at reduced size (a JPEG at 1/8 costs a fraction of a
    full decode)."""
    path = _image_file(value)
    if path is not None:
        try:
            with open(path, "rb") as handle:
                value = handle.read()
        except OSError:
            return None
    if isinstance(value, bytes | bytearray | memoryview):
        array = _decode_small_gray(bytes(value), width)
    else:
        array = _as_image_array(value)
    if array is None:
        return None
    return frame_skip.gray_small(np.ascontiguousarray(array), width)


def frame_size(value: Any) -> tuple[int, ...] | None:
    """The size a frame has (an array's shape, an image file's dimensions), to check that
    the items are frames of one source."""
    path = _image_file(value)
    if path is not None or isinstance(value, bytes):
        from pipetune.plugins.vision.inputs import image_size

        try:
            if isinstance(value, bytes):
                data = value
            else:
                assert path is not None
                data = open(path, "rb").read(65536)  # noqa: SIM115
        except OSError:
            return None
        return image_size(data)
    array = _as_image_array(value)
    return None if array is None else tuple(array.shape)


# -- detection -----------------------------------------------------------------------------


def _named_in_order(items: Sequence[Any]) -> bool | None:
    """For frame files: one folder and the numbers in their names non-decreasing in
    item order (``frame_0001.jpg``, ``frame_0002.jpg``...); ``None`` for non-files."""
    paths = [_image_file(item) for item in items]
    if not all(paths):
        return None
    if len({os.path.dirname(p) for p in paths if p}) != 1:
        return False
    keys = [[int(n) for n in re.findall(r"\d+", os.path.basename(p or ""))] for p in paths]
    return all(a <= b for a, b in itertools.pairwise(keys))


def _similar_enough(smalls: list[np.ndarray]) -> bool:
    scores = np.asarray(frame_skip.change_distribution(smalls))
    return bool((scores <= SIMILAR_SCORE).mean() >= SIMILAR_SHARE)


def detect(items: Sequence[Any], width: int = 64) -> dict[str, Any] | None:
    """Whether ``items`` (in workload order) are consecutive frames of one source: the
    evidence, or ``None``. Frame-like values of one size whose consecutive pairs are
    similar (at least :data:`SIMILAR_SHARE` of pairs change at most :data:`SIMILAR_SCORE`
    of their pixels)."""
    sample = list(items[:SAMPLE])
    if len(sample) < MIN_FRAMES or frame_size(sample[0]) is None:
        return None
    sizes = {frame_size(item) for item in sample}
    if len(sizes) != 1 or None in sizes:
        return None
    start = time.perf_counter()
    smalls: list[np.ndarray] = []
    for count, item in enumerate(sample, 1):
        small = frame_signal(item, width)
        if small is None:
            return None
        smalls.append(small)
        if count == MIN_FRAMES and not _similar_enough(smalls):
            return None  # unrelated images: stop reading
    signal_ms = (time.perf_counter() - start) * 1000 / len(sample)
    scores = np.asarray(frame_skip.change_distribution(smalls))
    similar = float((scores <= SIMILAR_SCORE).mean())
    if similar < SIMILAR_SHARE:
        return None
    gate = frame_skip.MotionGate(threshold=0.01)
    state = gate.start()
    for small in smalls:
        state.should_run_small(small)
    first = sample[0]
    first_size = next(iter(sizes))
    return {
        "frames_sampled": len(sample),
        "source": "files" if _image_file(first) else type(first).__name__,
        "frame_size": list(first_size or ()),
        "named_in_order": _named_in_order(sample),
        "similar_pair_share": similar,
        "frame_change": {
            "frames": int(scores.size),
            "percentiles": {str(q): float(np.percentile(scores, q)) for q in (50, 90, 99)},
            "static_share": {str(t): float((scores <= t).mean()) for t in (0.002, 0.01, 0.05)},
        },
        "gate_run_fraction_at_0.01": state.runs / max(state.frames, 1),
        "signal_ms": signal_ms,
    }


def estimated_speedup(stage_ms: float, run_fraction: float, signal_ms: float) -> float:
    """The gated stage's speedup: it runs on ``run_fraction`` of the frames and computes
    the signal on all of them."""
    gated = stage_ms * max(run_fraction, 0.02) + signal_ms
    return stage_ms / gated if gated > 0 and math.isfinite(gated) else 1.0


# -- the gated stage -----------------------------------------------------------------------


class GatedFrames:
    """A per-frame stage function behind a frame gate (:func:`frame_skip.make_gate`): the
    wrapped function runs on the frames the gate passes; every other frame gets the last
    result again. Calls take the stage's slots as the wrapped function does (its signature
    is exposed through ``__wrapped__``), so a slot another change replaces still reaches
    it. The state (key frame, last result) is reset before every measured pass."""

    # set by pipetune_reset (called from __init__): the gate's state (a MotionState or a
    # StrideState) and the last result
    _state: Any
    _last: Any

    def __init__(self, fn: Any, params: dict[str, Any]):
        self.__wrapped__ = fn
        self.params = dict(params)
        self.gate = frame_skip.make_gate(self.params)
        self.width = int(self.params.get("width", 64))
        self._lock = threading.Lock()
        self.pipetune_reset()

    def __call__(self, item: Any, /, **slots: Any) -> Any:
        small = frame_signal(item, self.width) if self.params.get("mode") != "stride" else None
        with self._lock:
            if self._last is _NONE:
                run = True
                self._state.should_run_small(small)
            elif small is None and self.params.get("mode") != "stride":
                run = True  # not a frame: nothing to compare, run it
            else:
                run = self._state.should_run_small(small)
            last = self._last
        if not run:
            return last
        result = self.__wrapped__(item, **slots)
        with self._lock:
            self._last = result
            self._state.note_result(result)
        return result

    def with_inner(self, fn: Any) -> GatedFrames:
        """The same gate around another function (a change applied inside the gate)."""
        return GatedFrames(fn, self.params)

    def pipetune_reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self._state = self.gate.start()
            self._last = _NONE

    def pipetune_stats(self) -> dict[str, Any]:
        return {"frames": self._state.frames, "runs": self._state.runs}

    def __reduce__(self) -> tuple[Any, ...]:
        return (GatedFrames, (self.__wrapped__, self.params))

    def __repr__(self) -> str:
        return f"<{getattr(self.__wrapped__, '__qualname__', 'stage')} behind a frame gate>"
