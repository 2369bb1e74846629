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
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import Deferred, MissingDependency, PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.hardware.apply import Candidate, build_torch_value
from pipetune.plugins.hardware.backends.base import BackendFallback
from pipetune.plugins.hardware.export import CapturedCall, capture_calls, ensure_export
from pipetune.plugins.hardware.fidelity import OutputAgreement, compare_outputs
from pipetune.plugins.hardware.recognize import GENERATE_KINDS, ONNX_SESSION, TORCH
from pipetune.plugins.hardware.signature import CallSignature
from pipetune.plugins.hardware.wrappers import original_module

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Requirements

#: Largest scaled max-abs-diff an fp32 backend may show (graph rewrites reorder float
#: sums: ~1e-6 is normal; a bf16 fallback shows ~1e-2).
FP32_TOLERANCE = 1e-4
MAX_CAPTURE = 16
MAX_TIMING_INPUTS = 24
MAX_TIMING_INPUTS_GENERATE = 2
ROUNDS = 3
BATCH = 32


@dataclass
class CandidateResult:
    candidate: Candidate
    status: str = "ok"  # ok | failed | fallback | unavailable | mismatch | slower | fidelity
    reason: str = ""
    build_s: float = 0.0
    module: OutputAgreement | None = None
    speedup: float | None = None
    batch_speedup: float | None = None
    stage_ms: float | None = None
    fidelity: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    value: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.label,
            "backend": self.candidate.backend,
            "precision": self.candidate.precision,
            "status": self.status,
            "reason": self.reason,
            "build_s": round(self.build_s, 2),
            "module": self.module.to_dict() if self.module else None,
            "speedup": self.speedup,
            "batch_speedup": self.batch_speedup,
            "stage_ms": self.stage_ms,
            "fidelity": self.fidelity,
            **self.details,
        }

    def summary(self) -> str:
        if self.status in ("ok", "slower", "fidelity") and self.speedup is not None:
            if self.batch_speedup is not None:
                text = (
                    f"{self.candidate.label} {self.batch_speedup:.2f}x batched "
                    f"({self.speedup:.2f}x at batch 1)"
                )
            else:
                text = f"{self.candidate.label} {self.speedup:.2f}x"
            return text + (f": {self.reason}" if self.reason else "")
        return f"{self.candidate.label}: {self.reason}"


def tune_model(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Tune a proposal's candidates on this machine: a torch module's
    (:func:`tune_torch`) or an ONNX model's (:func:`tune_onnx`)."""
    if proposal.params.get("kind", TORCH) == TORCH:
        return tune_torch(proposal, pipeline, context.requirements, context)
    return tune_onnx(proposal, pipeline, context.requirements, context)


# -- torch modules --------------------------------------------------------------------------


def tune_torch(
    proposal: Proposal, pipeline: Pipeline, requirements: Requirements, context: TuneContext
) -> Tuned:
    stage, slot, module = _target(proposal, pipeline)
    eager_stage = stage.with_slots(**{slot: module})
    generates = stage.kind in GENERATE_KINDS
    inputs = _stage_inputs(context, pipeline, stage)
    calls = capture(module, eager_stage, inputs[:MAX_CAPTURE], slot)
    replayable = _replayable(module, calls, slot)
    candidates = [
        with_threads(Candidate.from_dict(c), pipeline, stage)
        for c in proposal.params.get("candidates", ())
    ]
    if not candidates:
        raise Rejected(f"{proposal.id} on {stage.name!r}: no candidate backend to try")

    exported, export_error = None, None
    results: list[CandidateResult] = []
    for candidate in candidates:
        result = CandidateResult(candidate)
        results.append(result)
        started = time.perf_counter()
        try:
            if candidate.needs_export and exported is None and export_error is None:
                try:
                    exported = ensure_export(
                        module, calls[0], context.artifacts, name=slot, log=context.log
                    )
                except Rejected as exc:
                    export_error = str(exc)
            if candidate.needs_export and export_error:
                raise Rejected(export_error)
            calibration = None
            if candidate.options.get("quantization") == "static" and exported is not None:
                calibration, source = calibration_feeds(
                    context, pipeline, stage, eager_stage, module, exported.signature, calls
                )
                result.details["calibration"] = {"source": source, "calls": len(calibration)}
                context.log(f"static int8: {len(calibration)} calibration calls from {source}")
            result.value = build_torch_value(
                candidate,
                module,
                exported=exported,
                example=calls[0],
                calibration=calibration,
                store=context.artifacts,
                name=slot,
            )
        except BackendFallback as exc:
            result.status, result.reason = "fallback", f"fell back: {exc}"
        except MissingDependency as exc:
            result.status, result.reason = "unavailable", str(exc)
        except (Rejected, PipelineError) as exc:
            result.status, result.reason = "failed", str(exc)
        except Exception as exc:  # a backend's own error: this candidate is out, not the run
            result.status, result.reason = "failed", _one_line(exc)
        result.build_s = time.perf_counter() - started
        if result.status != "ok" or not replayable:
            continue
        try:
            result.module = module_agreement(result.value, calls)
        except Exception as exc:
            result.status, result.reason = "failed", f"on the captured calls: {_one_line(exc)}"
            continue
        if candidate.precision == "fp32" and not result.module.within(FP32_TOLERANCE):
            result.status = "mismatch"
            result.reason = (
                f"outputs differ from eager: max-abs-diff {result.module.max_abs_diff:.2e} "
                f"(output scale {result.module.scale:.3g})"
            )
        context.log(f"{candidate.label}: built in {result.build_s:.1f} s")

    if export_error and all(r.status != "ok" for r in results):
        raise Rejected(export_error)
    chosen = _time_and_choose(
        proposal, pipeline, stage, slot, inputs, results, requirements, context, generates
    )
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
        "timing": {"inputs": len(inputs[: _timing_cap(generates)]), "rounds": ROUNDS},
    }
    if exported is not None:
        notes["export"] = dict(exported.info)
    if generates:
        notes["fidelity"] = (
            "left to the validator: assess_change (the llm plugin's perplexity) for a "
            "generate stage"
        )
    return Tuned(
        params={
            "slot": slot,
            "kind": TORCH,
            "candidate": chosen.candidate.to_dict(),
            "backend": chosen.candidate.backend,
            "precision": chosen.candidate.precision,
        },
        artifacts=artifacts,
        notes=notes,
        est_stage_speedup=chosen.speedup,
    )


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
    from pipetune.plugins.hardware.signature import is_tensor

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
            with capture_calls(module, limit=64) as got:
                for item in list(items)[:64]:
                    eager_stage(item)
            calls = list(got)
        except Exception:
            calls = []
    feeds = _feeds(signature, calls)
    if feeds:
        return feeds, "the calibration_inputs hook"
    try:
        own = context.stage_inputs(pipeline, stage.name, context.calibration.items)[:64]
        with capture_calls(module, limit=64) as got:
            for item in own:
                eager_stage(item)
        feeds = _feeds(signature, list(got))
    except Exception:
        feeds = []
    if feeds:
        return feeds, "the calibration split"
    return _feeds(signature, fallback), "the tuning split"


def _feeds(signature: CallSignature, calls: Sequence[CapturedCall]) -> list[dict[str, Any]]:
    feeds = []
    for call in calls:
        try:
            arrays = signature.feeds(call.args, call.kwargs)
        except PipelineError:  # a call the graph was not exported for: not calibration data
            continue
        feeds.append(dict(zip(signature.input_names, arrays, strict=True)))
    return feeds


# -- ONNX models ----------------------------------------------------------------------------


def tune_onnx(
    proposal: Proposal, pipeline: Pipeline, requirements: Requirements, context: TuneContext
) -> Tuned:
    from pipetune.plugins.hardware.onnx_models import (
        RecordingSession,
        build_replacement,
        int8_variant,
        model_bytes,
        stored_source,
    )

    stage = pipeline.stage(proposal.stage)
    slot = proposal.params["slot"]
    kind = proposal.params["kind"]
    value = stage.slots[slot]
    inputs = _stage_inputs(context, pipeline, stage)
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
            result.value = build_replacement(
                kind,
                candidate.backend,
                model_file,
                candidate.options.get("threads"),
                candidate.options.get("hint", "LATENCY"),
                candidate.options.get("spinning"),
            )
        except BackendFallback as exc:
            result.status, result.reason = "fallback", f"fell back: {exc}"
            continue
        except (Rejected, PipelineError) as exc:
            result.status, result.reason = "failed", str(exc)
            continue
        except Exception as exc:
            result.status, result.reason = "failed", _one_line(exc)
            continue
        finally:
            result.build_s = time.perf_counter() - started
        if recorder is not None and recorder.feeds:
            outputs = [result.value.run(None, feed) for feed in recorder.feeds]
            result.module = compare_outputs(recorder.outputs, outputs)
            if candidate.precision == "fp32" and not result.module.within(FP32_TOLERANCE):
                result.status = "mismatch"
                result.reason = f"outputs differ: max-abs-diff {result.module.max_abs_diff:.2e}"
    chosen = _time_and_choose(
        proposal, pipeline, stage, slot, inputs, results, requirements, context, False
    )
    return Tuned(
        params={
            "slot": slot,
            "kind": kind,
            "candidate": chosen.candidate.to_dict(),
            "backend": chosen.candidate.backend,
            "precision": chosen.candidate.precision,
        },
        artifacts={"model": context.artifacts.relative(files[chosen.candidate.label])},
        notes={"candidates": [r.to_dict() for r in results], "chosen": chosen.candidate.label},
        est_stage_speedup=chosen.speedup,
    )


# -- deferred: other machines ---------------------------------------------------------------


def defer_coreml(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Convert and check the Core ML package here; the prediction needs a Mac."""
    from pipetune.plugins.hardware.backends.coreml import (
        CoreMLBackend,
        describe_spec,
        on_macos,
        validate_command,
    )

    stage, slot, module = _target(proposal, pipeline)
    inputs = _stage_inputs(context, pipeline, stage)
    calls = capture(module, stage.with_slots(**{slot: module}), inputs[:MAX_CAPTURE], slot)
    precision = proposal.params.get("precision", "fp16")
    package = CoreMLBackend().convert(
        module, calls[0], precision, store=context.artifacts, name=slot
    )
    if on_macos():  # a Mac validates like any backend: through the compile proposal
        raise Rejected("on macOS, Core ML is tried by hardware.compile")
    raise Deferred(
        f"Core ML package converted and its spec checked ({describe_spec(package.spec)}); "
        "prediction needs macOS",
        artifact=str(package.path),
        command=validate_command(package.folder),
        details={"spec": dict(package.spec), "stage": stage.name, "slot": slot},
    )


def defer_tensorrt(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Export and check the graph TensorRT would consume; the engine needs an NVIDIA GPU."""
    from pipetune.plugins.hardware.backends.tensorrt import prepare_onnx

    stage, slot, module = _target(proposal, pipeline)
    inputs = _stage_inputs(context, pipeline, stage)
    calls = capture(module, stage.with_slots(**{slot: module}), inputs[:MAX_CAPTURE], slot)
    exported = ensure_export(module, calls[0], context.artifacts, name=slot, log=context.log)
    report = prepare_onnx(exported)
    raise Deferred(
        "ONNX graph for TensorRT exported, checked with onnx.checker and run on ONNX Runtime "
        f"(max-abs-diff {report['onnxruntime_max_abs_diff']:.1e} vs eager); building and "
        "timing the engine needs an NVIDIA GPU with tensorrt",
        artifact=str(exported.path),
        command=report["command"],
        details=report,
    )


# -- timing and choice ----------------------------------------------------------------------


def _time_and_choose(
    proposal: Proposal,
    pipeline: Pipeline,
    stage: Stage,
    slot: str,
    inputs: Sequence[Any],
    results: list[CandidateResult],
    requirements: Requirements,
    context: TuneContext,
    generates: bool,
) -> CandidateResult:
    alive = [r for r in results if r.status == "ok"]
    if not alive:
        raise Rejected(
            f"{proposal.id} on {stage.name!r}: " + "; ".join(r.summary() for r in results)
        )
    timing_inputs = list(inputs[: _timing_cap(generates)])
    stages = {"current": stage}
    for r in alive:
        stages[r.candidate.label] = stage.with_slots(**{slot: r.value})
    rounds = 2 if generates else ROUNDS  # a generation takes seconds: fewer, longer passes
    try:
        per_item = interleaved_times(stages, timing_inputs, batch_size=1, rounds=rounds)
    except Exception as exc:
        raise Rejected(
            f"{proposal.id}: a candidate failed inside stage {stage.name!r}: {_one_line(exc)}"
        ) from None
    batched = None
    if requirements.metric == "throughput" and stage.batchable and len(timing_inputs) > 1:
        batched = interleaved_times(
            stages, timing_inputs, batch_size=min(BATCH, len(timing_inputs)), rounds=rounds
        )
    base = statistics.median(per_item["current"])
    for r in alive:
        label = r.candidate.label
        r.stage_ms = statistics.median(per_item[label]) * 1000
        r.speedup = round(base / statistics.median(per_item[label]), 3)
        if batched is not None:
            r.batch_speedup = round(
                statistics.median(batched["current"]) / statistics.median(batched[label]), 3
            )
        decisive = r.batch_speedup if batched is not None else r.speedup
        if decisive is not None and decisive <= 1.0:
            r.status = "slower"
            r.reason = "not faster than the current stage"
        context.log(f"{label}: {r.speedup:.2f}x the current stage")
    ranked = sorted(
        (r for r in alive if r.status == "ok"),
        key=lambda r: r.batch_speedup if r.batch_speedup is not None else (r.speedup or 0),
        reverse=True,
    )
    for r in ranked:
        if generates:
            return r
        candidate = pipeline.replace(stage.name, stage.with_slots(**{slot: r.value}))
        try:
            fidelity = context.fidelity(context.outputs(candidate))
        except Exception as exc:
            r.status, r.reason = "failed", f"pipeline outputs: {_one_line(exc)}"
            continue
        r.fidelity = fidelity.to_dict()
        if fidelity.passed:
            return r
        r.status = "fidelity"
        r.reason = (
            f"{fidelity.metric} {fidelity.value:.4f} below the floor {fidelity.threshold:.4f}"
        )
    raise Rejected(_verdict(proposal, stage, results))


def interleaved_times(
    stages: Mapping[str, Stage], inputs: Sequence[Any], *, batch_size: int = 1, rounds: int = ROUNDS
) -> dict[str, list[float]]:
    """Seconds per input for each stage, ``rounds`` passes each. Passes are interleaved
    and the order rotates each round, so a slow patch of a shared machine (or a CPU
    frequency change) falls on every variant alike instead of on one."""
    names = list(stages)
    warm = list(inputs[: max(2, batch_size)])
    for name in names:
        _one_pass(stages[name], warm, batch_size)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_one_pass(stages[name], inputs, batch_size))
    return samples


def _one_pass(stage: Stage, inputs: Sequence[Any], batch_size: int) -> float:
    started = time.perf_counter()
    if batch_size > 1:
        for i in range(0, len(inputs), batch_size):
            stage.call_batch(list(inputs[i : i + batch_size]))
    else:
        for item in inputs:
            stage(item)
    return (time.perf_counter() - started) / max(len(inputs), 1)


# -- helpers --------------------------------------------------------------------------------


def _target(proposal: Proposal, pipeline: Pipeline) -> tuple[Stage, str, Any]:
    stage = pipeline.stage(proposal.stage)
    slot = proposal.params.get("slot")
    if slot not in stage.slots:
        raise Rejected(f"stage {stage.name!r} has no slot {slot!r} any more")
    assert isinstance(slot, str)  # a key of stage.slots
    return stage, slot, original_module(stage.slots[slot])


def _stage_inputs(context: TuneContext, pipeline: Pipeline, stage: Stage) -> list[Any]:
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


def _verdict(proposal: Proposal, stage: Stage, results: Sequence[CandidateResult]) -> str:
    """Why no candidate was kept, candidate by candidate, on one line."""
    return f"{proposal.id} on {stage.name!r}: " + "; ".join(r.summary() for r in results)


def _timing_cap(generates: bool) -> int:
    return MAX_TIMING_INPUTS_GENERATE if generates else MAX_TIMING_INPUTS


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
