"""What the generic plugin proposes from the profile: a result cache where inputs repeat,
dynamic batching where one batch call is cheaper per input, a thread or process pool for a
stage that waits or holds the GIL, and adaptive computation with a declared smaller
model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pipetune.core.kernel.model import Pipeline, Requirements
from pipetune.core.kernel.results import InFlight, Profile, Proposal
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.generic import adaptive, cache, parallel
from pipetune.plugins.generic.changes import (
    dynamic_batching,
    parallel_processes,
    parallel_threads,
    result_cache,
)

PLUGIN = "generic"

#: Propose a cache when at least this share of a stage's inputs repeat an earlier one.
MIN_REPEAT_RATE = 0.05
#: Propose batching when one batch call is at least this much cheaper per input.
MIN_BATCH_SPEEDUP = 1.2
#: A stage using less CPU than this per wall second is waiting (I/O): threads help.
WAITING_CPU_RATIO = 0.5
#: Stages below this share of the time are not worth a pool.
MIN_PARALLEL_SHARE = 0.15

CACHE = result_cache.ID
BATCHING = dynamic_batching.ID
THREADS = parallel_threads.ID
PROCESSES = parallel_processes.ID


def propose(pipeline: Pipeline, profile: Profile, requirements: Requirements) -> list[Proposal]:
    """Every generic proposal the profile's facts support."""
    facts = profile.facts.get(PLUGIN, {})
    proposals: list[Proposal] = []
    proposals.extend(_cache_proposals(pipeline, profile, facts))
    batching_proposal = _batching_proposal(pipeline, profile, requirements, facts)
    if batching_proposal is not None:
        proposals.append(batching_proposal)
    proposals.extend(_parallel_proposals(pipeline, profile, requirements))
    proposals.extend(adaptive.proposals(pipeline, profile, facts))
    return proposals


def _cache_proposals(
    pipeline: Pipeline, profile: Profile, facts: Mapping[str, Any]
) -> list[Proposal]:
    out = []
    rates: Mapping[str, float] = facts.get("repeat_rate", {})
    for stage in pipeline.stages:
        rate = rates.get(stage.name)
        if rate is None or rate < MIN_REPEAT_RATE or cache.META_KEY in stage.meta:
            continue
        n = profile.samples or len(profile.stage_ms) or 1
        if cache.is_elementwise(stage):
            n *= 16  # entries are elements (sections of a document), not inputs
        capacity = int(min(1 << 16, max(1024, 2 * n)))
        out.append(
            Proposal(
                id=CACHE,
                plugin=PLUGIN,
                stage=stage.name,
                title=f"Cache {stage.name}'s results by content hash",
                rationale=(
                    f"{rate:.0%} of the inputs to {stage.name!r} repeat an earlier one in this "
                    "workload; a bounded LRU keyed by a hash of the input's content answers "
                    "them without running the stage (at most "
                    f"{1 / (1 - rate):.2f}x for this stage at this repeat rate)"
                ),
                est_stage_speedup=1.0 / max(1e-3, 1.0 - 0.97 * rate),
                effort="minutes",
                accuracy_risk="none",
                params={"capacity": capacity},
                evidence={"repeat_rate": rate},
            )
        )
    return out


def _batching_proposal(
    pipeline: Pipeline,
    profile: Profile,
    requirements: Requirements,
    facts: Mapping[str, Any],
) -> Proposal | None:
    if ServingOptions.of(pipeline).batch_size > 1:
        return None
    measured = {
        name: entry
        for name, entry in facts.get("batch", {}).items()
        if isinstance(entry, Mapping) and (entry.get("speedup") or 0) >= MIN_BATCH_SPEEDUP
    }
    if not measured:
        return None
    online = profile.mode == "online"
    if requirements.metric != "throughput" and not online:
        # Offline, an input waits for its whole batch: batching cannot lower its latency.
        return None
    name = max(measured, key=lambda n: profile.share(n) * (1 - 1 / measured[n]["speedup"]))
    entry = measured[name]
    return Proposal(
        id=BATCHING,
        plugin=PLUGIN,
        stage=name,
        title="Dynamic batching",
        rationale=(
            f"one batch call of {name!r} on {entry['batch']} observed inputs costs "
            f"{entry['per_item_ms_batched']:.2f} ms per input against "
            f"{entry['per_item_ms_single']:.2f} ms one at a time "
            f"({entry['speedup']:.1f}x); batch size"
            + (" and batching delay are" if online else " is")
            + f" tuned on {requirements.metric}"
        ),
        est_stage_speedup=float(entry["speedup"]),
        effort="minutes",
        accuracy_risk="low",
        evidence={"batch": dict(measured)},
        in_flight=InFlight(
            inputs=int(entry["batch"]),
            arrival="workload" if online else "backlog",
            assumes=f"{entry['batch']} inputs in flight at once, batched in one call",
        ),
    )


def _parallel_proposals(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> list[Proposal]:
    if requirements.metric != "throughput" or profile.mode != "offline":
        return []  # a pool over a batch lowers no single input's latency
    cores = os.cpu_count() or 1
    out = []
    for stage in pipeline.stages:
        if stage.batch_fn is not None or parallel.META_KEY in stage.meta:
            continue
        try:
            stats = profile.stage(stage.name)
        except KeyError:
            continue
        if stats.share < MIN_PARALLEL_SHARE:
            continue
        # The profiler's GIL check (1 thread against 2) is the direct evidence; the CPU
        # ratio is a fallback (on a crowded machine a busy stage also shows a low ratio).
        if stats.holds_gil is not None:
            waiting = not stats.holds_gil
        elif stats.cpu_ratio is not None:
            waiting = stats.cpu_ratio < WAITING_CPU_RATIO
        else:
            continue
        releases_gil = bool(stage.meta.get("releases_gil"))
        factory = stage.meta.get(parallel.FACTORY_KEY)
        if waiting or releases_gil:
            ratio = stats.cpu_ratio if stats.cpu_ratio is not None else 0.5
            speed = min(8.0, 1.0 / max(ratio, 0.125)) if waiting else float(cores)
            out.append(
                Proposal(
                    id=THREADS,
                    plugin=PLUGIN,
                    stage=stage.name,
                    title=f"Run {stage.name} on a thread pool",
                    rationale=(
                        f"{stage.name!r} is {stats.share:.0%} of the time and "
                        + (
                            "runs faster on two threads than one (it waits or releases the GIL)"
                            if waiting
                            else "releases the GIL (declared)"
                        )
                        + "; a thread pool overlaps inputs within each chunk"
                    ),
                    est_stage_speedup=max(1.0, speed),
                    effort="minutes",
                    accuracy_risk="none",
                    conflicts=(PROCESSES,),
                    evidence={"cpu_ratio": stats.cpu_ratio, "share": stats.share},
                )
            )
        elif cores >= 2:
            available = bool(factory)
            out.append(
                Proposal(
                    id=PROCESSES,
                    plugin=PLUGIN,
                    stage=stage.name,
                    title=f"Run {stage.name} in worker processes",
                    rationale=(
                        f"{stage.name!r} is {stats.share:.0%} of the time and holds the GIL "
                        "(two threads run it no faster than one): threads would queue; "
                        f"{cores} cores can run it in spawned workers built from its factory"
                    ),
                    est_stage_speedup=0.8 * min(cores, 4),
                    effort="minutes" if available else "hours",
                    accuracy_risk="none",
                    applicable=available,
                    reason=""
                    if available
                    else (
                        "needs an importable factory: declare meta={'factory': "
                        "'package.module:function'} on the stage"
                    ),
                    params={"factory": factory} if factory else {},
                    conflicts=(THREADS,),
                    evidence={"cpu_ratio": stats.cpu_ratio, "share": stats.share},
                )
            )
    return out
