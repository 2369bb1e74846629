"""``nlp.dynamic_padding``: pad each batch to its longest sequence instead of to
``max_length``. No parameters to tune. Lossy in principle: padded positions are masked,
but the kernels round differently at another sequence length."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change
from pipetune.plugins.nlp.blocks import BLOCK_TOKENIZE
from pipetune.plugins.nlp.changes.common import noted, slot_of
from pipetune.plugins.nlp.padding import PAD_DYNAMIC

ID = "nlp.dynamic_padding"


@dataclass(frozen=True)
class DynamicPaddingParams(ChangeParams):
    slot_stage: str | None = None
    padding: str | None = None


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(str(change.params.get("slot_stage", change.stage)))
    slot_of(stage, "padding", change)
    # Our block pads per forward batch; a user stage passing `padding` to a transformers
    # tokenizer gets its name for the same thing.
    value = PAD_DYNAMIC if stage.meta.get("block") == BLOCK_TOKENIZE else "longest"
    value = str(change.params.get("padding", value))
    return pipeline.replace(stage.name, noted(stage.with_slots(padding=value), change))


CHANGE = ChangeType(ID, DynamicPaddingParams, materialize, lossy=True)
