"""Calibration inputs for lossy transformations of a text model owned by other plugins
(static int8 quantization in the hardware plugin).

They are *stage inputs*, drawn from the workload: the consumer runs them through the stage,
so the model sees exactly what it sees in production (real token sequences, padded the way
the stage pads). For our embed block, distinct tokenized sections are regrouped so that the
calibration set spans the whole length range (short letterheads to 512-token paragraphs)
rather than following the order of the first documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.plugins.nlp import recognize
from pipetune.plugins.nlp.blocks import BLOCK_EMBED
from pipetune.plugins.nlp.padding import Encoded

#: Workload items sampled, calibration inputs returned, and sequences per embed input.
SAMPLE_ITEMS = 32
MAX_INPUTS = 16
SEQUENCES_PER_INPUT = 4


def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> list[Any] | None:
    try:
        target = pipeline.stage(stage)
    except PipelineError:
        return None
    found = recognize.recognize_stage(target)
    if found.model is None or not workload.items:
        return None
    step = max(1, len(workload.items) // SAMPLE_ITEMS)
    items = list(workload.items[::step][:SAMPLE_ITEMS])
    inputs = pipeline.prefix(stage).run_batch(items) if pipeline.index(stage) > 0 else items

    if target.meta.get("block") == BLOCK_EMBED:
        sequences = list(dict.fromkeys(s for v in inputs for s in v if isinstance(s, Encoded)))
        chosen = _spread(sorted(sequences, key=lambda s: s.length), MAX_INPUTS * 4)
        # Interleave so that each input mixes short and long sequences.
        groups = [tuple(chosen[i::MAX_INPUTS]) for i in range(MAX_INPUTS)]
        return [g[:SEQUENCES_PER_INPUT] for g in groups if g]
    return list(inputs[:MAX_INPUTS])


def _spread(values: Sequence[Any], count: int) -> list[Any]:
    """``count`` values evenly spaced through ``values`` (all of them when fewer)."""
    if len(values) <= count:
        return list(values)
    step = len(values) / count
    return [values[int(i * step)] for i in range(count)]
