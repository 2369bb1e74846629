"""``hardware.compile``: run the stage's model through a compiler at fp32 (ONNX Runtime,
OpenVINO, torch on CUDA with CUDA graphs, Core ML on a Mac): each candidate checked
against the eager module to within the fp32 tolerance and timed against the current stage."""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType
from pipetune.plugins.hardware.changes.common import HardwareParams, materialize
from pipetune.plugins.hardware.tune import tune_model

ID = "hardware.compile"

CHANGE = ChangeType(ID, HardwareParams, materialize, tune_model)
