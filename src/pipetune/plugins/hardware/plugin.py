"""Hook implementations of the hardware plugin.

Matches the model to the machine it runs on: detects the machine, registers
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
from pipetune.plugins import _shared as hooks

if TYPE_CHECKING:
    import ast

    from pipetune.core.kernel.context import Observations
    from pipetune.core.kernel.model import Pipeline
    from pipetune.core.kernel.registry import Backend
    from pipetune.scan.rules import Finding

PIPETUNE_API = 2


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


inspect_pipeline = hooks.inspect_pipeline("pipetune.plugins.hardware", "inspect")


@hookimpl
def profile_pipeline(pipeline: Pipeline, observed: Observations) -> Mapping[str, Any] | None:
    from pipetune.plugins.hardware import facts

    return facts.measured_facts(pipeline, observed)


stage_hints = hooks.stage_hints("pipetune.plugins.hardware", with_pipeline=False)
propose_changes = hooks.propose_changes("pipetune.plugins.hardware")
register_changes = hooks.register_changes("pipetune.plugins.hardware")
scan_rules = hooks.scan_rules("pipetune.plugins.hardware")


@hookimpl
def scan_file(path: Path, tree: ast.Module, source: str) -> Sequence[Finding] | None:
    from pipetune.plugins.hardware.scan_rules import scan_file as whole_file

    return whole_file(path, tree, source)
