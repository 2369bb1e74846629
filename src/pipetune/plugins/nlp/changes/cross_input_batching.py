"""``nlp.cross_input_batching``: a text stage written for one input at a time (tokenize one
document, call the encoder or classifier on a batch of one) gets a batch path: its own
function runs per input and its calls to the text model become one batched call per group
of inputs ordered by length, padded to the group's longest and masked (the mechanism is
the generic plugin's :mod:`~pipetune.plugins.generic.coalesce`).

Two cheap, lossless parts that matter only once the model is batched are tried together
with it, each kept only where it holds on the tuning split: the Rust tokenizer built from
the stage's own (verified id for id on every distinct tuning text, as ``nlp.rust_tokenizer``
does) and ``torch.inference_mode`` for the batched calls. Lossy in principle: batched and
padded kernels round differently."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.generic import crossbatch
from pipetune.plugins.nlp.changes.common import noted
from pipetune.plugins.nlp.changes.rust_tokenizer import load_swap, verified_swap

ID = "nlp.cross_input_batching"


@dataclass(frozen=True)
class CrossInputBatchingParams(ChangeParams):
    slots: tuple[str, ...] = ("model",)
    batch_size: int = 16
    window: int = 16
    max_delay_ms: float = 0.0
    inference_mode: bool = False
    tokenizer_slot: str | None = None  # set when the Rust tokenizer part was kept


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    stage_name = proposal.stage
    slots = [str(s) for s in proposal.params.get("slots", ("model",))]
    tokenizer_slot = proposal.params.get("tokenizer_slot")
    swapped: dict[str, str] = {}

    def rust_part(candidate: Pipeline, setting: crossbatch.Setting) -> Any:
        stage = candidate.stage(stage_name)
        swap = verified_swap(candidate, stage, str(tokenizer_slot), context)
        swapped.update(artifact=swap.artifact)
        new = stage.with_slots(**{str(tokenizer_slot): swap.replacement})
        return candidate.replace(stage_name, new), setting

    parts = [crossbatch.inference_mode_part()]
    if tokenizer_slot:
        parts.insert(0, crossbatch.Part("rust_tokenizer", rust_part))
    # The Rust tokenizer can pay even where batching does not: then the parts are tried
    # one input at a time, and the change is what holds of them.
    tuned = crossbatch.tune(
        pipeline, stage_name, slots, context, parts=parts, parts_alone=bool(tokenizer_slot)
    )
    kept = tuned.notes.get("parts", {}).get("rust_tokenizer", {}).get("kept")
    params = dict(tuned.params)
    artifacts = {}
    if kept and swapped.get("artifact"):
        params["tokenizer_slot"] = str(tokenizer_slot)
        artifacts["tokenizer"] = swapped["artifact"]
    return Tuned(params=params, artifacts=artifacts, notes=tuned.notes, in_flight=tuned.in_flight)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    tokenizer_slot = change.params.get("tokenizer_slot")
    if tokenizer_slot:
        replacement = load_swap(stage, str(tokenizer_slot), change, artifacts_dir)
        pipeline = pipeline.replace(stage.name, stage.with_slots(**{tokenizer_slot: replacement}))
    batched = crossbatch.materialize(pipeline, change.stage, dict(change.params))
    return batched.replace(change.stage, noted(batched.stage(change.stage), change))


CHANGE = ChangeType(ID, CrossInputBatchingParams, materialize, tune, lossy=True)
