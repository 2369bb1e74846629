"""The vision plugin's building blocks: decode-and-resize, a video frame source, and
classify steps for images and frames.

Each builder returns a :class:`~pipetune.core.kernel.model.Stage` whose components sit in slots
(``decoder=``, ``size=``, ``capture=``, ``model=``, ``gate=``), so the plugin transforms a
stage by replacing a slot: a reduced-resolution decoder, a DALI pipeline, a motion gate.
Plain user code that declares the same slots gets the same treatment (see recognize.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Stage
from pipetune.plugins.vision.inputs import (
    BadInput,
    Skipped,
    describe_source,
    read_image_bytes,
)
from pipetune.plugins.vision.reduced_decode import OpenCVDecoder, PillowDecoder, as_size

#: ImageNet statistics, the usual normalization in front of a vision model.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DECODE_RESIZE = "vision.decode_resize"
CLASSIFY = "vision.classify"
FRAME_SOURCE = "vision.frame_source"
CLASSIFY_FRAMES = "vision.classify_frames"


def make_decoder(decoder: Any) -> Any:
    """A decoder object from a name (``opencv``, ``pillow``, ``opencv-reduced``,
    ``pillow-draft``, ``dali``) or an object with ``decode_resize(data, size)``."""
    if not isinstance(decoder, str):
        if not callable(getattr(decoder, "decode_resize", None)):
            raise ConfigError(f"decoder {decoder!r} has no decode_resize(data, size) method")
        return decoder
    named: dict[str, Callable[[], Any]] = {
        "opencv": OpenCVDecoder,
        "pillow": PillowDecoder,
        "opencv-reduced": lambda: OpenCVDecoder(reduce=True),
        "pillow-draft": lambda: PillowDecoder(reduce=True),
    }
    if decoder == "dali":
        from pipetune.plugins.vision.dali import DaliDecoder

        return DaliDecoder()
    if decoder not in named:
        raise ConfigError(f"unknown decoder {decoder!r} (known: {', '.join([*named, 'dali'])})")
    return named[decoder]()


# -- decode and resize ---------------------------------------------------------------------


def decode_resize(
    item: Any, *, decoder: Any, size: Any = 224, on_error: str = "skip"
) -> np.ndarray | Skipped:
    """Decode an image (a path or encoded bytes) and resize it to ``size``: RGB uint8,
    shape (height, width, 3). Bad input gives a :class:`Skipped` marker, or raises
    :class:`BadInput` with ``on_error="raise"``."""
    source = describe_source(item)
    try:
        data = read_image_bytes(item)
        return decoder.decode_resize(data, as_size(size), source)
    except BadInput as exc:
        if on_error == "raise":
            raise
        return Skipped(exc.reason, source)


def decode_resize_batch(
    items: Sequence[Any],
    *,
    decoder: Any,
    size: Any = 224,
    on_error: str = "skip",
    workers: int = 1,
) -> list[np.ndarray | Skipped]:
    """:func:`decode_resize` for a list. A decoder with ``decode_resize_batch`` (DALI,
    nvJPEG) gets the whole batch at once; otherwise ``workers > 1`` decodes in a thread
    pool (OpenCV and Pillow release the GIL while decoding). A bad input is isolated: it
    gets its own marker and the rest of the batch goes on."""
    target = as_size(size)
    batch = getattr(decoder, "decode_resize_batch", None)
    if batch is None:
        if workers > 1 and len(items) > 1:
            pool = _pool(workers)
            return list(
                pool.map(
                    lambda x: decode_resize(x, decoder=decoder, size=target, on_error=on_error),
                    items,
                )
            )
        return [decode_resize(x, decoder=decoder, size=target, on_error=on_error) for x in items]
    outputs: list[Any] = [None] * len(items)
    good: list[int] = []
    blobs: list[bytes] = []
    for i, item in enumerate(items):
        try:
            blobs.append(read_image_bytes(item))
            good.append(i)
        except BadInput as exc:
            if on_error == "raise":
                raise
            outputs[i] = Skipped(exc.reason, describe_source(item))
    sources = [describe_source(items[i]) for i in good]
    for i, value in zip(good, batch(blobs, target, sources), strict=True):
        if isinstance(value, BadInput):
            if on_error == "raise":
                raise value
            value = Skipped(value.reason, value.source)
        outputs[i] = value
    return outputs


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    # One long-lived pool per size: creating threads per batch would cost more than a
    # small image's decode.
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pipetune-decode")


def decode_resize_stage(
    name: str = "decode",
    *,
    size: Any = 224,
    decoder: Any = "opencv",
    on_error: str = "skip",
    workers: int = 1,
) -> Stage:
    """The decode-and-resize building block: path or bytes in, RGB uint8 at ``size`` out."""
    if on_error not in ("skip", "raise"):
        raise ConfigError(f"on_error must be 'skip' or 'raise', not {on_error!r}")
    return Stage(
        name,
        decode_resize,
        kind="decode",
        slots={
            "decoder": make_decoder(decoder),
            "size": as_size(size),
            "on_error": on_error,
            "workers": int(workers),
        },
        batch_fn=decode_resize_batch,
        output_kind="image",
        meta={"block": DECODE_RESIZE},
    )


# -- classify ------------------------------------------------------------------------------


def _to_batch(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> Any:
    import torch

    first = np.asarray(images[0])
    if first.dtype == np.float32 and first.ndim == 3 and first.shape[0] == 3:
        # Already normalized CHW (a DALI or nvJPEG pipeline folded normalization in).
        return torch.from_numpy(np.ascontiguousarray(np.stack(images)))
    array: Any = np.stack([np.asarray(img, dtype=np.float32) for img in images]) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def classify_batch(
    images: Sequence[Any],
    *,
    model: Any,
    classes: Sequence[str],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> list[Any]:
    """Labels for RGB uint8 images (HWC) from a torch classifier, in one forward pass.
    :class:`Skipped` markers pass through."""
    import torch

    outputs: list[Any] = list(images)
    good = [i for i, img in enumerate(images) if not isinstance(img, Skipped)]
    if not good:
        return outputs
    # no_grad rather than inference_mode: a plugin that captures the model's inputs (to
    # export or calibrate it) must get ordinary tensors, and inference tensors cannot be
    # traced by torch.export.
    batch = _to_batch([images[i] for i in good], mean, std)
    with torch.no_grad():
        logits = model(batch)
    for i, index in zip(good, logits.argmax(dim=1).tolist(), strict=True):
        outputs[i] = classes[index]
    return outputs


def classify(
    image: Any,
    *,
    model: Any,
    classes: Sequence[str],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Any:
    return classify_batch([image], model=model, classes=classes, mean=mean, std=std)[0]


def classify_stage(
    name: str = "classify",
    *,
    model: Any,
    classes: Sequence[str],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    input_size: Any = None,
) -> Stage:
    """A torch image classifier over RGB uint8 images: label out."""
    meta: dict[str, Any] = {"block": CLASSIFY}
    if input_size is not None:
        meta["input_size"] = list(as_size(input_size))
    return Stage(
        name,
        classify,
        kind="inference",
        slots={"model": model, "classes": tuple(classes), "mean": tuple(mean), "std": tuple(std)},
        batch_fn=classify_batch,
        output_kind="labels",
        meta=meta,
    )


# -- video ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """An opened, checked video: frames are read lazily (a clip of 640×360 frames would
    not fit in memory decoded), each iteration opening a fresh capture."""

    path: str
    fps: float
    frame_count: int
    width: int
    height: int
    capture: Any = None  # a factory: capture(path) -> object with read() and release()

    def frames(self) -> Iterator[np.ndarray]:
        """BGR frames, in order, as the capture returns them."""
        return read_frames(self.path, self.capture)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()


def open_capture(path: str, capture: Any = None) -> Any:
    if capture is None:
        import cv2

        return cv2.VideoCapture(str(path))
    return capture(str(path))


def read_frames(path: str, capture: Any = None) -> Iterator[np.ndarray]:
    """The frames of the video at ``path``, in order, read lazily through a fresh capture
    (``capture``'s, else OpenCV's) that is released when they end or the reader stops."""
    cap = open_capture(path, capture)
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame
    finally:
        cap.release()


def frame_source(item: Any, *, capture: Any = None, on_error: str = "skip") -> Clip | Skipped:
    """Open a video file and check it can be read: a :class:`Clip`. A missing or empty
    file, a zero-length video, or a codec OpenCV cannot read gives a :class:`Skipped`
    marker (or raises :class:`BadInput` with ``on_error="raise"``)."""
    import cv2

    source = describe_source(item)
    try:
        if not isinstance(item, str | os.PathLike):
            raise BadInput(source, "expected a video file path")
        path = os.fspath(item)
        if not os.path.isfile(path):
            raise BadInput(source, "file not found")
        if os.path.getsize(path) == 0:
            raise BadInput(source, "empty file (0 bytes)")
        cap = open_capture(path, capture)
        try:
            if not cap.isOpened():
                raise BadInput(source, "cannot open: container or codec not readable by OpenCV")
            ok, frame = cap.read()
            if not ok or frame is None:
                raise BadInput(source, "zero-length video or codec OpenCV cannot decode")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()
        return Clip(path, fps, max(count, 1), frame.shape[1], frame.shape[0], capture)
    except BadInput as exc:
        if on_error == "raise":
            raise
        return Skipped(exc.reason, source)


def frame_source_stage(
    name: str = "frames", *, capture: Any = None, on_error: str = "skip"
) -> Stage:
    """The frame-source building block: a video path in, a lazily read :class:`Clip` out."""
    return Stage(
        name,
        frame_source,
        kind="decode",
        slots={"capture": capture, "on_error": on_error},
        meta={"block": FRAME_SOURCE},
    )


def preprocess_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A BGR camera frame to the model's RGB input size."""
    import cv2

    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def classify_frames(
    clip: Any,
    *,
    model: Any,
    classes: Sequence[str],
    size: Any = 224,
    gate: Any = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> list[Any] | Skipped:
    """One label per frame of ``clip``. With a ``gate`` (frame_skip.py), the model runs only
    on the frames the gate passes and skipped frames reuse the last result. Frames the
    container announced but that could not be read are :class:`Skipped` markers, so the
    result is never silently shorter than the video."""
    if isinstance(clip, Skipped):
        return clip
    target = as_size(size)
    state = gate.start() if gate is not None else None
    labels: list[Any] = []
    last: Any = None
    for frame in clip:
        run = True if state is None else state.should_run(frame)
        if run or last is None:
            last = classify_batch(
                [preprocess_frame(frame, target)], model=model, classes=classes, mean=mean, std=std
            )[0]
            if state is not None:
                state.note_result(last)
        labels.append(last)
    expected = getattr(clip, "frame_count", 0)
    labels.extend(
        Skipped(f"frame {i} unreadable", getattr(clip, "path", ""))
        for i in range(len(labels), expected)
    )
    return labels


def classify_frames_stage(
    name: str = "classify",
    *,
    model: Any,
    classes: Sequence[str],
    size: Any = 224,
    gate: Any = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Stage:
    """Classify every frame of a clip (frame by frame, as a live camera loop does)."""
    return Stage(
        name,
        classify_frames,
        kind="inference",
        slots={
            "model": model,
            "classes": tuple(classes),
            "size": as_size(size),
            "gate": gate,
            "mean": tuple(mean),
            "std": tuple(std),
        },
        output_kind="frame_labels",
        meta={"block": CLASSIFY_FRAMES},
    )
