"""What the generic plugin measures on the profiling run: how often each stage's inputs
repeat, and for a stage that maps over the parts of its input, how often the parts repeat
over the workload's own stream (the case for a result cache); how much one batch call
saves per input (the case for dynamic batching), or, for a one-at-a-time stage, batching
its component calls across inputs (the case for cross-input batching); and what a
declared smaller model would route."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.kernel.results import Profile
from pipetune.core.kernel.state import reset_state
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.generic import adaptive, batching, cache, callcache, crossbatch, parts
from pipetune.plugins.generic.coalesce import batchable_slots

#: Stages below this share of the time are not worth timing a batch path for.
MIN_BATCH_SHARE = 0.05
#: Re-running a stage on observed inputs to see how its model calls repeat costs at most this.
CALL_BUDGET_S = 1.0
#: Computing a later stage's inputs over the whole workload (to see how its parts repeat
#: in the workload's own order) is done only when the stages before it cost less than this.
PREFIX_BUDGET_S = 3.0


def profile_facts(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> Mapping[str, Any]:
    """Per stage: the share of its inputs that repeat an earlier one (over the whole
    workload for the first stage, over the observed sample for the others); for a stage
    mapping over parts, the parts' cold-cache hit rates by pass length; for stages with a
    ``batch_fn``, one batch call timed against one-at-a-time calls on the observed inputs;
    for one-at-a-time stages holding a component that accepts a batch, the same with
    their component calls batched across inputs (:mod:`.crossbatch`)."""
    found = _Facts(pipeline, workload, profile, observed)
    serving_one = ServingOptions.of(pipeline).batch_size == 1
    for position, stage in enumerate(pipeline.stages):
        inputs = list(workload.items) if position == 0 else observed.inputs_of(stage.name)
        found.read_repeats(stage, inputs)
        if profile.share(stage.name) < MIN_BATCH_SHARE or not serving_one:
            continue
        sample = observed.inputs_of(stage.name) or (inputs if position == 0 else [])
        found.read_batching(stage, sample)
    facts = found.as_mapping()
    routed = adaptive.observe(pipeline, profile, observed)  # a declared smaller model
    if routed is not None:
        facts["adaptive"] = routed
    return facts


@dataclass
class _Facts:
    """One profile_facts run: what it reads from, and what it has found so far, by kind
    of fact and stage name."""

    pipeline: Pipeline
    workload: Workload
    profile: Profile
    observed: Observations
    repeats: dict[str, float] = field(default_factory=dict)
    part_rates: dict[str, Any] = field(default_factory=dict)
    call_rates: dict[str, Any] = field(default_factory=dict)
    batch: dict[str, Any] = field(default_factory=dict)
    coalesce: dict[str, Any] = field(default_factory=dict)

    def read_repeats(self, stage: Stage, inputs: list[Any]) -> None:
        """How the stage's work repeats: by part for a stage mapping over the parts of its
        input, else by whole input and by the model calls inside it."""
        name = stage.name
        mapped = parts.verify_elementwise(
            stage, self.observed.inputs_of(name), self.observed.outputs_of(name)
        )
        if mapped is not None:
            stream = _stream_of(self.pipeline, stage, self.workload, self.profile, inputs)
            found = _part_repeats(stream, inputs)
            if found is not None:
                self.part_rates[name] = {**found, **mapped}
                self.repeats[name] = found["hit_rate"]
            return
        rate = cache.repeat_rate(inputs)
        if rate is not None:
            self.repeats[name] = rate
        calls = _call_repeats(stage, self.observed.inputs_of(name), self.profile)
        if calls is not None:
            self.call_rates[name] = calls

    def read_batching(self, stage: Stage, sample: list[Any]) -> None:
        """What batching saves on ``sample``: the stage's ``batch_fn`` timed against
        one-at-a-time calls, or else its component calls batched across inputs."""
        mean_ms = _stage_mean_ms(self.profile, stage.name)
        try:
            if stage.batch_fn is not None:
                measured = batching.stage_batch_speedup(stage, sample[:64], mean_ms=mean_ms)
            else:
                measured = crossbatch.measure(stage, sample[:32], mean_ms=mean_ms)
        except Exception as exc:  # the stage's own error: report, do not crash profiling
            measured = {"error": f"{type(exc).__name__}: {exc}"}
        if measured:
            (self.batch if stage.batch_fn is not None else self.coalesce)[stage.name] = measured

    def as_mapping(self) -> dict[str, Any]:
        """The facts: repeat rates, batch timings and the sample size always, the other
        kinds where some stage has one."""
        facts: dict[str, Any] = {
            "repeat_rate": self.repeats,
            "batch": self.batch,
            "samples": len(self.observed.indices),
        }
        if self.part_rates:
            facts["part_repeats"] = self.part_rates
        if self.call_rates:
            facts["call_repeats"] = self.call_rates
        if self.coalesce:
            facts["coalesce"] = self.coalesce
        return facts


def _stream_of(
    pipeline: Pipeline, stage: Stage, workload: Workload, profile: Profile, sample: list[Any]
) -> tuple[list[Any], str]:
    """The stage's inputs over the whole workload, in its order, when the stages before it
    are cheap enough to run on every input; otherwise the observed sample."""
    position = pipeline.index(stage.name)
    if position == 0:
        return list(workload.items), "workload"
    before = pipeline.stages[:position]
    cost_s = sum(_stage_mean_ms(profile, s.name) for s in before) / 1000 * len(workload)
    if cost_s > PREFIX_BUDGET_S:
        return sample, "sample"
    prefix = pipeline.prefix(stage.name)
    try:
        values = []
        items = list(workload.items)
        for start in range(0, len(items), 64):
            values.extend(prefix.run_batch(items[start : start + 64]))
        return values, "workload"
    except Exception:  # a prefix that fails on some input: the sample still tells
        return sample, "sample"
    finally:
        reset_state(prefix)


def _part_repeats(stream: tuple[list[Any], str], sample: Sequence[Any]) -> dict[str, Any] | None:
    values, over = stream
    keys = parts.part_keys(values)
    if keys is None and over == "workload":
        keys, over = parts.part_keys(sample), "sample"
    if not keys:
        return None
    return {**parts.hit_curve(keys), "over": over}


def _call_repeats(stage: Stage, inputs: Sequence[Any], profile: Profile) -> dict[str, Any] | None:
    """For a stage calling a model several times per input (plain code mapping over the
    parts of its input inside the stage), how often those calls repeat, on a few observed
    inputs."""
    slots = batchable_slots(stage)
    if not slots or not inputs:
        return None
    mean_ms = _stage_mean_ms(profile, stage.name)
    n = max(2, min(len(inputs), 16, int(CALL_BUDGET_S * 1000 / max(mean_ms, 1e-3))))
    try:
        found = callcache.observe_calls(stage, slots[0], list(inputs[:n]))
    except Exception:  # the stage's own error shows in the timing run: do not add noise
        return None
    if found is None or found["calls_per_input"] < 1.5:
        return None  # one call per input: an input cache (or none) is the right one
    return found


def _stage_mean_ms(profile: Profile, name: str) -> float:
    try:
        return profile.stage(name).mean_ms
    except KeyError:
        return 0.0
