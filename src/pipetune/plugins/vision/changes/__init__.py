"""The vision plugin's change types, one module each (its id, params dataclass, tune and
materialize); :mod:`.common` holds what they share. :func:`change_types` is what
``register_changes`` returns."""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType


def change_types() -> list[ChangeType]:
    from pipetune.plugins.vision.changes import (
        dali_decode,
        frame_stride,
        gpu_decode,
        motion_gate,
        parallel_decode,
        reduced_decode,
    )

    return [
        reduced_decode.CHANGE,
        dali_decode.CHANGE,
        gpu_decode.CHANGE,
        parallel_decode.CHANGE,
        motion_gate.CHANGE,
        frame_stride.CHANGE,
    ]
