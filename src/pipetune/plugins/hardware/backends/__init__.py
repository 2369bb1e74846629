"""The hardware backends (``register_backends``): one module per runtime, each importing
its library lazily so that this package imports without any of them."""

from __future__ import annotations

from pipetune.core.kernel.registry import Backend


def all_backends() -> list[Backend]:
    from pipetune.plugins.hardware.backends.coreml import CoreMLBackend
    from pipetune.plugins.hardware.backends.onnxruntime import OnnxRuntimeBackend
    from pipetune.plugins.hardware.backends.openvino import OpenVINOBackend
    from pipetune.plugins.hardware.backends.tensorrt import TensorRTBackend
    from pipetune.plugins.hardware.backends.torch_cuda import TorchCudaBackend

    return [
        OnnxRuntimeBackend(),
        OpenVINOBackend(),
        TorchCudaBackend(),
        TensorRTBackend(),
        CoreMLBackend(),
    ]


def get_backend(name: str) -> Backend:
    for backend in all_backends():
        if backend.name == name:
            return backend
    from pipetune.core.kernel.errors import ConfigError

    known = ", ".join(b.name for b in all_backends())
    raise ConfigError(f"no hardware backend named {name!r} (known: {known})")
