"""``nlp.truncation``: lower the tokenizer's ``max_length`` to the shortest length on the
ladder that keeps fidelity on the tuning split (searched by :mod:`pipetune.plugins.nlp.truncation`).
Lossy: long inputs lose their tail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.nlp import truncation
from pipetune.plugins.nlp.blocks import BLOCK_CLASSIFY, BLOCK_EMBED, BLOCK_SECTIONS, BLOCK_TOKENIZE
from pipetune.plugins.nlp.changes.common import noted, slot_of
from pipetune.plugins.nlp.facts import interpolate_ms
from pipetune.plugins.nlp.padding import Encoded

ID = "nlp.truncation"


@dataclass(frozen=True)
class TruncationParams(ChangeParams):
    slot_stage: str | None = None
    max_length: int | None = None
    current: int | None = None
    ladder: tuple[int, ...] | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_truncation(proposal, pipeline, context.workload, context)


def tune_truncation(
    proposal: Proposal, pipeline: Pipeline, workload: Workload, context: TuneContext
) -> Tuned:
    slot_stage = str(proposal.params.get("slot_stage", proposal.stage))
    stage = pipeline.stage(slot_stage)
    current = int(stage.slots["max_length"])
    items = list(workload.items)
    baseline = context.baseline_outputs()
    kind = proposal.fidelity_kind or context.original.output_kind
    cache: dict[int, dict[int, Any]] = {}

    def outputs_at(length: int, subset: Sequence[Any]) -> list[Any]:
        params = {"slot_stage": slot_stage, "max_length": length}
        change = Change(ID, "nlp", proposal.stage, params)
        candidate = materialize(change, pipeline, context.artifacts.root)
        return evaluate_outputs(candidate, subset, cache.setdefault(length, {}))

    def fidelity(
        candidate: Sequence[Any], base: Sequence[Any], labels: Sequence[Any] | None
    ) -> Any:
        return context.fidelity(candidate, kind, baseline=base, labels=labels)

    result = truncation.search(
        current=current,
        items=items,
        baseline=baseline,
        outputs_at=outputs_at,
        fidelity=fidelity,
        floor=context.fidelity_floor,
        labels=workload.labels,
        ladder=proposal.params.get("ladder", truncation.LADDER),
        seed=workload.seed,
        log=context.log,
    )
    est = None
    facts = context.profile.facts.get("nlp", {}) if context.profile is not None else {}
    timings = facts.get("model_ms_by_length")
    lengths = facts.get("sequence_lengths")
    if timings and lengths:
        padded = stage.slots.get("padding") == "max_length"
        now = sum(interpolate_ms(timings, current if padded else min(n, current)) for n in lengths)
        cut = sum(
            interpolate_ms(timings, result.chosen if padded else min(n, result.chosen))
            for n in lengths
        )
        est = now / cut if cut else None
    return Tuned(
        params={"slot_stage": slot_stage, "max_length": result.chosen},
        notes=result.notes(),
        est_stage_speedup=est,
    )


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(str(change.params.get("slot_stage", change.stage)))
    slot_of(stage, "max_length", change)
    length = change.params.get("max_length")
    if not isinstance(length, int) or length < 2:
        raise PipelineError(f"change {change.proposal}: max_length {length!r} is not tuned")
    return pipeline.replace(stage.name, noted(stage.with_slots(max_length=length), change))


def evaluate_outputs(pipeline: Pipeline, items: Sequence[Any], memo: dict | None = None) -> list:
    """``[pipeline.run(x) for x in items]``, computed faster when the pipeline is our
    sections -> tokenize -> embed -> classify chain with a one-at-a-time embed stage: each
    distinct tokenized section is embedded once. The embedding of one section alone depends
    only on its ids, so the outputs are the ones ``run`` gives."""
    chain = _block_chain(pipeline)
    if chain is None:
        return [pipeline.run(item) for item in items]
    prefix, sections, tokenize, embed, classify, suffix = chain
    table: dict[Encoded, np.ndarray] = {} if memo is None else memo
    outputs = []
    for item in items:
        value = item
        for stage in prefix:
            value = stage(value)
        encoded = tokenize(sections(value))
        missing = [seq for seq in dict.fromkeys(encoded) if seq not in table]
        for seq in missing:
            table[seq] = embed((seq,))[0]
        value = classify(np.stack([table[seq] for seq in encoded]))
        for stage in suffix:
            value = stage(value)
        outputs.append(value)
    return outputs


def _block_chain(pipeline: Pipeline) -> tuple | None:
    blocks = [stage.meta.get("block") for stage in pipeline.stages]
    wanted = [BLOCK_SECTIONS, BLOCK_TOKENIZE, BLOCK_EMBED, BLOCK_CLASSIFY]
    for start in range(len(blocks) - 3):
        if blocks[start : start + 4] == wanted:
            stages = pipeline.stages
            embed = stages[start + 2]
            if embed.slots.get("batch_size") != 1:
                return None
            return (
                stages[:start],
                stages[start],
                stages[start + 1],
                embed,
                stages[start + 3],
                stages[start + 4 :],
            )
    return None


CHANGE = ChangeType(ID, TruncationParams, materialize, tune, lossy=True)
