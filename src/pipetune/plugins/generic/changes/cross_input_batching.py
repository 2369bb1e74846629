"""``generic.cross_input_batching``: give a one-at-a-time stage a batch path: its own
function runs per input, and its calls to the components that accept a batch (a torch
model) become one batched call per group of inputs ordered by length (group size, window
and, online, the batching delay tuned on the requirement's metric; ``inference_mode`` for
the batched calls kept where it holds). Lossy in principle: batched kernels round
differently, and padded calls are masked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.generic import crossbatch

ID = "generic.cross_input_batching"


@dataclass(frozen=True)
class CrossInputBatchingParams(ChangeParams):
    slots: tuple[str, ...] = ()
    batch_size: int = 16
    window: int = 16
    max_delay_ms: float = 0.0
    inference_mode: bool = False


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    slots = [str(s) for s in proposal.params.get("slots", ())]
    parts = [crossbatch.inference_mode_part()]
    return crossbatch.tune(pipeline, proposal.stage, slots, context, parts=parts)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    return crossbatch.materialize(pipeline, change.stage, dict(change.params))


CHANGE = ChangeType(ID, CrossInputBatchingParams, materialize, tune, lossy=True)
