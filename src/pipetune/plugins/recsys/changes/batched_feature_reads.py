"""``recsys.batched_feature_reads``: read all of a request's feature keys in one call of
the store's batch method instead of one ``get`` per key. Exact: tuning checks the batch
read returns what the per-key reads return."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import blocks
from pipetune.plugins.recsys.changes.common import sample
from pipetune.plugins.recsys.features import batch_method

ID = "recsys.batched_feature_reads"


@dataclass(frozen=True)
class BatchedFeatureReadsParams(ChangeParams):
    batched: bool = True
    method: str | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    if stage.meta.get("block") != blocks.FEATURE_LOOKUP:
        raise Rejected(f"stage {stage.name!r} is not a feature_lookup block")
    store = stage.slots["store"]
    method = batch_method(store)
    if method is None:
        raise Rejected(
            f"the store in stage {stage.name!r} ({type(store).__name__}) has no batch read method"
        )
    inputs = sample(context.stage_inputs(pipeline, stage.name), 16)
    batched = stage.with_slots(batched=True)
    for position, item in enumerate(inputs):
        one, many = stage(item), batched(item)
        if not _same_features(one, many):
            raise Rejected(
                f"stage {stage.name!r}: {type(store).__name__}.{method} returns "
                f"different values than get() on tuning input #{position}"
            )
    return Tuned(
        params={"batched": True, "method": method}, est_stage_speedup=proposal.est_stage_speedup
    )


def _same_features(a: Any, b: Any) -> bool:
    from pipetune.plugins.generic.fidelity import same

    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_features(a[key], b[key]) for key in a)
    return same(a, b)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    stage = pipeline.stage(change.stage)
    return pipeline.replace(
        stage.name, stage.with_slots(batched=True).noted(change=change.proposal)
    )


CHANGE = ChangeType(ID, BatchedFeatureReadsParams, materialize, tune)
