"""``hardware.tensorrt``: a TensorRT engine for the model. On an NVIDIA GPU with
``tensorrt`` it is tried like any candidate; elsewhere (``cross_target``) the ONNX graph it
would consume is exported and checked, and the trial is deferred with the command to
build and time the engine there. Lossy."""

from __future__ import annotations

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.hardware.changes.common import HardwareParams, materialize
from pipetune.plugins.hardware.tune import tune_model
from pipetune.plugins.hardware.tune_deferred import defer_tensorrt

ID = "hardware.tensorrt"


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    if proposal.params.get("cross_target"):
        return defer_tensorrt(proposal, pipeline, context)
    return tune_model(proposal, pipeline, context)


CHANGE = ChangeType(ID, HardwareParams, materialize, tune, lossy=True)
