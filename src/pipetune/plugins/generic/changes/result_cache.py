"""``generic.result_cache``: a bounded LRU in front of a stage, keyed by a hash of the
input's content, or of each part's for a stage that maps over the parts of its input
(``per="element"``: a document's sections, a file's chunks, a clip's frames). Exact: a hit
returns what the stage returned for the same input or part."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.generic import cache, callcache

ID = "generic.result_cache"


@dataclass(frozen=True)
class ResultCacheParams(ChangeParams):
    capacity: int = 4096
    per: str = "input"  # "element": one entry per part of the input; "call": per model call
    slot: str | None = None  # per="call": the component whose calls are cached


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    params: dict[str, Any] = {"capacity": int(proposal.params.get("capacity", 4096))}
    for name in ("per", "slot"):
        if proposal.params.get(name):
            params[name] = str(proposal.params[name])
    return Tuned(params=params)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    capacity = int(change.params.get("capacity", 4096))
    stage = pipeline.stage(change.stage)
    if cache.META_KEY in stage.meta or callcache.META_KEY in stage.meta:
        raise PipelineError(f"stage {change.stage!r} is already cached")
    per = str(change.params.get("per", "input"))
    if per not in ("input", "element", "call"):
        raise PipelineError(
            f"change {change.proposal}: per must be 'input', 'element' or 'call', not {per!r}"
        )
    if per == "call":
        slot = str(change.params.get("slot") or "model")
        if slot not in stage.slots:
            raise PipelineError(f"change {change.proposal}: stage {stage.name!r} has no {slot!r}")
        return pipeline.replace(change.stage, callcache.call_cached_stage(stage, slot, capacity))
    per_element = True if per == "element" else None  # None: as the stage declares
    return pipeline.replace(
        change.stage, cache.cached_stage(stage, capacity, per_element=per_element)
    )


CHANGE = ChangeType(ID, ResultCacheParams, materialize, tune)
