"""What the hardware plugin's change types share: one params schema (the slot and model
kind, the candidates to try, the candidate chosen) and one materialize (the slot's model
replaced by the chosen candidate, built from the stored artifacts: no search and no
export; a missing artifact is an error, never a silent re-export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.results import Change
from pipetune.plugins.hardware.apply import Candidate, build_torch_value
from pipetune.plugins.hardware.export import ExportedModel
from pipetune.plugins.hardware.recognize import ONNX_PATH, ONNX_PROTO, ONNX_SESSION, TORCH
from pipetune.plugins.hardware.wrappers import original_module, rewrap


@dataclass(frozen=True)
class HardwareParams(ChangeParams):
    """``slot`` and ``kind`` name the model; ``candidates`` (backend, precision, options)
    are what tune tries; ``candidate`` (with its ``backend`` and ``precision``) is what it
    chose and what materialize builds."""

    slot: str
    kind: str = "torch"
    candidates: tuple[dict[str, Any], ...] = ()
    candidate: dict[str, Any] | None = None
    backend: str | None = None
    precision: str | None = None
    advice: dict[str, Any] | None = None
    cross_target: bool = False


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
    assert isinstance(slot, str)  # a key of stage.slots

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
        from pipetune.plugins.hardware.onnx_models import candidate_replacement

        model_file = artifact("model")
        if model_file is None:
            raise PipelineError(f"change {change.proposal} has no model artifact")
        value = candidate_replacement(kind, candidate, model_file)
    else:
        raise PipelineError(f"change {change.proposal}: unknown model kind {kind!r}")
    note = {"change": change.proposal, "slot": slot, "candidate": candidate.to_dict()}
    history = [*stage.meta.get("hardware", ()), note]
    value = rewrap(stage.slots[slot], value)  # keep another plugin's proxy around it
    new_stage = stage.with_slots(**{slot: value}).noted(hardware=history)
    return pipeline.replace(stage.name, new_stage)
