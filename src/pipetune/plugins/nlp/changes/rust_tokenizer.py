"""``nlp.rust_tokenizer``: replace a pure-Python tokenizer by the Rust ``tokenizers`` one
built from it, verified id for id on every distinct tuning text (any difference rejects
it). The built tokenizer is saved as an artifact and reloaded by materialize."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError, Rejected, short_repr
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType, require
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.nlp import recognize
from pipetune.plugins.nlp.blocks import BLOCK_TOKENIZE
from pipetune.plugins.nlp.changes.common import noted, slot_of
from pipetune.plugins.nlp.tokenizers_swap import (
    ConversionError,
    as_slot_replacement,
    build_rust_tokenizer,
    first_mismatch,
    ids_of,
)

ID = "nlp.rust_tokenizer"


@dataclass(frozen=True)
class RustTokenizerParams(ChangeParams):
    slot: str = "tokenizer"
    block: bool = False


@dataclass(frozen=True)
class Verified:
    """A Rust tokenizer verified id for id against a stage's tokenizer: what goes in the
    slot, the artifact it was saved to, and what was checked."""

    replacement: Any
    artifact: str
    notes: dict[str, Any]
    speedup: float | None


def verified_swap(pipeline: Pipeline, stage: Stage, slot: str, context: TuneContext) -> Verified:
    """Build the Rust tokenizer for ``stage``'s ``slot``, verify it on every distinct text
    the stage sees on the tuning split and save it; :class:`Rejected` names the first text
    whose ids differ."""
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
    notes = {
        "verified_texts": len(texts),
        "exact_token_ids": 1.0,
        "tokenizer_speedup_measured": round(speedup, 2) if speedup else None,
        "replacement": type(replacement).__name__,
    }
    return Verified(replacement, context.artifacts.relative(path), notes, speedup)


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    slot = str(proposal.params.get("slot", "tokenizer"))
    swap = verified_swap(pipeline, stage, slot, context)
    block = stage.meta.get("block") == BLOCK_TOKENIZE
    return Tuned(
        params={"slot": slot, "block": block},
        artifacts={"tokenizer": swap.artifact},
        notes=swap.notes,
        est_stage_speedup=swap.speedup if block and swap.speedup else None,
    )


def load_swap(stage: Stage, slot: str, change: Change, artifacts_dir: Path) -> Any:
    """The Rust tokenizer a change saved, in the form ``stage``'s ``slot`` takes."""
    tokenizers = require("tokenizers", "nlp", "the Rust tokenizer swap")
    original = slot_of(stage, slot, change)
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
    return as_slot_replacement(rust, original, prefer_raw=block)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    slot = str(change.params.get("slot", "tokenizer"))
    replacement = load_swap(stage, slot, change, artifacts_dir)
    return pipeline.replace(stage.name, noted(stage.with_slots(**{slot: replacement}), change))


def _best_of(fn: Any, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


CHANGE = ChangeType(ID, RustTokenizerParams, materialize, tune)
