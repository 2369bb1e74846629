"""What the generic plugin measures on the profiling run: how often each stage's inputs
repeat (the case for a result cache), how much one batch call saves per input (the case
for dynamic batching), and what a declared smaller model would route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.results import Profile
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.generic import adaptive, batching, cache


def profile_facts(
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
