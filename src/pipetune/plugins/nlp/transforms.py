"""Materialize: build the transformed pipeline from a change's parameters and artifacts.

Deterministic, no search: a recipe re-applies changes through here. Stages are replaced by
copies with some slots changed; the user's tokenizer and model objects are never modified
(the Rust tokenizer is loaded from the artifact, the SDPA model is a deep copy).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.registry import require
from pipetune.core.kernel.results import Change
from pipetune.plugins.nlp import proposals as ids
from pipetune.plugins.nlp.attention import sdpa_copy
from pipetune.plugins.nlp.blocks import BLOCK_TOKENIZE
from pipetune.plugins.nlp.padding import PAD_DYNAMIC
from pipetune.plugins.nlp.tokenizers_swap import as_slot_replacement


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    handler = _HANDLERS.get(change.proposal)
    if handler is None:
        raise PipelineError(f"the nlp plugin does not know change {change.proposal!r}")
    return handler(change, pipeline, Path(artifacts_dir))


def _noted(stage: Stage, change: Change) -> Stage:
    applied = (*stage.meta.get("applied", ()), change.proposal)
    return stage.noted(applied=applied)


def _slot(stage: Stage, name: str, change: Change) -> Any:
    if name not in stage.slots:
        raise PipelineError(
            f"change {change.proposal}: stage {stage.name!r} has no slot {name!r} "
            f"(slots: {', '.join(stage.slots) or 'none'}); was the recipe made for another "
            "pipeline?"
        )
    return stage.slots[name]


def rust_tokenizer(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    tokenizers = require("tokenizers", "nlp", "the Rust tokenizer swap")
    stage = pipeline.stage(change.stage)
    slot = str(change.params.get("slot", "tokenizer"))
    original = _slot(stage, slot, change)
    relative = change.artifacts.get("tokenizer")
    if not relative:
        raise PipelineError(f"change {change.proposal} has no tokenizer artifact")
    path = artifacts_dir / relative
    if not path.is_file():
        raise PipelineError(
            f"change {change.proposal}: the tokenizer artifact {path} is missing; re-run "
            "optimize to rebuild it"
        )
    rust = tokenizers.Tokenizer.from_file(str(path))
    block = stage.meta.get("block") == BLOCK_TOKENIZE
    replacement = as_slot_replacement(rust, original, prefer_raw=block)
    return pipeline.replace(stage.name, _noted(stage.with_slots(**{slot: replacement}), change))


def truncation(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(str(change.params.get("slot_stage", change.stage)))
    _slot(stage, "max_length", change)
    length = change.params.get("max_length")
    if not isinstance(length, int) or length < 2:
        raise PipelineError(f"change {change.proposal}: max_length {length!r} is not tuned")
    return pipeline.replace(stage.name, _noted(stage.with_slots(max_length=length), change))


def dynamic_padding(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(str(change.params.get("slot_stage", change.stage)))
    _slot(stage, "padding", change)
    # Our block pads per forward batch; a user stage passing `padding` to a transformers
    # tokenizer gets its name for the same thing.
    value = PAD_DYNAMIC if stage.meta.get("block") == BLOCK_TOKENIZE else "longest"
    value = str(change.params.get("padding", value))
    return pipeline.replace(stage.name, _noted(stage.with_slots(padding=value), change))


def length_bucketing(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    _slot(stage, "batch_size", change)
    size = change.params.get("batch_size")
    if not isinstance(size, int) or size < 1:
        raise PipelineError(f"change {change.proposal}: batch_size {size!r} is not tuned")
    new = stage.with_slots(batch_size=size, bucket=True)
    return pipeline.replace(stage.name, _noted(new, change))


def sdpa(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    slot = str(change.params.get("slot", "model"))
    model = _slot(stage, slot, change)
    new = stage.with_slots(**{slot: sdpa_copy(model)})
    return pipeline.replace(stage.name, _noted(new, change))


def inference_mode(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    _slot(stage, "grad_mode", change)
    return pipeline.replace(
        stage.name, _noted(stage.with_slots(grad_mode="inference_mode"), change)
    )


_HANDLERS: dict[str, Callable[[Change, Pipeline, Path], Pipeline]] = {
    ids.RUST_TOKENIZER: rust_tokenizer,
    ids.TRUNCATION: truncation,
    ids.DYNAMIC_PADDING: dynamic_padding,
    ids.LENGTH_BUCKETING: length_bucketing,
    ids.SDPA: sdpa,
    ids.INFERENCE_MODE: inference_mode,
}
