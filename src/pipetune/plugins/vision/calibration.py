"""Calibration inputs for the hardware plugin's int8 quantization of a vision model."""

from __future__ import annotations

from typing import Any

from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.plugins.vision.blocks import (
    CLASSIFY,
    CLASSIFY_FRAMES,
    Clip,
    _to_batch,
    preprocess_frame,
)
from pipetune.plugins.vision.inputs import Skipped

MAX_INPUTS = 64


def calibration_batches(pipeline: Pipeline, stage: str, workload: Workload) -> list[Any] | None:
    target = pipeline.stage(stage)
    block = target.meta.get("block")
    if block not in (CLASSIFY, CLASSIFY_FRAMES):
        return None
    mean, std = target.slots["mean"], target.slots["std"]
    items = list(workload.items[:MAX_INPUTS])
    inputs = items if pipeline.index(stage) == 0 else [pipeline.prefix(stage).run(i) for i in items]
    batches: list[Any] = []
    for value in inputs:
        if isinstance(value, Skipped):
            continue
        if block == CLASSIFY:
            batches.append(_to_batch([value], mean, std))
        elif isinstance(value, Clip):
            for n, frame in enumerate(value.frames()):
                if n % 15 == 0:  # one frame a second of a 15 fps clip
                    batches.append(
                        _to_batch([preprocess_frame(frame, target.slots["size"])], mean, std)
                    )
                if len(batches) >= MAX_INPUTS:
                    return batches
        if len(batches) >= MAX_INPUTS:
            break
    return batches or None
