"""The hardware plugin: match the model to the machine it runs on.

Building blocks, imported lazily (``from pipetune.plugins.hardware import get_backend``
does not import torch, ONNX Runtime or OpenVINO until a backend is used):

* :func:`get_backend` / :func:`all_backends` — ``onnxruntime``, ``openvino``,
  ``torch-cuda``, ``tensorrt`` (unverified), ``coreml``;
* :class:`CompiledModel` — a compiled stand-in with the eager module's calling convention;
* :func:`advise_threads`, :func:`estimate_instances`.
"""

from __future__ import annotations

from typing import Any

from pipetune.plugins._lazy import lazy_exports

_EXPORTS = {
    "all_backends": "pipetune.plugins.hardware.backends",
    "get_backend": "pipetune.plugins.hardware.backends",
    "CompiledModel": "pipetune.plugins.hardware.wrappers",
    "advise_threads": "pipetune.plugins.hardware.threads",
    "ThreadPinned": "pipetune.plugins.hardware.threads",
    "capture_calls": "pipetune.plugins.hardware.export",
    "ensure_export": "pipetune.plugins.hardware.export",
    "weights_digest": "pipetune.plugins.hardware.export",
    "compare_outputs": "pipetune.plugins.hardware.fidelity",
}


def __getattr__(name: str) -> Any:
    if name == "estimate_instances":
        from pipetune.plugins.hardware.instances import estimate

        return estimate
    return _exported(name)


_exported = lazy_exports(__name__, _EXPORTS)


__all__ = [*_EXPORTS, "estimate_instances"]
