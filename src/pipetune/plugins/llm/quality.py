"""What the llm plugin supplies for lossy changes other plugins make (the plugin that
changes a model owns the change; the domain plugin owns its fidelity): the
perplexity change on held-out text when a generate stage's model is replaced (the
hardware plugin's int8 / fp16 / bf16 weights), and calibration text for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.kernel.results import Change, Fidelity
from pipetune.plugins.llm.blocks import encode_request, is_generate_block
from pipetune.plugins.llm.fidelity import HELD_OUT_TEXT, encode_texts, perplexity_fidelity
from pipetune.plugins.llm.recognize import model_slot

#: Workload prompts added to the held-out text, and the longest sequence scored.
MAX_WORKLOAD_PROMPTS = 16
MAX_TOKENS = 256


def _model_slot(stage: Stage) -> str | None:
    return "model" if is_generate_block(stage) else model_slot(stage)


def workload_prompts(
    pipeline: Pipeline, stage: Stage, workload: Workload, limit: int
) -> list[list[int]]:
    """Token ids of the prompts ``stage`` receives for the first ``limit`` inputs."""
    items = list(workload.items)[:limit]
    if not items:
        return []
    try:
        inputs = (
            items
            if pipeline.index(stage.name) == 0
            else [pipeline.prefix(stage.name).run(i) for i in items]
        )
    except Exception:
        return []
    out = []
    for item in inputs:
        try:
            ids = list(encode_request(item, stage.slots.get("tokenizer")).prompt_ids)
        except Exception:
            continue
        if len(ids) >= 2:
            out.append(ids[:MAX_TOKENS])
    return out


def held_out_sequences(
    pipeline: Pipeline, stage: Stage, workload: Workload, part: str = "evaluation"
) -> list[list[int]]:
    """Half of the built-in held-out paragraphs (when the stage has a tokenizer: the
    ``evaluation`` half scores, the ``calibration`` half calibrates) plus the prompts of
    ``workload`` (the held-out split, or the calibration split)."""
    from pipetune.core.measure.fidelity import reference_part

    tokenizer = stage.slots.get("tokenizer")
    texts = reference_part(HELD_OUT_TEXT, part)
    sequences = encode_texts(tokenizer, texts, MAX_TOKENS) if tokenizer is not None else []
    return sequences + workload_prompts(pipeline, stage, workload, MAX_WORKLOAD_PROMPTS)


def assess_model_change(
    change: Change, baseline: Pipeline, candidate: Pipeline, workload: Workload
) -> Fidelity | None:
    try:
        before, after = baseline.stage(change.stage), candidate.stage(change.stage)
    except PipelineError:
        return None
    slot = _model_slot(before)
    if slot is None:
        return None
    old, new = before.slots.get(slot), after.slots.get(slot)
    if new is None or new is old:
        return None
    sequences = held_out_sequences(baseline, before, workload)
    if not sequences:
        return None
    return perplexity_fidelity(old, new, sequences)


def calibration_batches(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    """``[{"input_ids": LongTensor[1, T], "attention_mask": ...}, ...]``: the calibration
    half of the held-out paragraphs and ``workload``'s prompts (the loop's calibration
    split), as the stage's model receives them; the perplexity gate scores the other half."""
    try:
        target = pipeline.stage(stage)
    except PipelineError:
        return None
    if _model_slot(target) is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    sequences = held_out_sequences(pipeline, target, workload, part="calibration")
    return [
        {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long),
        }
        for ids in sequences
    ] or None
