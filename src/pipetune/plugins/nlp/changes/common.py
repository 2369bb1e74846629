"""What the nlp plugin's change types share: they replace a stage by a copy with some
slots changed, note the change on it, and name the slot a recipe expects when the stage
lacks it. The user's tokenizer and model objects are never modified."""

from __future__ import annotations

from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Stage
from pipetune.core.kernel.results import Change


def noted(stage: Stage, change: Change) -> Stage:
    applied = (*stage.meta.get("applied", ()), change.proposal)
    return stage.noted(applied=applied)


def slot_of(stage: Stage, name: str, change: Change) -> Any:
    if name not in stage.slots:
        raise PipelineError(
            f"change {change.proposal}: stage {stage.name!r} has no slot {name!r} "
            f"(slots: {', '.join(stage.slots) or 'none'}); was the recipe made for another "
            "pipeline?"
        )
    return stage.slots[name]
