"""Building the slot value for a change: shared by the tune step (on candidates) and by
every hardware change type's materialize (from a recipe's parameters and artifacts, with
no search and no export: a missing artifact is an error, never a silent re-export)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.results import Change
from pipetune.plugins.hardware.export import CapturedCall, ExportedModel
from pipetune.plugins.hardware.recognize import ONNX_PATH, ONNX_PROTO, ONNX_SESSION, TORCH
from pipetune.plugins.hardware.wrappers import original_module

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
    from pipetune.plugins.hardware.backends import get_backend

    options = dict(candidate.options)
    if candidate.needs_export:
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
    if candidate.backend == "torch-cuda":
        from pipetune.plugins.hardware.backends.torch_cuda import TorchCudaBackend

        return TorchCudaBackend().compile(module, example, candidate.precision, **options)
    if candidate.backend == "coreml":
        from pipetune.plugins.hardware.backends.coreml import CoreMLBackend, load_package

        if package is not None:
            return CoreMLBackend().load(load_package(package), source=module)
        if example is None:
            raise PipelineError("Core ML needs an example call or a converted package")
        return CoreMLBackend().compile(
            module, example, candidate.precision, store=store, name=name, **options
        )
    if candidate.backend == "torch":
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
    raise Rejected(f"no way to build {candidate.label} here")


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    """The pipeline with the change's stage slot replaced, from stored parameters and
    artifacts. Deterministic; never exports; never mutates ``pipeline``."""
    params = change.params
    stage = pipeline.stage(change.stage)
    slot = params.get("slot")
    if slot not in stage.slots:
        raise PipelineError(
            f"change {change.proposal} targets slot {slot!r} of stage {stage.name!r}, "
            f"which has slots: {', '.join(stage.slots) or 'none'}"
        )
    candidate = Candidate.from_dict(params["candidate"])
    kind = params.get("kind", TORCH)
    artifacts_dir = Path(artifacts_dir)

    def artifact(name: str) -> Path | None:
        relative = change.artifacts.get(name)
        if relative is None:
            return None
        path = artifacts_dir / relative
        if not path.exists():
            raise PipelineError(
                f"change {change.proposal} needs artifact {relative!r}, missing from "
                f"{artifacts_dir}: re-run optimize to rebuild it"
            )
        return path

    if kind == TORCH:
        module = original_module(stage.slots[slot])
        folder = artifact("export")
        exported = ExportedModel.load(folder) if folder is not None else None
        if candidate.needs_export and exported is None:
            raise PipelineError(f"change {change.proposal} has no exported model artifact")
        value = build_torch_value(
            candidate,
            module,
            exported=exported,
            model_file=artifact("model"),
            package=artifact("package"),
        )
    elif kind in (ONNX_SESSION, ONNX_PATH, ONNX_PROTO):
        from pipetune.plugins.hardware.onnx_models import build_replacement

        model_file = artifact("model")
        if model_file is None:
            raise PipelineError(f"change {change.proposal} has no model artifact")
        value = build_replacement(
            kind,
            candidate.backend,
            model_file,
            candidate.options.get("threads"),
            candidate.options.get("hint", "LATENCY"),
        )
    else:
        raise PipelineError(f"change {change.proposal}: unknown model kind {kind!r}")
    note = {"change": change.proposal, "slot": slot, "candidate": candidate.to_dict()}
    history = [*stage.meta.get("hardware", ()), note]
    new_stage = stage.with_slots(**{slot: value}).noted(hardware=history)
    return pipeline.replace(stage.name, new_stage)
