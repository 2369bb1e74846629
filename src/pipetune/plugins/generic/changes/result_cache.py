"""``generic.result_cache``: a bounded LRU in front of a stage, keyed by a hash of the
input's content (per element for element-wise stages). Exact: a hit returns what the stage
returned for the same input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.generic import cache

ID = "generic.result_cache"


@dataclass(frozen=True)
class ResultCacheParams(ChangeParams):
    capacity: int = 4096


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return Tuned(params={"capacity": int(proposal.params.get("capacity", 4096))})


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    capacity = int(change.params.get("capacity", 4096))
    stage = pipeline.stage(change.stage)
    if cache.META_KEY in stage.meta:
        raise PipelineError(f"stage {change.stage!r} is already cached")
    return pipeline.replace(change.stage, cache.cached_stage(stage, capacity))


CHANGE = ChangeType(ID, ResultCacheParams, materialize, tune)
