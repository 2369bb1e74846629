"""``recsys.user_embedding_cache``: a TTL cache of the user tower's embedding, keyed by the
declared user key, for returning users. Lossy when the embedding depends on more than the
key (a history that moved on): the tuning split measures what staleness costs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import blocks
from pipetune.plugins.recsys.cache import TTLCache
from pipetune.plugins.recsys.changes.common import DEFAULT_TTL_S, MAX_CACHE_ENTRIES

ID = "recsys.user_embedding_cache"


@dataclass(frozen=True)
class UserEmbeddingCacheParams(ChangeParams):
    ttl_s: float = DEFAULT_TTL_S
    maxsize: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    if stage.meta.get("block") != blocks.EMBEDDING:
        raise Rejected(f"stage {stage.name!r} is not an embedding block with a declared key")
    inputs = context.stage_inputs(pipeline, stage.name)
    keys = [stage.slots["key"](item) for item in inputs]
    distinct = len(set(keys))
    repeat = 1 - distinct / len(keys) if keys else 0.0
    if repeat < 0.05:
        raise Rejected(
            f"only {repeat:.1%} of the tuning requests repeat a user: a cache would not pay"
        )
    ttl_s = float(proposal.params.get("ttl_s", DEFAULT_TTL_S))
    maxsize = int(
        proposal.params.get("maxsize") or min(MAX_CACHE_ENTRIES, max(10_000, 4 * distinct))
    )
    entry_bytes = _entry_bytes(stage, inputs[0]) if inputs else None
    tuned = Tuned(
        params={"ttl_s": ttl_s, "maxsize": maxsize},
        notes={
            "repeat_share": repeat,
            "distinct_users": distinct,
            "requests": len(keys),
            "entry_bytes": entry_bytes,
            "max_memory_bytes": None if entry_bytes is None else entry_bytes * maxsize,
        },
        est_stage_speedup=1 / max(1 - repeat, 1e-3),
    )
    change = Change.from_proposal(proposal, tuned)
    candidate = materialize(change, pipeline, context.artifacts.root)
    # A cached embedding is stale when the request carries more than the user (a history
    # that moved on): measure what that costs, and refuse if it exceeds the budget.
    fidelity = context.fidelity(context.outputs(candidate))
    if fidelity.value < context.fidelity_floor:
        raise Rejected(
            f"with the cache, {fidelity.metric} falls to {fidelity.value:.3f} (floor "
            f"{context.fidelity_floor:.3f}): the embedding depends on more than the user key"
        )
    return tuned.evolve(notes={**tuned.notes, "tune_fidelity": fidelity.to_dict()})


def _entry_bytes(stage: Stage, item: Any) -> int | None:
    try:
        vector = stage.slots["encode"](item, stage.slots["model"])
    except Exception:
        return None
    nbytes = getattr(vector, "nbytes", None)
    if nbytes is None and hasattr(vector, "element_size"):
        nbytes = vector.element_size() * vector.nelement()
    return int(nbytes) if nbytes is not None else None


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    stage = pipeline.stage(change.stage)
    cache = TTLCache(int(change.params["maxsize"]), float(change.params["ttl_s"]))
    return pipeline.replace(
        stage.name,
        stage.with_slots(cache=cache).noted(
            change=change.proposal, cache={"maxsize": cache.maxsize, "ttl_s": cache.ttl_s}
        ),
    )


CHANGE = ChangeType(ID, UserEmbeddingCacheParams, materialize, tune, lossy=True)
