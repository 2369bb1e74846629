"""Precision changes (int8, fp16, bf16), always on copies.

``module.half()``, ``module.to(torch.bfloat16)`` and torch's eager quantization all
mutate the module they are given, so every function here deep-copies first: the user's
module, still held by the original pipeline, keeps its weights (tests compare a digest of
its ``state_dict`` before and after).

* ONNX int8 (ONNX Runtime): *dynamic* quantization stores weights in int8 and quantizes
  activations per batch at run time (no calibration; the usual choice for transformer
  encoders on CPU); *static* QDQ quantization fixes activation ranges from calibration
  inputs (the domain plugin's ``calibration_inputs``, else the tuning split).
* torch dynamic int8 (``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear``): for
  models that cannot leave torch (a ``generate`` loop); deprecated upstream in favour of
  torchao, still present in torch 2.13.
* fp16 / bf16 casts, for GPUs (and for CPUs with native bf16 through OpenVINO).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import Rejected
from pipetune.plugins.hardware.export import quiet

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def cast_copy(module: Any, precision: str) -> Any:
    """A copy of ``module`` with floating-point weights in ``precision``."""
    import torch

    if precision not in TORCH_DTYPES:
        raise Rejected(f"unknown precision {precision!r} (known: {', '.join(TORCH_DTYPES)})")
    dtype = getattr(torch, TORCH_DTYPES[precision])
    clone = copy.deepcopy(module)
    clone.eval()
    return clone.to(dtype=dtype)


def torch_dynamic_int8(module: Any) -> Any:
    """A copy of ``module`` whose ``nn.Linear`` layers run int8 weights (dynamic
    activation quantization), on CPU."""
    import torch

    clone = copy.deepcopy(module)
    clone.eval()
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:  # removed in a later torch: torchao is its successor
        raise Rejected(
            "this torch has no torch.ao.quantization.quantize_dynamic; install torchao"
        ) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torchao migration notice, on every call
        return quantize_dynamic(clone, {torch.nn.Linear}, dtype=torch.qint8)


def quantize_onnx_dynamic(source: Path, target: Path, *, reduce_range: bool = False) -> Path:
    """Int8 weights (one scale per output channel), activations quantized per call.

    Per-channel scales matter for transformer encoders: on all-MiniLM-L6-v2 the worst
    sentence-embedding cosine against fp32 goes from 0.918 (one scale per tensor) to
    0.986 (per channel) on the benchmark's generated sentences. ``reduce_range`` (7-bit
    weights) avoids saturation on x86 CPUs without VNNI, whose int8 kernels add pairs in
    16 bits."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(target.stem + f".tmp{os.getpid()}.onnx")
    with quiet():
        quantize_dynamic(
            str(source),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            extra_options={"MatMulConstBOnly": True},
        )
    os.replace(tmp, target)
    return target


def quantize_onnx_static(
    source: Path,
    target: Path,
    feeds: Sequence[Mapping[str, np.ndarray]],
    *,
    reduce_range: bool = False,
) -> Path:
    """Int8 weights and activations (QDQ format), activation ranges calibrated on
    ``feeds`` (the graph inputs of representative calls)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not feeds:
        raise Rejected("static int8 quantization needs calibration inputs; none were found")

    class Reader(CalibrationDataReader):
        def __init__(self, batches: Iterable[Mapping[str, np.ndarray]]):
            self._batches = iter([dict(b) for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    tmp = target.with_name(target.stem + f".tmp{os.getpid()}.onnx")
    with quiet():
        quantize_static(
            str(source),
            str(tmp),
            Reader(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # The softmax and normalization inputs of a transformer do not survive 8-bit
            # activations: keep them in float.
            op_types_to_quantize=["MatMul", "Gemm", "Conv"],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    os.replace(tmp, target)
    return target
