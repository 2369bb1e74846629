"""``vision.dali_decode``: NVIDIA DALI decodes, resizes and normalizes a batch in one
pipeline (nvJPEG on a GPU, its CPU operators otherwise). Lossy: its resize and colour
conversion differ from OpenCV's. Also holds what the nvJPEG decode shares with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.vision.blocks import CLASSIFY
from pipetune.plugins.vision.changes.common import Materialize, build_candidate, replace_stage
from pipetune.plugins.vision.dali import DaliDecoder
from pipetune.plugins.vision.gpu_decode import NvJpegDecoder
from pipetune.plugins.vision.recognize import inference_after

ID = "vision.dali_decode"


@dataclass(frozen=True)
class DaliDecodeParams(ChangeParams):
    device: str = "cpu"
    threads: int = 2
    max_batch: int = 16
    normalize: bool = True


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return replace_stage(
        change,
        pipeline,
        lambda stage, params: accelerated_stage(pipeline, stage, change.proposal, params),
    )


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_accelerated(proposal, pipeline, context, materialize)


def _normalization_after(pipeline: Pipeline, stage: Stage) -> Any:
    follower = inference_after(pipeline, stage.name)
    if follower is not None and follower.meta.get("block") == CLASSIFY:
        return (tuple(follower.slots["mean"]), tuple(follower.slots["std"]))
    return None


def accelerated_stage(
    pipeline: Pipeline, stage: Stage, proposal: str, params: dict[str, Any]
) -> Stage:
    normalize = _normalization_after(pipeline, stage) if params.get("normalize", True) else None
    if proposal == ID:
        decoder: Any = DaliDecoder(
            device=params.get("device", "cpu"),
            threads=int(params.get("threads", 2)),
            max_batch=int(params.get("max_batch", 16)),
            normalize=normalize,
        )
    else:
        decoder = NvJpegDecoder(device=params.get("device", "cuda"), normalize=normalize)
    return stage.with_slots(decoder=decoder)


def tune_accelerated(
    proposal: Proposal, pipeline: Pipeline, context: TuneContext, materialize: Materialize
) -> Tuned:
    """Run the accelerated decoder on the tuning split and check its fidelity."""
    if proposal.status != "proposed":
        raise Rejected(proposal.reason or f"{proposal.id} is unavailable here")
    params = dict(proposal.params)
    candidate = build_candidate(proposal, pipeline, params, materialize)
    try:
        outputs = context.outputs(candidate)
    except Exception as exc:
        raise Rejected(
            f"{proposal.id} failed on the tuning split: {type(exc).__name__}: {exc}"
        ) from None
    fidelity = context.fidelity(outputs, proposal.fidelity_kind)
    if not fidelity.passed:
        raise Rejected(
            f"{proposal.id}: {fidelity.metric} {fidelity.value:.4f} below {fidelity.threshold:.4f}"
        )
    return Tuned(params=params, notes={"fidelity": fidelity.to_dict()})


CHANGE = ChangeType(ID, DaliDecodeParams, materialize, tune, lossy=True)
