"""Hook implementations of the generic plugin: the single owner of batching, result
caching and parallel preprocessing (DESIGN §3), and the fidelity metrics for the generic
output kinds. It is a plugin like any other: the core only calls its hooks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import Observations, TuneContext
from pipetune.core.kernel.errors import ConfigError, PipelineError
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import Demo
from pipetune.core.kernel.results import Change, Fidelity, InFlight, Profile, Proposal, Tuned
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.generic import adaptive, batching, cache, fidelity, parallel
from pipetune.plugins.generic.scan_rules import scan_rules  # noqa: F401

PIPETUNE_API = 1
PLUGIN = "generic"

#: Propose a cache when at least this share of a stage's inputs repeat an earlier one.
MIN_REPEAT_RATE = 0.05
#: Propose batching when one batch call is at least this much cheaper per input.
MIN_BATCH_SPEEDUP = 1.2
#: A stage using less CPU than this per wall second is waiting (I/O): threads help.
WAITING_CPU_RATIO = 0.5
#: Stages below this share of the time are not worth a pool.
MIN_PARALLEL_SHARE = 0.15

CACHE = f"{PLUGIN}.result_cache"
BATCHING = f"{PLUGIN}.dynamic_batching"
THREADS = f"{PLUGIN}.parallel_threads"
PROCESSES = f"{PLUGIN}.parallel_processes"


# -- fidelity ------------------------------------------------------------------------------


@hookimpl(trylast=True)
def compare_outputs(
    output_kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None,
) -> Fidelity | None:
    """Labels: agreement (and accuracy with labels); tensors: 1 - relative error; anything
    else: exact equality. Domain plugins answer first for their own kinds."""
    if output_kind == "labels":
        return fidelity.label_agreement(baseline, candidate, labels)
    if output_kind == "tensor":
        return fidelity.tensor_closeness(baseline, candidate)
    if output_kind in ("any", "token_ids", "tokens"):
        return fidelity.exact_match(baseline, candidate)
    return None


# -- demos ---------------------------------------------------------------------------------


@hookimpl
def register_demos() -> Sequence[Demo]:
    from pipetune.demos.generic import demo

    return [
        Demo(
            name="queries",
            title="Query intent classification under repeated traffic (caching, batching)",
            build=demo.build,
        )
    ]


# -- profile -------------------------------------------------------------------------------


@hookimpl
def profile_pipeline(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> Mapping[str, Any]:
    """Per stage: the share of its inputs that repeat an earlier one (over the whole
    workload for the first stage, over the observed sample for the others), and, for
    stages with a ``batch_fn``, one batch call timed against one-at-a-time calls on the
    observed inputs."""
    repeats: dict[str, float] = {}
    batch: dict[str, Any] = {}
    for position, stage in enumerate(pipeline.stages):
        inputs = list(workload.items) if position == 0 else observed.inputs_of(stage.name)
        if cache.is_elementwise(stage):  # cached per element: elements repeat, not inputs
            try:
                rate = cache.repeat_rate(cache.elements_of(inputs))
            except TypeError:
                rate = cache.repeat_rate(inputs)
        else:
            rate = cache.repeat_rate(inputs)
        if rate is not None:
            repeats[stage.name] = rate
        share = profile.share(stage.name)
        if (
            stage.batch_fn is not None
            and share >= 0.05
            and ServingOptions.of(pipeline).batch_size == 1
        ):
            sample = observed.inputs_of(stage.name) or (inputs if position == 0 else [])
            mean_ms = _stage_mean_ms(profile, stage.name)
            try:
                measured = batching.stage_batch_speedup(stage, sample[:64], mean_ms=mean_ms)
            except Exception as exc:  # the stage's own error: report, do not crash profiling
                measured = {"error": f"{type(exc).__name__}: {exc}"}
            if measured:
                batch[stage.name] = measured
    facts = {"repeat_rate": repeats, "batch": batch, "samples": len(observed.indices)}
    routed = adaptive.observe(pipeline, profile, observed)  # a declared smaller model
    if routed is not None:
        facts["adaptive"] = routed
    return facts


def _stage_mean_ms(profile: Profile, name: str) -> float:
    try:
        return profile.stage(name).mean_ms
    except KeyError:
        return 0.0


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    hints = []
    if stage.batch_fn is None and stage.kind in ("inference", "ranking", "features"):
        hints.append(
            f"stage {stage.name!r}: declare a batch_fn(items, ...) to unlock dynamic batching"
        )
    if stage.kind in ("preprocess", "decode", "tokenize") and not stage.meta.get(
        parallel.FACTORY_KEY
    ):
        hints.append(
            f"stage {stage.name!r}: declare meta={{'factory': 'package.module:function'}} "
            "(a function building this stage) so pipetune can run it in worker processes"
        )
    return hints or None


# -- propose -------------------------------------------------------------------------------


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal]:
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


# -- tune and materialize ------------------------------------------------------------------


@hookimpl
def tune_proposal(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
) -> Tuned | None:
    if proposal.id == CACHE:
        return Tuned(params={"capacity": int(proposal.params.get("capacity", 4096))})
    if proposal.id == BATCHING:
        return batching.tune(pipeline, workload, requirements, log=context.log)
    if proposal.id in (THREADS, PROCESSES):
        how = "threads" if proposal.id == THREADS else "processes"
        return parallel.tune(
            pipeline,
            proposal.stage,
            how,
            workload,
            requirements,
            cores=os.cpu_count() or 1,
            factory=proposal.params.get("factory"),
            log=context.log,
        )
    if proposal.id == adaptive.PROPOSAL:
        return adaptive.tune(proposal, pipeline, workload, requirements, context)
    return None


@hookimpl
def materialize_change(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline | None:
    if change.proposal == CACHE:
        capacity = int(change.params.get("capacity", 4096))
        stage = pipeline.stage(change.stage)
        if cache.META_KEY in stage.meta:
            raise PipelineError(f"stage {change.stage!r} is already cached")
        return pipeline.replace(change.stage, cache.cached_stage(stage, capacity))
    if change.proposal == BATCHING:
        return batching.materialize(pipeline, dict(change.params))
    if change.proposal in (THREADS, PROCESSES):
        params = dict(change.params)
        params.setdefault("how", "threads" if change.proposal == THREADS else "processes")
        if "workers" not in params:
            raise ConfigError(f"{change.proposal}: the change has no 'workers' parameter")
        return parallel.materialize(pipeline, change.stage, params)
    if change.proposal == adaptive.PROPOSAL:
        return adaptive.materialize(change, pipeline)
    return None
