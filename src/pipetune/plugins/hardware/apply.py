"""Building the slot value for a change: shared by the tune step (on candidates) and by
the hardware change types' materialize (:mod:`.changes.common`, from a recipe's parameters
and artifacts, with no search and no export)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.plugins.hardware.export import CapturedCall, ExportedModel

#: Backends that run the ONNX export.
EXPORT_BACKENDS = ("onnxruntime", "openvino", "tensorrt")


@dataclass(frozen=True)
class Candidate:
    """One way to run a model: a backend, a precision and the backend's options."""

    backend: str  # onnxruntime | openvino | tensorrt | torch-cuda | torch | coreml
    precision: str = "fp32"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        extra = []
        if self.options.get("quantization"):
            extra.append(str(self.options["quantization"]))
        if self.options.get("hint"):
            extra.append(str(self.options["hint"]).lower())
        if self.options.get("threads") and self.backend == "torch":
            extra.append(f"{self.options['threads']} threads")
        if self.options.get("cuda_graphs"):
            extra.append("CUDA graphs")
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"{self.backend} {self.precision}{suffix}"

    @property
    def needs_export(self) -> bool:
        return self.backend in EXPORT_BACKENDS

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(data["backend"], data.get("precision", "fp32"), dict(data.get("options", {})))


def build_torch_value(
    candidate: Candidate,
    module: Any,
    *,
    exported: ExportedModel | None = None,
    model_file: Path | None = None,
    example: CapturedCall | None = None,
    calibration: Any = None,
    store: ArtifactStore | None = None,
    package: Path | None = None,
    name: str = "model",
) -> Any:
    """The stand-in for ``module`` that ``candidate`` describes (``module`` untouched)."""
    options = dict(candidate.options)
    if candidate.needs_export:
        return _load_exported(candidate, module, exported, options, model_file, calibration)
    if candidate.backend == "torch-cuda":
        from pipetune.plugins.hardware.backends.torch_cuda import TorchCudaBackend

        return TorchCudaBackend().compile(module, example, candidate.precision, **options)
    if candidate.backend == "coreml":
        return _build_coreml(candidate, module, options, example, store, package, name)
    if candidate.backend == "torch":
        return _build_torch(candidate, module, options)
    raise Rejected(f"no way to build {candidate.label} here")


def _load_exported(
    candidate: Candidate,
    module: Any,
    exported: ExportedModel | None,
    options: dict[str, Any],
    model_file: Path | None,
    calibration: Any,
) -> Any:
    """Load the ONNX export on the candidate's backend (ONNX Runtime, OpenVINO, TensorRT),
    refusing when the backend is unavailable here."""
    from pipetune.plugins.hardware.backends import get_backend

    if exported is None:
        raise PipelineError(f"{candidate.label} needs the exported model")
    backend = get_backend(candidate.backend)
    status = backend.available()
    if not status:
        raise Rejected(f"{candidate.backend} is unavailable: {status.reason}")
    if model_file is not None:
        options["model_file"] = model_file
    if calibration is not None:
        options["calibration"] = calibration
    return backend.load(exported, candidate.precision, source=module, **options)  # type: ignore[attr-defined]


def _build_coreml(
    candidate: Candidate,
    module: Any,
    options: dict[str, Any],
    example: CapturedCall | None,
    store: ArtifactStore | None,
    package: Path | None,
    name: str,
) -> Any:
    """A Core ML model: loaded from a converted package, else converted from an example
    call."""
    from pipetune.plugins.hardware.backends.coreml import CoreMLBackend, load_package

    if package is not None:
        return CoreMLBackend().load(load_package(package), source=module)
    if example is None:
        raise PipelineError("Core ML needs an example call or a converted package")
    return CoreMLBackend().compile(
        module, example, candidate.precision, store=store, name=name, **options
    )


def _build_torch(candidate: Candidate, module: Any, options: dict[str, Any]) -> Any:
    """The module itself in torch: a dynamic int8 or cast copy for another precision,
    pinned to the candidate's thread count when it sets one."""
    from pipetune.plugins.hardware.precision import torch_dynamic_int8
    from pipetune.plugins.hardware.threads import ThreadPinned

    value = module
    if candidate.precision == "int8":
        value = torch_dynamic_int8(module)
    elif candidate.precision != "fp32":
        from pipetune.plugins.hardware.precision import cast_copy

        value = cast_copy(module, candidate.precision)
    if options.get("threads"):
        value = ThreadPinned(value, int(options["threads"]))
    return value
