"""Tune: search each proposal's parameters on the tuning split, build its artifacts, and
refuse (:class:`~pipetune.core.kernel.errors.Rejected`) what must not be applied."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected, short_repr
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.nlp import proposals as ids
from pipetune.plugins.nlp import recognize, transforms, truncation
from pipetune.plugins.nlp.blocks import BLOCK_CLASSIFY, BLOCK_EMBED, BLOCK_SECTIONS, BLOCK_TOKENIZE
from pipetune.plugins.nlp.facts import interpolate_ms
from pipetune.plugins.nlp.padding import Encoded
from pipetune.plugins.nlp.tokenizers_swap import (
    ConversionError,
    as_slot_replacement,
    build_rust_tokenizer,
    first_mismatch,
    ids_of,
)


def tune(proposal: Proposal, pipeline: Pipeline, workload: Workload, context: TuneContext) -> Tuned:
    if proposal.id == ids.RUST_TOKENIZER:
        return tune_rust_tokenizer(proposal, pipeline, context)
    if proposal.id == ids.TRUNCATION:
        return tune_truncation(proposal, pipeline, workload, context)
    if proposal.id == ids.LENGTH_BUCKETING:
        return tune_bucketing(proposal, pipeline, workload, context)
    if proposal.id == ids.DISTILLATION:
        raise Rejected("distillation is advice (weeks of work), not an automatic change")
    return Tuned(params=dict(proposal.params))


# -- the Rust tokenizer swap ------------------------------------------------------------------


def tune_rust_tokenizer(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    slot = str(proposal.params.get("slot", "tokenizer"))
    original = stage.slots[slot]
    try:
        rust = build_rust_tokenizer(original)
    except ConversionError as exc:
        raise Rejected(f"no Rust tokenizer can be built: {exc}") from None
    block = stage.meta.get("block") == BLOCK_TOKENIZE
    replacement = as_slot_replacement(rust, original, prefer_raw=block)

    # Every distinct text the stage sees on the tuning split, with where it first appears.
    inputs = context.stage_inputs(pipeline, stage.name)
    texts: list[str] = []
    where: list[tuple[int, int]] = []
    seen: set[str] = set()
    for item_index, value in enumerate(inputs):
        for position, text in enumerate(recognize.iter_texts(value)):
            if text not in seen:
                seen.add(text)
                texts.append(text)
                where.append((item_index, position))
    context.log(f"rust tokenizer: verifying ids on {len(texts)} distinct texts")
    mismatch = first_mismatch(original, replacement, texts)
    if mismatch is not None:
        item, part = where[mismatch.index]
        raise Rejected(
            f"the Rust tokenizer's ids differ from {type(original).__name__}'s on tuning input "
            f"#{item} (text {part}: {short_repr(mismatch.text, 70)}): ids differ at token "
            f"{mismatch.position}: expected {list(mismatch.expected[mismatch.position :][:5])}, "
            f"got {list(mismatch.got[mismatch.position :][:5])}"
        )
    sample = texts[:512]
    slow_s = _best_of(lambda: ids_of(original, sample))
    fast_s = _best_of(lambda: ids_of(replacement, sample))
    speedup = slow_s / fast_s if fast_s > 0 else None

    key = context.artifacts.key(rust.to_str(), libraries=("tokenizers",))
    path = context.artifacts.path(key, "tokenizer.json")
    if not path.exists():
        rust.save(str(path))
    return Tuned(
        params={"slot": slot, "block": block},
        artifacts={"tokenizer": context.artifacts.relative(path)},
        notes={
            "verified_texts": len(texts),
            "exact_token_ids": 1.0,
            "tokenizer_speedup_measured": round(speedup, 2) if speedup else None,
            "replacement": type(replacement).__name__,
        },
        est_stage_speedup=speedup if block and speedup else None,
    )


# -- truncation -------------------------------------------------------------------------------


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
        change = Change(ids.TRUNCATION, "nlp", proposal.stage, params)
        candidate = transforms.truncation(change, pipeline, context.artifacts.root)
        return evaluate_outputs(candidate, subset, cache.setdefault(length, {}))

    def fidelity(candidate: Sequence[Any], base: Sequence[Any], labels: Sequence[Any] | None):
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


# -- length bucketing -----------------------------------------------------------------------


def tune_bucketing(
    proposal: Proposal, pipeline: Pipeline, workload: Workload, context: TuneContext
) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    sample = list(workload.items[: min(len(workload.items), 12)])
    if not sample:
        raise Rejected("no tuning inputs to time batch sizes on")
    candidates = [int(c) for c in proposal.params.get("candidates", (4, 8, 16, 32))]
    timings: dict[int, float] = {}
    for size in [1, *candidates]:
        candidate = pipeline.replace(stage.name, stage.with_slots(batch_size=size, bucket=True))
        timings[size] = context.time_per_item(candidate, sample, repeats=2)
        context.log(f"length bucketing: batch {size}: {timings[size] * 1000:.1f} ms per input")
    best = min(candidates, key=timings.__getitem__)
    gain = timings[1] / timings[best] if timings[best] > 0 else 1.0
    notes = {"ms_per_input": {str(k): round(v * 1000, 2) for k, v in timings.items()}}
    if gain < 1.05:
        raise Rejected(
            f"batching sections does not pay here: best batch {best} is {gain:.2f}x "
            f"one-at-a-time ({notes['ms_per_input']})"
        )
    return Tuned(params={"batch_size": best}, notes=notes, est_stage_speedup=None)


def _best_of(fn: Any, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
