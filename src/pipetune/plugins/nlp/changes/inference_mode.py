"""``nlp.inference_mode``: run the encoder under ``torch.inference_mode()`` instead of
``no_grad()``. Exact."""

from __future__ import annotations

from pathlib import Path

from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import NoParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change
from pipetune.plugins.nlp.changes.common import noted, slot_of

ID = "nlp.inference_mode"


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    slot_of(stage, "grad_mode", change)
    return pipeline.replace(stage.name, noted(stage.with_slots(grad_mode="inference_mode"), change))


CHANGE = ChangeType(ID, NoParams, materialize)
