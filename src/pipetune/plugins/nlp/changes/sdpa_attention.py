"""``nlp.sdpa_attention``: switch a transformers model to PyTorch's scaled-dot-product
attention (on a deep copy). No parameters to tune. Lossy in principle: the fused kernel
rounds differently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change
from pipetune.plugins.nlp.attention import sdpa_copy
from pipetune.plugins.nlp.changes.common import noted, slot_of

ID = "nlp.sdpa_attention"


@dataclass(frozen=True)
class SdpaAttentionParams(ChangeParams):
    slot: str = "model"


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    slot = str(change.params.get("slot", "model"))
    model = slot_of(stage, slot, change)
    new = stage.with_slots(**{slot: sdpa_copy(model)})
    return pipeline.replace(stage.name, noted(new, change))


CHANGE = ChangeType(ID, SdpaAttentionParams, materialize, lossy=True)
