"""``recsys.user_embedding_cache`` and ``recsys.batched_feature_reads``: the two serving
changes around the model, for returning users and per-key feature reads."""

from __future__ import annotations

from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import blocks
from pipetune.plugins.recsys.cache import TTLCache
from pipetune.plugins.recsys.features import batch_method
from pipetune.plugins.recsys.tuning import (
    DEFAULT_TTL_S,
    MAX_CACHE_ENTRIES,
    materialize,
    sample,
)

# -- user-embedding cache ----------------------------------------------------------------------


def tune_embedding_cache(
    proposal: Proposal, pipeline: Pipeline, workload: Any, context: TuneContext
) -> Tuned:
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


def materialize_embedding_cache(change: Change, pipeline: Pipeline) -> Pipeline:
    stage = pipeline.stage(change.stage)
    cache = TTLCache(int(change.params["maxsize"]), float(change.params["ttl_s"]))
    return pipeline.replace(
        stage.name,
        stage.with_slots(cache=cache).noted(
            change=change.proposal, cache={"maxsize": cache.maxsize, "ttl_s": cache.ttl_s}
        ),
    )


# -- batched feature reads ----------------------------------------------------------------------


def tune_batched_reads(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
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


def materialize_batched_reads(change: Change, pipeline: Pipeline) -> Pipeline:
    stage = pipeline.stage(change.stage)
    return pipeline.replace(
        stage.name, stage.with_slots(batched=True).noted(change=change.proposal)
    )
