"""``hardware.precision``: run the stage's model at a reduced precision (int8 with ONNX
Runtime's dynamic or static quantization or torch, fp16/bf16 on NVIDIA, bf16 with
OpenVINO). Lossy: the pipeline's own fidelity metric (or a domain plugin's assessment,
perplexity for an LLM) judges it."""

from __future__ import annotations

from pipetune.core.kernel.registry import ChangeType
from pipetune.plugins.hardware.changes.common import HardwareParams, materialize
from pipetune.plugins.hardware.tune import tune_model

ID = "hardware.precision"

CHANGE = ChangeType(ID, HardwareParams, materialize, tune_model, lossy=True)
