"""The tune step: build each candidate, check it against the eager module, time it against
the current stage, and keep the fastest one that holds fidelity.

For a proposal on a stage holding a torch module:

1. the module's real calls are captured from the stage on the tuning split (forward
   hooks, removed after);
2. each candidate (a backend at a precision) is built; export-based ones share one ONNX
   export, an artifact keyed by weights, input signature and library versions. A backend
   that silently fell back (ONNX Runtime not on the asked provider, OpenVINO not at the
   asked precision) is out, with the reason;
3. module check: the candidate's outputs on the captured calls against the eager ones
   (max-abs-diff scaled by the output magnitude, row cosine, arg-max agreement). An fp32
   candidate must agree to within :data:`FP32_TOLERANCE`; reduced precisions are judged
   by the pipeline's own fidelity below;
4. timing: the stage with each candidate and the current stage, interleaved round by
   round on the same inputs (batch 1, or batches when the requirement is throughput and
   the stage has a batch function). A candidate not faster than the current stage is out;
5. fidelity: from the fastest down, the candidate pipeline's outputs on the tuning split
   against the original pipeline's (the output kind's metric: label agreement...), with
   the remaining fidelity budget as threshold. The first that passes is the result.
   Stages that generate are left to the validator, which asks the domain plugin
   (``assess_change``: perplexity for quantized LLM weights).

Everything measured goes into ``Tuned.notes["candidates"]``, including the losers and why.

This module builds and checks the candidates (steps 1-3); timing and the choice (steps 4-5)
live in :mod:`.tune_choice`, static int8 calibration data in :mod:`.tune_calibration`, and
the tune steps that finish on another machine (Core ML, TensorRT) in :mod:`.tune_deferred`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import MissingDependency, PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.hardware.apply import Candidate, build_torch_value
from pipetune.plugins.hardware.backends.base import BackendFallback
from pipetune.plugins.hardware.export import (
    CapturedCall,
    ExportedModel,
    capture_calls,
    ensure_export,
)
from pipetune.plugins.hardware.fidelity import OutputAgreement, compare_outputs
from pipetune.plugins.hardware.recognize import GENERATE_KINDS, ONNX_SESSION, TORCH
from pipetune.plugins.hardware.signature import CallSignature
from pipetune.plugins.hardware.tune_calibration import calibration_feeds
from pipetune.plugins.hardware.tune_choice import (
    ROUNDS,
    CandidateResult,
    one_line,
    time_and_choose,
    timing_cap,
)
from pipetune.plugins.hardware.wrappers import original_module

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Requirements

#: Largest scaled max-abs-diff an fp32 backend may show (graph rewrites reorder float
#: sums: ~1e-6 is normal; a bf16 fallback shows ~1e-2).
FP32_TOLERANCE = 1e-4
MAX_CAPTURE = 16


def tune_model(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Tune a proposal's candidates on this machine: a torch module's
    (:func:`tune_torch`) or an ONNX model's (:func:`tune_onnx`)."""
    if proposal.params.get("kind", TORCH) == TORCH:
        return tune_torch(proposal, pipeline, context.requirements, context)
    return tune_onnx(proposal, pipeline, context.requirements, context)


# -- torch modules --------------------------------------------------------------------------


@dataclass(frozen=True)
class _TorchTarget:
    """The stage being tuned, its slot, the eager module in it and the module's real calls."""

    stage: Stage
    eager_stage: Stage
    slot: str
    module: Any
    calls: list[CapturedCall]


@dataclass
class _SharedExport:
    """The one ONNX export the export-based candidates share: made when the first of them
    needs it; a failure is kept and rules out every candidate that needs the export."""

    exported: ExportedModel | None = None
    error: str | None = None

    def require(self, candidate: Candidate, target: _TorchTarget, context: TuneContext) -> None:
        """Export on first need; :class:`Rejected` when ``candidate`` needs a failed one."""
        if candidate.needs_export and self.exported is None and self.error is None:
            try:
                self.exported = ensure_export(
                    target.module,
                    target.calls[0],
                    context.artifacts,
                    name=target.slot,
                    log=context.log,
                )
            except Rejected as exc:
                self.error = str(exc)
        if candidate.needs_export and self.error:
            raise Rejected(self.error)


def tune_torch(
    proposal: Proposal, pipeline: Pipeline, requirements: Requirements, context: TuneContext
) -> Tuned:
    stage, slot, module = stage_module(proposal, pipeline)
    eager_stage = stage.with_slots(**{slot: module})
    generates = stage.kind in GENERATE_KINDS
    inputs = stage_inputs(context, pipeline, stage)
    calls = capture(module, eager_stage, inputs[:MAX_CAPTURE], slot)
    torch_target = _TorchTarget(stage, eager_stage, slot, module, calls)
    replayable = _replayable(module, calls, slot)
    candidates = [
        with_threads(Candidate.from_dict(c), pipeline, stage)
        for c in proposal.params.get("candidates", ())
    ]
    if not candidates:
        raise Rejected(f"{proposal.id} on {stage.name!r}: no candidate backend to try")

    export = _SharedExport()
    results: list[CandidateResult] = []
    for candidate in candidates:
        result = CandidateResult(candidate)
        results.append(result)
        _build_torch_candidate(result, torch_target, export, pipeline, context)
        if result.status != "ok" or not replayable:
            continue
        _check_against_eager(result, calls)
        if result.status != "failed":
            context.log(f"{candidate.label}: built in {result.build_s:.1f} s")

    if export.error and all(r.status != "ok" for r in results):
        raise Rejected(export.error)
    chosen = time_and_choose(
        proposal, pipeline, stage, slot, inputs, results, requirements, context, generates
    )
    return _torch_tuned(chosen, results, export.exported, slot, inputs, generates, context)


def _build_torch_candidate(
    result: CandidateResult,
    target: _TorchTarget,
    export: _SharedExport,
    pipeline: Pipeline,
    context: TuneContext,
) -> None:
    """Build ``result``'s candidate into ``result.value`` (with static int8 calibration
    data when it asks for it); a failure sets its status and reason instead."""
    candidate = result.candidate
    started = time.perf_counter()
    try:
        export.require(candidate, target, context)
        exported = export.exported
        calibration = None
        if candidate.options.get("quantization") == "static" and exported is not None:
            calibration, source = calibration_feeds(
                context,
                pipeline,
                target.stage,
                target.eager_stage,
                target.module,
                exported.signature,
                target.calls,
            )
            result.details["calibration"] = {"source": source, "calls": len(calibration)}
            context.log(f"static int8: {len(calibration)} calibration calls from {source}")
        result.value = build_torch_value(
            candidate,
            target.module,
            exported=exported,
            example=target.calls[0],
            calibration=calibration,
            store=context.artifacts,
            name=target.slot,
        )
    except BackendFallback as exc:
        result.status, result.reason = "fallback", f"fell back: {exc}"
    except MissingDependency as exc:
        result.status, result.reason = "unavailable", str(exc)
    except (Rejected, PipelineError) as exc:
        result.status, result.reason = "failed", str(exc)
    except Exception as exc:  # a backend's own error: this candidate is out, not the run
        result.status, result.reason = "failed", one_line(exc)
    result.build_s = time.perf_counter() - started


def _check_against_eager(result: CandidateResult, calls: Sequence[CapturedCall]) -> None:
    """Step 3: the built candidate's outputs on the captured calls against the eager ones;
    an fp32 candidate outside :data:`FP32_TOLERANCE` is a ``mismatch``."""
    try:
        result.module = module_agreement(result.value, calls)
    except Exception as exc:
        result.status, result.reason = "failed", f"on the captured calls: {one_line(exc)}"
        return
    if result.candidate.precision == "fp32" and not result.module.within(FP32_TOLERANCE):
        result.status = "mismatch"
        result.reason = (
            f"outputs differ from eager: max-abs-diff {result.module.max_abs_diff:.2e} "
            f"(output scale {result.module.scale:.3g})"
        )


def _torch_tuned(
    chosen: CandidateResult,
    results: Sequence[CandidateResult],
    exported: ExportedModel | None,
    slot: str,
    inputs: Sequence[Any],
    generates: bool,
    context: TuneContext,
) -> Tuned:
    """The tune result for the chosen candidate: its params, the artifacts it needs
    (the export, a converted model, a Core ML package) and every candidate's figures."""
    artifacts: dict[str, str] = {}
    if chosen.candidate.needs_export and exported is not None:
        artifacts["export"] = context.artifacts.relative(exported.folder)
        model_name = getattr(chosen.value, "details", {}).get("model")
        if model_name and model_name != "model.onnx":
            artifacts["model"] = context.artifacts.relative(exported.folder / model_name)
    package = getattr(chosen.value, "details", {}).get("package")
    if chosen.candidate.backend == "coreml" and package:
        artifacts["package"] = context.artifacts.relative(Path(package).parent)
    notes: dict[str, Any] = {
        "candidates": [r.to_dict() for r in results],
        "chosen": chosen.candidate.label,
        "timing": {"inputs": len(inputs[: timing_cap(generates)]), "rounds": ROUNDS},
    }
    if exported is not None:
        notes["export"] = dict(exported.info)
    if generates:
        notes["fidelity"] = (
            "left to the validator: assess_change (the llm plugin's perplexity) for a "
            "generate stage"
        )
    return _tuned(chosen, slot, TORCH, artifacts, notes)


def capture(
    module: Any, eager_stage: Stage, inputs: Sequence[Any], slot: str
) -> list[CapturedCall]:
    """The module's real calls when the stage runs on ``inputs``."""
    with capture_calls(module, limit=MAX_CAPTURE) as calls:
        for item in inputs:
            eager_stage(item)
            if len(calls) >= MAX_CAPTURE:
                break
    if not calls:
        raise Rejected(
            f"stage {eager_stage.name!r} never called its {slot!r} module on the tuning inputs"
        )
    return list(calls)


def module_agreement(value: Any, calls: Sequence[CapturedCall]) -> OutputAgreement:
    import torch

    with torch.no_grad():
        outputs = [value(*call.args, **call.kwargs) for call in calls]
    return compare_outputs([call.output for call in calls], outputs)


# -- ONNX models ----------------------------------------------------------------------------


def tune_onnx(
    proposal: Proposal, pipeline: Pipeline, requirements: Requirements, context: TuneContext
) -> Tuned:
    from pipetune.plugins.hardware.onnx_models import (
        RecordingSession,
        candidate_replacement,
        int8_variant,
        model_bytes,
        stored_source,
    )

    stage = pipeline.stage(proposal.stage)
    slot = proposal.params["slot"]
    kind = proposal.params["kind"]
    value = stage.slots[slot]
    inputs = stage_inputs(context, pipeline, stage)
    _, source = stored_source(context.artifacts, model_bytes(value, kind))
    recorder = None
    if kind == ONNX_SESSION:
        recorder = RecordingSession(value)
        recording = stage.with_slots(**{slot: recorder})
        for item in inputs[:MAX_CAPTURE]:
            recording(item)
    results, files = [], {}
    for data in proposal.params.get("candidates", ()):
        candidate = with_threads(Candidate.from_dict(data), pipeline, stage)
        result = CandidateResult(candidate)
        results.append(result)
        started = time.perf_counter()
        try:
            model_file = int8_variant(source) if candidate.precision == "int8" else source
            files[candidate.label] = model_file
            result.value = candidate_replacement(kind, candidate, model_file)
        except BackendFallback as exc:
            result.status, result.reason = "fallback", f"fell back: {exc}"
            continue
        except (Rejected, PipelineError) as exc:
            result.status, result.reason = "failed", str(exc)
            continue
        except Exception as exc:
            result.status, result.reason = "failed", one_line(exc)
            continue
        finally:
            result.build_s = time.perf_counter() - started
        if recorder is not None and recorder.feeds:
            outputs = [result.value.run(None, feed) for feed in recorder.feeds]
            result.module = compare_outputs(recorder.outputs, outputs)
            if candidate.precision == "fp32" and not result.module.within(FP32_TOLERANCE):
                result.status = "mismatch"
                result.reason = f"outputs differ: max-abs-diff {result.module.max_abs_diff:.2e}"
    chosen = time_and_choose(
        proposal, pipeline, stage, slot, inputs, results, requirements, context, False
    )
    return _tuned(
        chosen,
        slot,
        kind,
        artifacts={"model": context.artifacts.relative(files[chosen.candidate.label])},
        notes={"candidates": [r.to_dict() for r in results], "chosen": chosen.candidate.label},
    )


# -- helpers --------------------------------------------------------------------------------


def _tuned(
    chosen: CandidateResult,
    slot: str,
    kind: str,
    artifacts: dict[str, str],
    notes: dict[str, Any],
) -> Tuned:
    """The tune result naming ``chosen``'s candidate (backend, precision, options) for the
    model of ``kind`` in ``slot``, with the artifacts it needs and its measured speedup."""
    return Tuned(
        params={
            "slot": slot,
            "kind": kind,
            "candidate": chosen.candidate.to_dict(),
            "backend": chosen.candidate.backend,
            "precision": chosen.candidate.precision,
        },
        artifacts=artifacts,
        notes=notes,
        est_stage_speedup=chosen.speedup,
    )


def stage_module(proposal: Proposal, pipeline: Pipeline) -> tuple[Stage, str, Any]:
    """The proposal's stage, its slot, and the eager module in that slot."""
    stage = pipeline.stage(proposal.stage)
    slot = proposal.params.get("slot")
    if slot not in stage.slots:
        raise Rejected(f"stage {stage.name!r} has no slot {slot!r} any more")
    assert isinstance(slot, str)  # a key of stage.slots
    return stage, slot, original_module(stage.slots[slot])


def stage_inputs(context: TuneContext, pipeline: Pipeline, stage: Stage) -> list[Any]:
    inputs = context.stage_inputs(pipeline, stage.name)
    if not inputs:
        raise Rejected("the tuning split is empty: nothing to measure on")
    return inputs


def _replayable(module: Any, calls: Sequence[CapturedCall], slot: str) -> bool:
    """Calls with only tensors and plain values can be replayed on a candidate; a call
    carrying state (a KV cache object that the call updates in place) cannot."""
    try:
        for call in calls:
            CallSignature.capture(module, call.args, call.kwargs, slot)
    except (Rejected, PipelineError):
        return False
    return True


def with_threads(candidate: Candidate, pipeline: Pipeline, stage: Stage) -> Candidate:
    """A compiled backend's thread settings: the stage's thread plan when one is in force,
    else the intra-op count this process runs torch with (so a trial measures the backend,
    not a thread change); in a pipeline of several stages, idle pool threads that do not
    spin (a spinning pool takes the cores the next stage runs on). Recorded in the change,
    so materialize builds the same thing."""
    from pipetune.core.runtime.threads import stage_plan
    from pipetune.plugins.hardware.threads import current_intra_op_threads

    if candidate.backend not in ("onnxruntime", "openvino"):
        return candidate
    plan = stage_plan(stage) or {}
    options = dict(candidate.options)
    options.setdefault("threads", plan.get("threads") or current_intra_op_threads())
    spinning = plan.get("spinning")
    if spinning is None and len(pipeline.stages) > 1:
        spinning = False
    if spinning is not None:
        options.setdefault("spinning", bool(spinning))
    return Candidate(candidate.backend, candidate.precision, options)
