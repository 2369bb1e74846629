"""Decode stages written as users write them, for the decode benchmark. pipetune reads
their source (this file must stay importable with its source on disk) to recognize them,
exactly as ``pipetune scan`` would flag them."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image


def pil_resize(path: str, *, size: Any) -> np.ndarray:
    """The plain Pillow stage: decode at full size, then resize to the model input."""
    return np.asarray(Image.open(path).convert("RGB").resize(size))


def pil_resize_by_hand(path: str, *, size: Any) -> np.ndarray:
    """:func:`pil_resize` with the change pipetune shows for it made by hand."""
    image = Image.open(path)
    image.draft("RGB", size)
    return np.asarray(image.convert("RGB").resize(size))


def _out_of_reach() -> Any:
    from PIL import Image as Pil  # a closure variable: pipetune cannot rebind it

    def pil_resize_closure(path: str, *, size: Any) -> np.ndarray:
        return np.asarray(Pil.open(path).convert("RGB").resize(size))

    return pil_resize_closure


pil_resize_closure = _out_of_reach()


def cv2_resize(path: str, *, size: Any) -> np.ndarray:
    """Library defaults: ``cv2.imread`` + ``cv2.resize`` (INTER_AREA), RGB out."""
    image = cv2.imread(path)
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


def classify_frame_file(path: str, *, model: Any, classes: Any, size: Any) -> Any:
    """Frames as items: one extracted frame file in, its label out."""
    from pipetune.plugins.vision.blocks import classify_batch, preprocess_frame

    frame = preprocess_frame(cv2.imread(path), size)
    return classify_batch([frame], model=model, classes=classes)[0]


def classify_frame_files(paths: Any, *, model: Any, classes: Any, size: Any) -> list[Any]:
    """The same for a batch of frame files: one model call."""
    from pipetune.plugins.vision.blocks import classify_batch, preprocess_frame

    frames = [preprocess_frame(cv2.imread(p), size) for p in paths]
    return classify_batch(frames, model=model, classes=classes)


def classify_clip_batched(clip: Any, *, model: Any, classes: Any, size: Any) -> list[Any]:
    """Every frame of a clip, model calls batched by 16: the competent every-frame loop."""
    from pipetune.plugins.vision.blocks import classify_batch, preprocess_frame

    labels: list[Any] = []
    batch: list[Any] = []
    for frame in clip:
        batch.append(preprocess_frame(frame, size))
        if len(batch) == 16:
            labels += classify_batch(batch, model=model, classes=classes)
            batch = []
    if batch:
        labels += classify_batch(batch, model=model, classes=classes)
    return labels
