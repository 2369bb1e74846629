"""Calibration inputs for lossy transformations of a text model owned by other plugins
(static int8 quantization in the hardware plugin): real workload sequences, in the form
the stage's model receives them (``input_ids`` / ``attention_mask`` tensors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.errors import PipelineError
from pipetune.core.model import Pipeline, Workload
from pipetune.plugins.nlp import recognize
from pipetune.plugins.nlp.blocks import BLOCK_EMBED
from pipetune.plugins.nlp.padding import Encoded, collate

#: Documents sampled from the workload, and sequences returned at most.
SAMPLE_ITEMS = 32
MAX_SEQUENCES = 64


def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> list[Any] | None:
    try:
        target = pipeline.stage(stage)
    except PipelineError:
        return None
    found = recognize.recognize_stage(target)
    if found.model is None or not workload.items:
        return None
    import torch

    step = max(1, len(workload.items) // SAMPLE_ITEMS)
    items = list(workload.items[::step][:SAMPLE_ITEMS])
    if pipeline.index(stage) > 0:
        prefix = pipeline.prefix(stage)
        inputs = [prefix.run(item) for item in items]
    else:
        inputs = items

    if target.meta.get("block") == BLOCK_EMBED:
        sequences = list(dict.fromkeys(s for v in inputs for s in v if isinstance(s, Encoded)))
        chosen = _spread(sorted(sequences, key=lambda s: s.length), MAX_SEQUENCES)
        out = []
        for seq in chosen:
            ids, mask = collate([seq])
            out.append(
                {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
            )
        return out

    tokenizer = target.slots.get(found.tokenizer_slot) if found.tokenizer_slot else None
    if tokenizer is not None and callable(tokenizer):
        max_length = target.slots.get("max_length", 512)
        texts = [t for v in inputs for t in recognize.iter_texts(v)]
        texts = _spread(sorted(set(texts), key=len), MAX_SEQUENCES)
        return [
            dict(tokenizer(t, return_tensors="pt", truncation=True, max_length=max_length))
            for t in texts
        ]
    return list(inputs[:MAX_SEQUENCES])


def _spread(values: Sequence[Any], count: int) -> list[Any]:
    """``count`` values evenly spaced through ``values`` (all of them when fewer)."""
    if len(values) <= count:
        return list(values)
    step = len(values) / count
    return [values[int(i * step)] for i in range(count)]
