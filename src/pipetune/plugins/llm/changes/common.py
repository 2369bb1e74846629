"""What the llm plugin's change types share.

Every llm change is lossless (greedy tokens must not change): it is a new value of a
:class:`~pipetune.plugins.llm.records.GenerateConfig` field for the plugin's generate
block, or a proxy in the ``model`` slot of a user's stage. :func:`tune_generate` starts
each tune step the same way (the stage's engine, its tuning requests, the fidelity floor,
an engine factory for candidates) and hands a user's own stage to :func:`tune_wrapped`;
:func:`materialize_config` builds the new stage from the parameters and never touches the
user's model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import ConfigError, PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Requirements, Stage
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.llm.blocks import encode_request, is_generate_block, stage_engine
from pipetune.plugins.llm.records import GenerateConfig, Generation, GenerationRequest

#: How many of the tuning split's requests a tune step measures on (this plugin's tune
#: steps run the real model; the validator confirms on the held-out split).
TUNE_REQUESTS = 12


@dataclass
class GenerateTuning:
    """What a tune step on the plugin's generate block starts from."""

    proposal: Proposal
    pipeline: Pipeline
    stage: Stage
    context: TuneContext
    base: Any  # the stage's current engine
    config: GenerateConfig
    requests: list[GenerationRequest]
    floor: float
    min_speedup: float
    engine: Callable[..., Any]  # engine(config, **slots): a candidate engine


def tune_generate(
    proposal: Proposal,
    pipeline: Pipeline,
    context: TuneContext,
    tune_block: Callable[[GenerateTuning], Tuned],
) -> Tuned:
    """Tune ``proposal`` with ``tune_block`` on the plugin's generate block, or, on a
    user's own stage, measure the proxy against the original (:func:`tune_wrapped`)."""
    stage = pipeline.stage(proposal.stage)
    if not is_generate_block(stage):
        return tune_wrapped(proposal, pipeline, stage, context, context.requirements)
    from pipetune.plugins.llm.engine import Engine

    base = stage_engine(stage)
    config: GenerateConfig = stage.slots["config"]
    requests = stage_requests(context, pipeline, stage, TUNE_REQUESTS)
    if not requests:
        raise Rejected("no requests reach the generate stage in the tuning split")

    def engine(cfg: GenerateConfig, **slots: Any) -> Engine:
        return Engine(
            stage.slots["model"],
            cfg,
            tokenizer=stage.slots.get("tokenizer"),
            draft_model=slots.get("draft_model", stage.slots.get("draft_model")),
            prefix_cache=slots.get("prefix_cache"),
        )

    setup = GenerateTuning(
        proposal,
        pipeline,
        stage,
        context,
        base,
        config,
        requests,
        floor=context.fidelity_floor,
        min_speedup=1.0 + context.requirements.min_gain,
        engine=engine,
    )
    return tune_block(setup)


def stage_requests(
    context: Any, pipeline: Pipeline, stage: Stage, limit: int
) -> list[GenerationRequest]:
    inputs = context.stage_inputs(pipeline, stage.name)
    tokenizer = stage.slots.get("tokenizer")
    requests = [encode_request(item, tokenizer) for item in inputs]
    return requests[:limit]


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def check_same(
    name: str, baseline: Sequence[Generation], candidate: Sequence[Generation], floor: float
) -> Any:
    from pipetune.plugins.llm.fidelity import token_match

    fidelity = token_match(baseline, candidate)
    if fidelity.value < floor:
        first = fidelity.details.get("first_divergence")
        changed = fidelity.n - fidelity.details["requests_identical"]
        raise Rejected(
            f"{name}: greedy tokens changed on {changed} of {fidelity.n} requests "
            f"(first divergence: {first})"
        )
    return fidelity


def tune_wrapped(
    proposal: Proposal, pipeline: Pipeline, stage: Stage, context: Any, requirements: Requirements
) -> Tuned:
    """A user's stage: measure the proxy against the original on a few inputs."""
    candidate = materialize_config(Change.from_proposal(proposal), pipeline, Path("."))
    items = list(context.workload.items)[:4]
    before, t_before = timed(lambda: [pipeline.run(i) for i in items])
    after, t_after = timed(lambda: [candidate.run(i) for i in items])
    fidelity = context.fidelity(after, kind="tokens", baseline=before)
    if fidelity.value < context.fidelity_floor:
        raise Rejected(f"outputs changed with a KV cache: {fidelity.details}")
    speedup = t_before / t_after if t_after else 0.0
    return Tuned(
        params=dict(proposal.params), notes={"speedup": speedup}, est_stage_speedup=speedup
    )


def materialize_config(
    change: Change,
    pipeline: Pipeline,
    artifacts_dir: Path | None = None,
    extra_slots: Callable[[GenerateConfig], Mapping[str, Any]] | None = None,
) -> Pipeline:
    """The stage with ``change``'s params as its new config (or, on a user's stage with
    ``wrap``, a KV-caching proxy in its model slot); ``extra_slots(config)`` adds slots a
    change type needs beside the config."""
    stage = pipeline.stage(change.stage)
    params = dict(change.params)
    if params.get("wrap") == "cached_generate":
        from pipetune.plugins.llm.recognize import CachedGenerate, model_slot

        slot = model_slot(stage)
        if slot is None:
            raise PipelineError(f"stage {stage.name!r} no longer holds a causal LM")
        model = stage.slots[slot]
        inner = getattr(model, "__pipetune_wrapped__", model)
        lookup = params.get("prompt_lookup_num_tokens") or getattr(model, "_prompt_lookup", None)
        new = stage.with_slots(**{slot: CachedGenerate(inner, lookup)})
        return pipeline.replace(
            stage.name, new.noted(llm=[*stage.meta.get("llm", []), change.proposal])
        )
    if not is_generate_block(stage):
        raise PipelineError(
            f"{change.proposal} applies to pipetune's generate block; "
            f"stage {stage.name!r} is not one"
        )
    config: GenerateConfig = stage.slots["config"]
    known = set(GenerateConfig.__dataclass_fields__)
    updates = {k: v for k, v in params.items() if k in known}
    if "prefixes" in updates:
        updates["prefixes"] = tuple(tuple(p) for p in updates["prefixes"])
    try:
        new_config = config.evolve(**updates)
        new_config = GenerateConfig.from_dict(new_config.to_dict())  # re-validate
    except (TypeError, ConfigError) as exc:
        raise PipelineError(f"{change.proposal}: invalid parameters {updates}: {exc}") from None
    slots: dict[str, Any] = {"config": new_config}
    if extra_slots is not None:
        slots.update(extra_slots(new_config))
    applied = [*stage.meta.get("llm", []), change.proposal]
    return pipeline.replace(stage.name, stage.with_slots(**slots).noted(llm=applied))
