"""``generic.adaptive_computation``: route each input through the smaller model the user
declared, and on to the large one only when the small one is unsure (the confidence
threshold calibrated on the tuning split). Lossy: routed inputs get the small model's
answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.generic import adaptive, adaptive_tune

ID = adaptive.PROPOSAL


@dataclass(frozen=True)
class AdaptiveComputationParams(ChangeParams):
    threshold: float
    span: tuple[str, ...] = ()


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return adaptive_tune.tune(proposal, pipeline, context.workload, context.requirements, context)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    return adaptive.materialize(change, pipeline)


CHANGE = ChangeType(ID, AdaptiveComputationParams, materialize, tune, lossy=True)
