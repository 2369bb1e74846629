"""Hook implementations of the hardware plugin.

Matches the model to the machine it runs on (DESIGN §4): detects the machine, registers
the backends (ONNX Runtime, OpenVINO, torch on CUDA, TensorRT, Core ML), proposes
compilation, precision (the single owner of int8 / fp16 / bf16 changes for every domain),
thread settings and instance advice for stages holding a torch module or an ONNX model,
tunes them by measurement and materializes them from stored artifacts.

Heavy libraries are imported inside the functions that need them: this module imports
with none of them installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.registry import Dependency
from pipetune.plugins.hardware.scan_rules import scan_file, scan_rules  # noqa: F401

if TYPE_CHECKING:
    from pipetune.core.kernel.context import Observations, TuneContext
    from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
    from pipetune.core.kernel.registry import Backend
    from pipetune.core.kernel.results import Change, Profile, Proposal, Tuned

PIPETUNE_API = 1
NAME = "hardware"


@hookimpl
def register_dependencies() -> Sequence[Dependency]:
    return [
        Dependency("onnxruntime", "intel", "running exported models on the CPU"),
        Dependency("onnx", "intel", "exporting and checking ONNX graphs"),
        Dependency("onnxscript", "intel", "torch.onnx's default (dynamo) exporter"),
        Dependency("openvino", "intel", "compiling models for Intel (x86) CPUs"),
        Dependency("torch", "nvidia", "GPU execution, fp16/bf16, CUDA graphs"),
        Dependency("pynvml", "nvidia", "GPU detection (NVML)", distribution="nvidia-ml-py"),
        Dependency("tensorrt", "tensorrt", "TensorRT engines (NVIDIA's index; unverified)"),
        Dependency("coremltools", "apple", "Core ML conversion for Apple Silicon"),
    ]


@hookimpl
def register_backends() -> Sequence[Backend]:
    from pipetune.plugins.hardware.backends import all_backends

    return all_backends()


@hookimpl
def inspect_pipeline(pipeline: Pipeline) -> Mapping[str, Any] | None:
    from pipetune.plugins.hardware import facts

    return facts.inspect(pipeline)


@hookimpl
def profile_pipeline(pipeline: Pipeline, observed: Observations) -> Mapping[str, Any] | None:
    from pipetune.plugins.hardware import facts
    from pipetune.plugins.hardware.recognize import find_models

    if not find_models(pipeline):
        return None
    return facts.measure(pipeline, observed)


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    from pipetune.plugins.hardware.recognize import models_in_stage

    hints = []
    for ref in models_in_stage(stage):
        if not ref.injected:
            hints.append(
                f"stage {stage.name!r}: its function does not take the {ref.slot!r} slot "
                f"(the model is captured in a closure); accept `{ref.slot}` as a keyword "
                "argument to unlock compilation (ONNX Runtime, OpenVINO) and int8"
            )
    if stage.kind == "inference" and not models_in_stage(stage):
        hints.append(
            f"stage {stage.name!r} runs inference but declares no model slot; declare it "
            "(slots={'model': model}) to unlock compilation and reduced precision"
        )
    return hints or None


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal] | None:
    from pipetune.plugins.hardware.propose import propose

    return propose(pipeline, profile, requirements) or None


@hookimpl
def tune_proposal(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
) -> Tuned | None:
    if proposal.plugin != NAME:
        return None
    from pipetune.plugins.hardware.tune import tune

    return tune(proposal, pipeline, workload, requirements, context)


@hookimpl
def materialize_change(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline | None:
    if change.plugin != NAME:
        return None
    from pipetune.plugins.hardware.apply import materialize

    return materialize(change, pipeline, Path(artifacts_dir))
