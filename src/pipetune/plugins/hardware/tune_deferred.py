"""Tune steps that finish on another machine: the Core ML package is converted and checked
here (its prediction needs macOS), the ONNX graph for TensorRT exported and checked (the
engine needs an NVIDIA GPU); both end in :class:`Deferred` with the command to run there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetune.core.kernel.errors import Deferred, Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.hardware.export import ensure_export
from pipetune.plugins.hardware.tune import MAX_CAPTURE, capture, stage_inputs, stage_module

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext


def defer_coreml(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Convert and check the Core ML package here; the prediction needs a Mac."""
    from pipetune.plugins.hardware.backends.coreml import (
        CoreMLBackend,
        describe_spec,
        on_macos,
        validate_command,
    )

    stage, slot, module = stage_module(proposal, pipeline)
    inputs = stage_inputs(context, pipeline, stage)
    calls = capture(module, stage.with_slots(**{slot: module}), inputs[:MAX_CAPTURE], slot)
    precision = proposal.params.get("precision", "fp16")
    package = CoreMLBackend().convert(
        module, calls[0], precision, store=context.artifacts, name=slot
    )
    if on_macos():  # a Mac validates like any backend: through the compile proposal
        raise Rejected("on macOS, Core ML is tried by hardware.compile")
    raise Deferred(
        f"Core ML package converted and its spec checked ({describe_spec(package.spec)}); "
        "prediction needs macOS",
        artifact=str(package.path),
        command=validate_command(package.folder),
        details={"spec": dict(package.spec), "stage": stage.name, "slot": slot},
    )


def defer_tensorrt(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Export and check the graph TensorRT would consume; the engine needs an NVIDIA GPU."""
    from pipetune.plugins.hardware.backends.tensorrt import prepare_onnx

    stage, slot, module = stage_module(proposal, pipeline)
    inputs = stage_inputs(context, pipeline, stage)
    calls = capture(module, stage.with_slots(**{slot: module}), inputs[:MAX_CAPTURE], slot)
    exported = ensure_export(module, calls[0], context.artifacts, name=slot, log=context.log)
    report = prepare_onnx(exported)
    raise Deferred(
        "ONNX graph for TensorRT exported, checked with onnx.checker and run on ONNX Runtime "
        f"(max-abs-diff {report['onnxruntime_max_abs_diff']:.1e} vs eager); building and "
        "timing the engine needs an NVIDIA GPU with tensorrt",
        artifact=str(exported.path),
        command=report["command"],
        details=report,
    )
