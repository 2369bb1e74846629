"""OpenVINO on the CPU: read the ONNX export, compile it with an explicit precision hint.

The precision hint is never left to the default: on a CPU with native bf16 (AVX512-BF16,
AMX) OpenVINO otherwise compiles fp32 models to run in bf16, and the outputs drift
(max-abs-diff ~1e-2 on all-MiniLM-L6-v2's hidden states on an AMD EPYC with avx512_bf16,
against ~1e-6 with ``f32``). ``fp32`` sets ``INFERENCE_PRECISION_HINT=f32``; ``bf16`` asks
for bf16 on purpose, as a precision change validated like any other. The hint is read
back from the compiled model: a hint not honoured is a fallback and is refused.

``PERFORMANCE_HINT`` follows the requirement: ``LATENCY`` (one stream, every core on one
request) or ``THROUGHPUT`` (several streams, which pays only with concurrent requests:
the tune step measures both when throughput is the goal).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.registry import Availability, Dependency
from pipetune.plugins.hardware.backends.base import BackendFallback, ExportBackend, check_all
from pipetune.plugins.hardware.export import ExportedModel
from pipetune.plugins.hardware.wrappers import CompiledModel

DEPENDENCIES = (
    Dependency("openvino", "intel", "compiling models for the CPU"),
    Dependency("onnx", "intel", "exporting torch models to ONNX"),
    Dependency("onnxscript", "intel", "torch.onnx's default exporter"),
)
#: pipetune precision -> OpenVINO element type name.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")


@functools.lru_cache(maxsize=1)
def core() -> Any:
    import openvino as ov

    return ov.Core()


def cpu_capabilities() -> tuple[str, ...]:
    """What OpenVINO's CPU plugin says this CPU can do natively (``FP32``, ``BF16``,
    ``INT8``...)."""
    try:
        return tuple(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return ()


class OpenVINOBackend(ExportBackend):
    name = "openvino"
    target = "cpu"
    precisions = ("fp32", "bf16", "fp16")

    def available(self) -> Availability:
        found = check_all(*DEPENDENCIES)
        if not found:
            return found
        try:
            devices = core().available_devices
        except Exception as exc:
            return Availability(False, f"OpenVINO could not start: {exc}")
        if "CPU" not in devices:
            return Availability(False, f"OpenVINO sees no CPU device (devices: {devices})")
        return Availability(True)

    def load(
        self,
        exported: ExportedModel,
        precision: str = "fp32",
        *,
        source: Any = None,
        device: str = "CPU",
        hint: str = "LATENCY",
        threads: int | None = None,
        pinning: bool | None = None,
        spinning: bool | None = None,
        **_: Any,
    ) -> CompiledModel:
        """``spinning=False`` (a thread plan's option for stages that share cores) turns
        CPU pinning off unless ``pinning`` says otherwise."""
        pinning = spinning if pinning is None else pinning
        compiled, details = compile_model(
            str(exported.path), precision, device, hint, threads, pinning=pinning
        )
        names = list(exported.signature.input_names)
        graph_names = {port.get_any_name() for port in compiled.inputs}
        if set(names) != graph_names:
            raise Rejected(f"the exported graph takes {sorted(graph_names)}, not {names}")
        run = request_per_thread(compiled, names)
        return self._compiled(run, exported, precision, source, details, compiled)


def request_per_thread(
    compiled: Any, names: list[str]
) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A ``run`` for a compiled model: feeds by input name, outputs in the graph's order,
    through one infer request per thread (a request is not safe to share between threads)."""
    outputs = list(compiled.outputs)
    local = threading.local()

    def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        results = request.infer(dict(zip(names, feeds, strict=True)))
        return [results[port] for port in outputs]

    return run


def compile_model(
    model: Any,
    precision: str = "fp32",
    device: str = "CPU",
    hint: str = "LATENCY",
    threads: int | None = None,
    *,
    pinning: bool | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Compile ``model`` (a path or an ``ov.Model``) with explicit hints, and read back
    what the compiled model really does. ``threads``: ``INFERENCE_NUM_THREADS``;
    ``pinning=False`` leaves the threads free to move between cores (stages or processes
    that share cores), ``None`` OpenVINO's default."""
    if precision not in PRECISION_HINTS:
        raise Rejected(f"OpenVINO does not offer {precision} (it offers fp32, bf16, fp16)")
    if hint not in PERFORMANCE_HINTS:
        raise Rejected(f"unknown OpenVINO performance hint {hint!r}")
    if precision == "bf16" and device == "CPU" and "BF16" not in cpu_capabilities():
        raise Rejected("this CPU has no native bf16 (OpenVINO reports no BF16 capability)")
    wanted = PRECISION_HINTS[precision]
    from pipetune.plugins.hardware.threads import current_intra_op_threads

    config: dict[str, Any] = {
        "INFERENCE_PRECISION_HINT": wanted,
        "PERFORMANCE_HINT": hint,
        "INFERENCE_NUM_THREADS": int(threads or current_intra_op_threads()),
    }
    if pinning is not None:
        config["ENABLE_CPU_PINNING"] = bool(pinning)
    try:
        ov_model = core().read_model(model) if isinstance(model, str) else model
        compiled = core().compile_model(ov_model, device, config)
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        raise Rejected(f"OpenVINO could not compile the model: {message}") from None
    actual = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    if actual != wanted:
        raise BackendFallback(
            f"OpenVINO was asked for {wanted} inference precision but compiled for {actual}"
        )
    devices = list(compiled.get_property("EXECUTION_DEVICES"))
    if not any(d == device or d.startswith(f"{device}.") for d in devices):
        raise BackendFallback(f"OpenVINO was asked for {device} but runs on {devices}")
    details = {
        "device": device,
        "execution_devices": devices,
        "inference_precision": actual,
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
    }
    if isinstance(model, str):
        details["model_path"] = model  # what a thread plan recompiles from
    if pinning is not None:
        details["cpu_pinning"] = bool(compiled.get_property("ENABLE_CPU_PINNING"))
    return compiled, details
