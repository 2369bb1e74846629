"""Finding models in stage slots: torch modules, ONNX Runtime sessions, ONNX files.

Recognition never imports a library: an object can only be a torch module if torch is
already imported (the user built the module), and likewise for onnxruntime and onnx.
A slot already holding one of this plugin's stand-ins (a compiled model, a GPU copy, a
thread-pinned module) is recognized with what was done to it, so a later proposal starts
again from the eager module behind it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.hardware.wrappers import behind_proxies, original_module

TORCH, ONNX_SESSION, ONNX_PATH, ONNX_PROTO = "torch", "onnx_session", "onnx_path", "onnx_model"
#: Stage kinds whose model is called through a generation loop: no graph export.
GENERATE_KINDS = ("generate",)
#: Stage kinds that never hold an inference model worth compiling.
SKIP_KINDS = ("tokenize", "decode", "preprocess", "postprocess")


@dataclass(frozen=True)
class ModelRef:
    """A model found in a stage slot."""

    stage: str
    slot: str
    kind: str  # torch | onnx_session | onnx_path | onnx_model
    injected: bool  # the stage function receives the slot, so replacing it changes what runs
    value: Any  # what the slot holds now
    stage_kind: str = "other"

    @property
    def module(self) -> Any:
        """The eager module (behind any stand-in) for torch models."""
        return original_module(self.value) if self.kind == TORCH else None

    @property
    def applied(self) -> dict[str, Any] | None:
        """What this plugin already did to the slot (backend, precision), if anything."""
        if self.kind != TORCH or behind_proxies(self.value) is self.module:
            return None
        value = behind_proxies(self.value)
        describe = getattr(value, "describe", None)
        if callable(describe):
            return dict(describe())
        threads = getattr(value, "threads", None)
        return {"backend": "torch", "precision": "fp32", "threads": threads}

    @property
    def generates(self) -> bool:
        return self.stage_kind in GENERATE_KINDS

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "stage": self.stage,
            "slot": self.slot,
            "kind": self.kind,
            "injected": self.injected,
        }
        if self.kind == TORCH:
            facts.update(describe_module(self.module))
            if self.applied:
                facts["applied"] = self.applied
        elif self.kind == ONNX_SESSION:
            facts.update(describe_session(self.value))
        elif self.kind == ONNX_PATH:
            facts["path"] = str(self.value)
            facts["size_mb"] = round(os.path.getsize(self.value) / 2**20, 2)
        return facts


def find_models(pipeline: Pipeline) -> list[ModelRef]:
    """Every model in every stage's slots, in pipeline order."""
    refs = []
    for stage in pipeline.stages:
        refs.extend(models_in_stage(stage))
    return refs


def models_in_stage(stage: Stage) -> list[ModelRef]:
    refs: list[ModelRef] = []
    if stage.kind in SKIP_KINDS:
        return refs
    for slot, value in stage.slots.items():
        kind = model_kind(value)
        if kind is not None:
            refs.append(ModelRef(stage.name, slot, kind, stage.injects(slot), value, stage.kind))
    return refs


def main_model(stage: Stage) -> ModelRef | None:
    """The model a stage-level proposal targets: the largest injected one."""
    refs = [ref for ref in models_in_stage(stage) if ref.injected]
    if not refs:
        return None
    return max(refs, key=lambda ref: describe_module(ref.module).get("parameters", 0))


def model_kind(value: Any) -> str | None:
    if is_torch_module(original_module(value)):
        return TORCH
    ort = sys.modules.get("onnxruntime")
    if ort is not None and isinstance(value, ort.InferenceSession):
        return ONNX_SESSION
    onnx = sys.modules.get("onnx")
    if onnx is not None and isinstance(value, onnx.ModelProto):
        return ONNX_PROTO
    if isinstance(value, str | Path) and str(value).endswith(".onnx") and Path(value).is_file():
        return ONNX_PATH
    return None


def is_torch_module(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def describe_module(module: Any) -> dict[str, Any]:
    """Class, size, dtype and device of a torch module (no forward pass)."""
    if not is_torch_module(module):
        return {}
    parameters = list(module.parameters())
    count = sum(p.numel() for p in parameters)
    size = sum(p.numel() * p.element_size() for p in parameters)
    size += sum(b.numel() * b.element_size() for b in module.buffers())
    first = parameters[0] if parameters else None
    return {
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "parameters": count,
        "size_mb": round(size / 2**20, 2),
        "dtype": str(first.dtype).removeprefix("torch.") if first is not None else None,
        "device": str(first.device) if first is not None else "cpu",
        "training": bool(module.training),
        "quantized": any("quantized" in type(m).__module__ for m in module.modules()),
    }


def describe_session(session: Any) -> dict[str, Any]:
    options = session.get_session_options()
    return {
        "providers": list(session.get_providers()),
        "graph_optimization": str(options.graph_optimization_level).rsplit(".", 1)[-1],
        "intra_op_threads": options.intra_op_num_threads,
        "inputs": [i.name for i in session.get_inputs()],
        "outputs": [o.name for o in session.get_outputs()],
    }


def deployment_targets(pipeline: Pipeline) -> tuple[str, ...]:
    """Targets other than this machine the user deploys to (``apple``, ``nvidia``), from
    ``Pipeline.meta["targets"]`` or ``PIPETUNE_TARGETS`` (comma-separated): the plugin
    then prepares and checks a package for them, and defers the final validation."""
    declared = pipeline.meta.get("targets") or os.environ.get("PIPETUNE_TARGETS", "")
    if isinstance(declared, str):
        declared = declared.split(",")
    return tuple(t.strip().lower() for t in declared if str(t).strip())


def hints_for(stage: Stage) -> list[str]:
    """How to declare ``stage`` more fully so the hardware changes can apply to it."""
    hints = []
    for ref in models_in_stage(stage):
        if not ref.injected:
            hints.append(
                f"stage {stage.name!r}: its function does not take the {ref.slot!r} slot "
                f"(the model is captured in a closure); accept `{ref.slot}` as a keyword "
                "argument to unlock compilation (ONNX Runtime, OpenVINO) and int8"
            )
    if stage.kind == "inference" and not models_in_stage(stage):
        hints.append(
            f"stage {stage.name!r} runs inference but declares no model slot; declare it "
            "(slots={'model': model}) to unlock compilation and reduced precision"
        )
    return hints
