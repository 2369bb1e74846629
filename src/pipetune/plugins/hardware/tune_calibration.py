"""Calibration data for static int8 quantization: graph inputs from the loop's calibration
split (the domain plugin's ``calibration_inputs``, else the calls the stage makes on it),
the tuning split's captured calls only when that gives none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.hardware.export import CapturedCall, capture_calls
from pipetune.plugins.hardware.signature import CallSignature, is_tensor

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext


def calibration_feeds(
    context: TuneContext,
    pipeline: Pipeline,
    stage: Stage,
    eager_stage: Stage,
    module: Any,
    signature: CallSignature,
    fallback: Sequence[CapturedCall],
) -> tuple[list[dict[str, Any]], str]:
    """Graph inputs for static int8 calibration, from the loop's calibration split
    (``context.calibration``: never evaluated on): the domain plugin's
    ``calibration_inputs`` for it (the nlp plugin gives the model's own inputs: mappings of
    ``input_ids`` / ``attention_mask`` tensors; anything else is run through the stage to
    see what the model receives), else the calls the stage makes on it; the tuning
    split's captured calls only when the calibration split gives none."""
    feeds = _feeds(signature, _hook_calls(context, pipeline, stage, eager_stage, module))
    if feeds:
        return feeds, "the calibration_inputs hook"
    try:
        own = context.stage_inputs(pipeline, stage.name, context.calibration.items)[:64]
        feeds = _feeds(signature, _calls_on(module, eager_stage, own))
    except Exception:
        feeds = []
    if feeds:
        return feeds, "the calibration split"
    return _feeds(signature, fallback), "the tuning split"


def _hook_calls(
    context: TuneContext, pipeline: Pipeline, stage: Stage, eager_stage: Stage, module: Any
) -> list[CapturedCall]:
    """The module calls the ``calibration_inputs`` hook gives for the calibration split:
    its tensors (or mappings of them) as they are, anything else run through the stage."""
    calls: list[CapturedCall] = []
    try:
        items = context.pm.hook.calibration_inputs(
            pipeline=pipeline, stage=stage.name, workload=context.calibration
        )
    except Exception:  # a domain plugin's failure costs the calibration data, not the trial
        items = None
    for item in list(items or ())[:64]:
        if isinstance(item, Mapping) and any(is_tensor(v) for v in item.values()):
            calls.append(CapturedCall((), dict(item), None))
        elif is_tensor(item):
            calls.append(CapturedCall((item,), {}, None))
    if items and not calls:
        try:
            calls = _calls_on(module, eager_stage, list(items)[:64])
        except Exception:
            calls = []
    return calls


def _calls_on(module: Any, eager_stage: Stage, items: Sequence[Any]) -> list[CapturedCall]:
    """The module's calls while the eager stage runs on ``items``."""
    with capture_calls(module, limit=64) as got:
        for item in items:
            eager_stage(item)
    return list(got)


def _feeds(signature: CallSignature, calls: Sequence[CapturedCall]) -> list[dict[str, Any]]:
    feeds = []
    for call in calls:
        try:
            arrays = signature.feeds(call.args, call.kwargs)
        except PipelineError:  # a call the graph was not exported for: not calibration data
            continue
        feeds.append(dict(zip(signature.input_names, arrays, strict=True)))
    return feeds
