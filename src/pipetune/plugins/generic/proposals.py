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
from pipetune.plugins.generic import adaptive, cache, callcache, crossbatch, parallel
from pipetune.plugins.generic.changes import (
    cross_input_batching,
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
CROSS_BATCHING = cross_input_batching.ID
#: The same transformation for a stage whose components the nlp plugin knows (it adds
#: its own lossless parts, such as a Rust tokenizer): the two never apply together.
DOMAIN_CROSS_BATCHING = ("nlp.cross_input_batching",)


def propose(pipeline: Pipeline, profile: Profile, requirements: Requirements) -> list[Proposal]:
    """Every generic proposal the profile's facts support."""
    facts = profile.facts.get(PLUGIN, {})
    proposals: list[Proposal] = []
    proposals.extend(_cache_proposals(pipeline, profile, facts))
    proposals.extend(_call_cache_proposals(pipeline, facts))
    batching_proposal = _batching_proposal(pipeline, profile, requirements, facts)
    if batching_proposal is not None:
        proposals.append(batching_proposal)
    proposals.extend(cross_batching_proposals(pipeline, profile, requirements, facts))
    proposals.extend(_parallel_proposals(pipeline, profile, requirements))
    proposals.extend(adaptive.proposals(pipeline, profile, facts))
    return proposals


def _cache_proposals(
    pipeline: Pipeline, profile: Profile, facts: Mapping[str, Any]
) -> list[Proposal]:
    out = []
    rates: Mapping[str, float] = facts.get("repeat_rate", {})
    by_part: Mapping[str, Any] = facts.get("part_repeats", {})
    for stage in pipeline.stages:
        rate = rates.get(stage.name)
        if rate is None or rate < MIN_REPEAT_RATE or cache.META_KEY in stage.meta:
            continue
        part = by_part.get(stage.name)
        n = profile.samples or len(profile.stage_ms) or 1
        params: dict[str, Any] = {}
        in_flight = None
        estimate_rate = rate
        if part is not None:
            n = max(n, int(part.get("distinct_parts", 0)))
            if not part.get("declared"):
                params["per"] = "element"  # found on observed inputs, not declared
            in_flight, estimate_rate = _cache_pass(part, profile)
        capacity = int(min(1 << 16, max(1024, 2 * n)))
        out.append(
            Proposal(
                id=CACHE,
                plugin=PLUGIN,
                stage=stage.name,
                title=f"Cache {stage.name}'s results by content hash"
                + (" per part of its input" if part is not None else ""),
                rationale=_cache_rationale(stage.name, rate, part, in_flight, estimate_rate),
                est_stage_speedup=1.0 / max(1e-3, 1.0 - 0.97 * estimate_rate),
                effort="minutes",
                accuracy_risk="none",
                params={"capacity": capacity, **params},
                evidence={"repeat_rate": rate, **({"part_repeats": dict(part)} if part else {})},
                in_flight=in_flight,
            )
        )
    return out


def _call_cache_proposals(pipeline: Pipeline, facts: Mapping[str, Any]) -> list[Proposal]:
    """A cache of a model's calls for a stage that calls it per part of its input."""
    out = []
    for name, found in facts.get("call_repeats", {}).items():
        rate = float(found.get("hit_rate", 0.0))
        stage = pipeline.stage(name)
        if rate < MIN_REPEAT_RATE or callcache.META_KEY in stage.meta:
            continue
        slot = found["slot"]
        out.append(
            Proposal(
                id=CACHE,
                plugin=PLUGIN,
                stage=name,
                title=f"Cache {name}'s calls to `{slot}` by content hash",
                rationale=(
                    f"{name!r} calls `{slot}` {found['calls_per_input']:.1f} times per input "
                    f"(it maps over the parts of its input), and on {found['inputs']} observed "
                    f"inputs {rate:.0%} of its {found['calls']} calls repeat an earlier one; a "
                    f"cache in `{slot}`'s slot keyed by each call's content answers them without "
                    f"running the model (at most {1 / (1 - rate):.2f}x for this stage at this "
                    "rate; measured on so few inputs, the workload's own rate is likely higher)"
                ),
                est_stage_speedup=1.0 / max(1e-3, 1.0 - 0.97 * rate),
                effort="minutes",
                accuracy_risk="none",
                params={"capacity": 4096, "per": "call", "slot": slot},
                evidence={"call_repeats": dict(found)},
            )
        )
    return out


#: A pass that measures a cache's gain is given the inputs it needs to reach the stream's
#: hit rate, but no more than this many seconds of the pipeline's current time per input.
CACHE_PASS_BUDGET_S = 4.0


def _cache_pass(part: Mapping[str, Any], profile: Profile) -> tuple[InFlight, float]:
    """How many consecutive inputs a measured pass holds (enough for the cold cache to
    approach the stream's hit rate, within a time budget), and the hit rate at that
    length, on which the estimate rests."""
    mean_ms = sum(s.mean_ms or 0.0 for s in profile.stages) or 1.0
    cap = max(16, int(CACHE_PASS_BUDGET_S * 1000 / mean_ms))
    wanted = min(int(part.get("inputs_for_rate", 1)), cap, int(part.get("inputs", 1)))
    curve = {int(k): float(v) for k, v in part.get("by_pass_length", {}).items()}
    lengths = [n for n in sorted(curve) if n <= wanted] or sorted(curve)[:1]
    length = lengths[-1] if lengths else 1
    rate = curve.get(length, float(part.get("hit_rate", 0.0)))
    assumes = (
        f"passes of {length} consecutive inputs, the cache cold at the start of each: "
        f"{rate:.0%} of parts hit ({float(part.get('hit_rate', 0.0)):.0%} over the whole stream)"
    )
    # the cache carries state from one input to the next: passes take runs of the split
    # in its order, as the hit-rate curve was computed
    flight = InFlight(
        inputs=max(1, length),
        arrival="workload",
        batches_per_pass=1,
        assumes=assumes,
        in_order=True,
    )
    return flight, rate


def _cache_rationale(
    name: str,
    rate: float,
    part: Mapping[str, Any] | None,
    in_flight: InFlight | None,
    at_pass: float,
) -> str:
    bound = f"at most {1 / (1 - rate):.2f}x for this stage at this repeat rate"
    if part is None:
        return (
            f"{rate:.0%} of the inputs to {name!r} repeat an earlier one in this workload; a "
            "bounded LRU keyed by a hash of the input's content answers them without running "
            f"the stage ({bound})"
        )
    over = "the workload's own stream" if part.get("over") == "workload" else "the observed sample"
    how = "declares" if part.get("declared") else "was found (on observed inputs) to"
    passes = in_flight.inputs if in_flight is not None else part["inputs"]
    return (
        f"{name!r} {how} map over the parts of its input, and over {over} "
        f"({part['inputs']} inputs, {part['parts']} parts, {part['distinct_parts']} distinct) "
        f"{rate:.0%} of the parts repeat an earlier one; a cache keyed by each part's content "
        f"computes each distinct part once ({bound}). A cold cache reaches {at_pass:.0%} within "
        f"{passes} consecutive inputs: the estimate assumes that, and the change is measured "
        "on passes that long"
    )


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


def cross_batching_proposals(
    pipeline: Pipeline, profile: Profile, requirements: Requirements, facts: Mapping[str, Any]
) -> list[Proposal]:
    """Cross-input batching for one-at-a-time stages whose components accept a batch, from
    the measured gain of batching their calls on observed inputs."""
    if not crossbatch.batching_pays_here(profile.mode, requirements.metric):
        return []
    out = []
    for name, entry in facts.get("coalesce", {}).items():
        speedup = entry.get("speedup") if isinstance(entry, Mapping) else None
        if not speedup or speedup < MIN_BATCH_SPEEDUP:
            continue
        out.append(
            Proposal(
                id=CROSS_BATCHING,
                plugin=PLUGIN,
                stage=name,
                title=f"Batch {name}'s model calls across inputs",
                rationale=cross_batching_rationale(name, entry, requirements.metric),
                est_stage_speedup=float(speedup),
                effort="minutes",
                accuracy_risk="low",
                params={"slots": list(entry.get("slots", ()))},
                conflicts=DOMAIN_CROSS_BATCHING,
                evidence={"coalesce": dict(entry)},
                in_flight=crossbatch.measured_in_flight(entry, profile.mode),
            )
        )
    return out


def cross_batching_rationale(name: str, entry: Mapping[str, Any], metric: str) -> str:
    slots = ", ".join(f"`{s}`" for s in entry.get("slots", ())) or "its model"
    return (
        f"{name!r} runs one input at a time although {slots} accepts a batch: run its own "
        f"function per input and make their calls to {slots} one batched call (inputs ordered "
        f"by length so padding stays small, outputs in the original order); measured on "
        f"{entry['inputs']} observed inputs: {entry['per_item_ms_batched']:.2f} ms per input "
        f"against {entry['per_item_ms_single']:.2f} ms ({entry['speedup']:.2f}x). Group size "
        f"and window are tuned on {metric}; `torch.inference_mode` for the batched calls is "
        "kept only where it holds"
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
