"""Proposals for stages holding a model, from the profile and the machine.

* ``hardware.compile`` — run the model on the best backend available for this machine
  (CPU: OpenVINO, ONNX Runtime; NVIDIA: TensorRT when importable, torch with CUDA graphs;
  Apple: Core ML), at full precision. The tune step measures every candidate.
* ``hardware.precision`` — int8 (CPU; ONNX Runtime dynamic and calibrated static, torch
  dynamic for models that stay in torch), bf16 (OpenVINO on CPUs with native bf16), fp16
  / bf16 (NVIDIA). The single owner of precision changes for every domain.
* ``hardware.threads`` — a per-stage thread plan (torch, BLAS/OpenMP, plugin pools, ONNX
  Runtime and OpenVINO sessions), tried at every count from 1 to the physical cores.
* ``hardware.coreml`` / ``hardware.tensorrt`` — prepare and check a package for another
  machine the pipeline deploys to (``Pipeline.meta["targets"]`` or ``PIPETUNE_TARGETS``):
  the trial is deferred with the artifact and the command to finish it there.
* ``hardware.instance`` — advice when prices are given: cost per 1,000 predictions on
  CPU, T4-, A100- and H100-class machines, with the assumptions.

Estimated speedups are priors (stated in ``evidence``), scaled by the share of the stage
the module takes (measured); the tune step replaces them with measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.model import Pipeline, Requirements, Stage
from pipetune.core.kernel.registry import Availability
from pipetune.core.kernel.results import Machine, Profile, Proposal
from pipetune.core.runtime.machine import has_bf16, has_int8_dot_product
from pipetune.core.runtime.threads import stage_plan
from pipetune.plugins.hardware.apply import Candidate
from pipetune.plugins.hardware.backends import all_backends
from pipetune.plugins.hardware.recognize import (
    TORCH,
    ModelRef,
    deployment_targets,
    describe_module,
    main_model,
    model_kind,
)
from pipetune.plugins.hardware.thread_plan import ladder, session_threads
from pipetune.plugins.hardware.threads import default_intra_op_threads

PLUGIN = "hardware"
#: Prior stage speedups of the module alone, before measurement (see the docs' figures).
PRIORS = {
    "compile_cpu": 1.5,
    "compile_gpu_from_cpu": 5.0,
    "compile_gpu": 1.3,
    "int8_vnni": 2.0,
    "int8": 1.3,
    "bf16_cpu": 1.5,
    "half_gpu": 2.0,
    "threads": 1.05,
    "threads_busy": 1.5,
    "threads_spinning": 1.2,
}
#: A stage holding no model still gets a thread count tried when it takes this share.
PLAN_STAGE_SHARE = 0.10
#: Run-queue wait share (while profiling) above which the host counts as busy.
BUSY_WAIT = 0.10


def propose(pipeline: Pipeline, profile: Profile, requirements: Requirements) -> list[Proposal]:
    facts = profile.facts.get(PLUGIN, {})
    timing = {(t["stage"], t["slot"]): t for t in facts.get("model_timing", ())}
    machine = profile.machine
    status = {b.name: (b, b.available()) for b in all_backends()}
    targets = deployment_targets(pipeline)
    proposals: list[Proposal] = []
    for stage in pipeline.stages:
        ref = main_model(stage)
        if ref is None:
            continue
        measured = timing.get((stage.name, ref.slot), {})
        context = _Context(stage, ref, profile, measured, machine, status, requirements)
        if ref.kind == TORCH:
            proposals.extend(_torch_proposals(context, targets))
        else:
            proposals.extend(_onnx_proposals(context))
    plan = thread_plan(pipeline, profile)
    if plan is not None:
        proposals.append(plan)
    if requirements.cost_per_hour:
        advice = instance_proposal(pipeline, profile, requirements, timing)
        if advice is not None:
            proposals.append(advice)
    return proposals


@dataclass(eq=False)
class _Context:
    """What the proposals for one stage's model are worked out from."""

    stage: Stage
    ref: ModelRef
    profile: Profile
    measured: dict[str, Any]
    machine: Machine
    status: dict[str, Any]
    requirements: Requirements

    def __post_init__(self) -> None:
        share = self.measured.get("model_share")
        self.model_share = float(share) if isinstance(share, int | float) else 0.9
        self.share_known = isinstance(share, int | float)

    def available(self, name: str) -> bool:
        return bool(self.status[name][1])

    def reason(self, name: str) -> tuple[str, str | None]:
        availability = self.status[name][1]
        return availability.reason, availability.install

    def stage_speedup(self, module_speedup: float) -> float:
        """Amdahl within the stage: only the module's share gets faster."""
        share = self.model_share
        return round(1.0 / ((1.0 - share) + share / module_speedup), 3)

    def evidence(self, prior: float, **extra: Any) -> dict[str, Any]:
        return {
            "stage_share": round(self.profile.share(self.stage.name), 4),
            "model_share_of_stage": self.model_share if self.share_known else None,
            "module": describe_module(self.ref.module) if self.ref.kind == TORCH else {},
            "prior_module_speedup": prior,
            "machine": f"{self.machine.cpu}, {self.machine.cores} cores"
            + (f", {self.machine.gpu}" if self.machine.gpu else ""),
            **extra,
        }

    def proposal(
        self,
        id: str,
        title: str,
        prior: float,
        *,
        params: dict[str, Any] | None = None,
        evidence: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Proposal:
        """A proposal for this stage's model. Its stage speedup and its evidence both follow
        from ``prior``, the module's own speedup; ``params`` and ``evidence`` add to the
        slot and kind and to :meth:`evidence`; ``fields`` are the proposal's others."""
        return Proposal(
            id=id,
            plugin=PLUGIN,
            stage=self.stage.name,
            title=title,
            est_stage_speedup=self.stage_speedup(prior),
            params={"slot": self.ref.slot, "kind": self.ref.kind, **(params or {})},
            evidence=self.evidence(prior, **(evidence or {})),
            **fields,
        )

    def where(self) -> str:
        share = self.profile.share(self.stage.name)
        text = f"stage {self.stage.name!r} takes {share:.0%} of end-to-end time"
        if self.share_known:
            text += f"; its {self.ref.slot!r} module takes {self.model_share:.0%} of the stage"
        return text


def _torch_proposals(c: _Context, targets: tuple[str, ...]) -> list[Proposal]:
    ref, machine = c.ref, c.machine
    module_info = describe_module(ref.module)
    applied = ref.applied
    gpu = c.available("torch-cuda")
    proposals = []
    if ref.generates:
        if applied is None and module_info.get("dtype") == "float32":
            proposals.append(_generate_precision(c, gpu))
        return proposals
    if applied is None:
        proposals.append(_compile(c, gpu))
    if (
        (applied is None or applied.get("precision") == "fp32")
        and module_info.get("dtype") == "float32"
        and not module_info.get("quantized")
    ):
        proposals.append(_precision(c, gpu))
    if "apple" in targets and not machine.apple_silicon:
        proposals.append(_coreml_cross_target(c))
    if "nvidia" in targets and machine.gpu is None:
        proposals.append(_tensorrt_cross_target(c))
    elif machine.gpu is not None and not c.available("tensorrt"):
        reason, install = c.reason("tensorrt")
        proposals.append(
            c.proposal(
                "hardware.tensorrt",
                f"Build a TensorRT fp16 engine for {ref.slot!r}",
                PRIORS["half_gpu"],
                evidence={"verified": False},
                rationale=f"{c.where()}; TensorRT is unavailable here: {reason}",
                effort="hours",
                accuracy_risk="medium",
                status="unavailable",
                reason=reason,
                install=install,
            )
        )
    return proposals


def _compile(c: _Context, gpu: bool) -> Proposal:
    ref = c.ref
    metric = c.requirements.metric
    if gpu:
        on_cpu = describe_module(ref.module).get("device", "cpu") == "cpu"
        prior = PRIORS["compile_gpu_from_cpu"] if on_cpu else PRIORS["compile_gpu"]
        wanted = [Candidate("torch-cuda", "fp32", {"cuda_graphs": True})]
        if c.available("tensorrt"):
            wanted.insert(0, Candidate("tensorrt", "fp32"))
    else:
        prior = PRIORS["compile_cpu"]
        hints = ["LATENCY", "THROUGHPUT"] if metric == "throughput" else ["LATENCY"]
        wanted = [Candidate("openvino", "fp32", {"hint": h}) for h in hints]
        wanted.append(Candidate("onnxruntime", "fp32"))
        if c.machine.apple_silicon:
            wanted.insert(0, Candidate("coreml", "fp32"))
    usable = [w for w in wanted if c.available(w.backend)]
    missing = [w.backend for w in wanted if not c.available(w.backend)]
    title = f"Compile {ref.slot!r} for {'the GPU' if gpu else 'this CPU'}"
    base = c.proposal(
        "hardware.compile",
        title,
        prior,
        params={"candidates": [u.to_dict() for u in usable]},
        evidence={"candidates": [u.label for u in usable], "missing": missing},
        effort="minutes",
        accuracy_risk="low",
    )
    if not usable:
        reason, install = c.reason(missing[0])
        return base.evolve(
            status="unavailable",
            reason="; ".join(f"{m}: {c.reason(m)[0]}" for m in dict.fromkeys(missing)),
            install=install,
            rationale=f"{c.where()}; no backend for this machine is installed ({reason})",
        )
    names = ", ".join(dict.fromkeys(u.backend for u in usable))
    return base.evolve(
        rationale=(
            f"{c.where()}; eager torch runs it op by op, a compiled graph fuses attention, "
            f"GELU and normalization kernels. Candidates measured on the tuning split: "
            f"{names} (fp32, checked to max-abs-diff against eager)"
        ),
    )


def _precision(c: _Context, gpu: bool) -> Proposal:
    ref, isa = c.ref, c.machine.isa
    wanted: list[Candidate]
    if gpu:
        prior = PRIORS["half_gpu"]
        wanted = [Candidate("torch-cuda", "fp16", {"cuda_graphs": True})]
        capability = c.machine.gpu_compute_capability or "0.0"
        if _version(capability) >= (8, 0):
            wanted.insert(0, Candidate("torch-cuda", "bf16", {"cuda_graphs": True}))
        if c.available("tensorrt"):
            wanted.insert(0, Candidate("tensorrt", "fp16"))
        what = "fp16/bf16"
    else:
        prior = PRIORS["int8_vnni"] if has_int8_dot_product(isa) else PRIORS["int8"]
        rr = {} if has_int8_dot_product(isa) else {"reduce_range": True}
        wanted = [
            Candidate("onnxruntime", "int8", {"quantization": "dynamic", **rr}),
            Candidate("onnxruntime", "int8", {"quantization": "static", **rr}),
        ]
        if has_bf16(isa):
            wanted.append(Candidate("openvino", "bf16", {"hint": "LATENCY"}))
        if not c.available("onnxruntime"):
            wanted.append(Candidate("torch", "int8"))
        what = "int8" + ("/bf16" if has_bf16(isa) else "")
    usable = [w for w in wanted if w.backend == "torch" or c.available(w.backend)]
    base = c.proposal(
        "hardware.precision",
        f"Run {ref.slot!r} in {what}",
        prior,
        params={"candidates": [u.to_dict() for u in usable]},
        evidence={
            "candidates": [u.label for u in usable],
            "int8_dot_product": has_int8_dot_product(isa),
            "native_bf16": has_bf16(isa),
        },
        effort="minutes",
        accuracy_risk="medium",
    )
    if not usable:
        missing = wanted[0].backend
        reason, install = c.reason(missing)
        return base.evolve(status="unavailable", reason=reason, install=install)
    isa_note = (
        "this CPU has int8 dot-product instructions (VNNI/AMX/dotprod)"
        if has_int8_dot_product(isa)
        else "this CPU has no int8 dot-product instructions, so int8 gains less"
    )
    return base.evolve(
        rationale=(
            f"{c.where()}; lower precision moves fewer bytes and uses wider vector paths "
            f"({isa_note if not gpu else 'tensor cores'}). Lossy: kept only if the "
            "pipeline's fidelity stays within the budget"
        ),
    )


def _generate_precision(c: _Context, gpu: bool) -> Proposal:
    ref = c.ref
    if gpu:
        candidates = [Candidate("torch-cuda", "bf16", {"cuda_graphs": False})]
        candidates.append(Candidate("torch-cuda", "fp16", {"cuda_graphs": False}))
        prior, what = PRIORS["half_gpu"], "bf16/fp16"
    else:
        candidates = [Candidate("torch", "int8")]
        prior, what = PRIORS["int8"], "int8 (dynamic, nn.Linear)"
    return c.proposal(
        "hardware.precision",
        f"Quantize {ref.slot!r} weights to {what}",
        prior,
        params={"candidates": [x.to_dict() for x in candidates]},
        evidence={"candidates": [x.label for x in candidates]},
        rationale=(
            f"{c.where()}; a generate loop re-reads every weight per token, so smaller "
            "weights are faster. Fidelity: the llm plugin's perplexity (assess_change)"
        ),
        effort="minutes",
        accuracy_risk="medium",
    )


def thread_plan(pipeline: Pipeline, profile: Profile) -> Proposal | None:
    """``hardware.threads``: a thread plan for the stages that hold a model or a session,
    or take at least :data:`PLAN_STAGE_SHARE` of the time; each is tried at every count
    from 1 to the physical cores usable here. Not proposed once a plan is in force, or
    when there is nothing to try (one core, no spinning session)."""
    if any(stage_plan(stage) for stage in pipeline.stages):
        return None
    cores = default_intra_op_threads(profile.machine)
    counts = ladder(cores)
    names, spinning = [], []
    for stage in pipeline.stages:
        sessions = [session_threads(v) for v in stage.slots.values()]
        spinning += [x for x in sessions if x and x.get("spinning") and x.get("threads", 1) > 1]
        holds = any(model_kind(v) or x for v, x in zip(stage.slots.values(), sessions, strict=True))
        if holds or profile.share(stage.name) >= PLAN_STAGE_SHARE:
            names.append(stage.name)
    current = profile.machine.threads.get("torch_intra_op")
    if not names or (counts == [current or 1] and not spinning):
        return None
    wait = profile.passes.get("timing", {}).get("runqueue_wait_share")
    busy = isinstance(wait, int | float) and wait > BUSY_WAIT
    shared = len(pipeline.stages) > 1 or busy
    prior = PRIORS["threads_busy"] if busy and (current or cores) > 1 else PRIORS["threads"]
    if spinning and shared:
        prior = max(prior, PRIORS["threads_spinning"])
    why = [f"{cores} physical core{'s' if cores != 1 else ''} usable here"]
    if current:
        why.append(f"torch runs {current} intra-op threads")
    if busy:
        why.append(f"the host was busy while profiling ({wait:.0%} run-queue wait)")
    if spinning and shared:
        why.append(f"{len(spinning)} session(s) spin idle threads between calls")
    return Proposal(
        id="hardware.threads",
        plugin=PLUGIN,
        stage="*",
        title=f"Tune each stage's thread count ({', '.join(names)}) by measurement",
        rationale=(
            f"{'; '.join(why)}. Each stage is timed end to end at "
            f"{', '.join(map(str, counts))} thread(s)"
            + ("; sessions built without spinning, since stages share cores" if shared else "")
        ),
        est_stage_speedup=prior,
        effort="minutes",
        accuracy_risk="none",
        params={
            "stages": {name: {} for name in names},
            "counts": counts,
            "cores": cores,
            "uniform": profile.workload.get("mode", "offline") != "offline",
            "shared": shared,
        },
        evidence={
            "cores": cores,
            "counts": counts,
            "torch_threads": current,
            "runqueue_wait_share": wait,
            "spinning_sessions": spinning,
            "prior_speedup": prior,
            "machine": f"{profile.machine.cpu}, {profile.machine.cores} cores",
        },
    )


def _coreml_cross_target(c: _Context) -> Proposal:
    from pipetune.plugins.hardware.backends.coreml import CoreMLBackend

    return _cross_target(
        c,
        CoreMLBackend().can_convert(),
        id="hardware.coreml",
        title=f"Convert {c.ref.slot!r} to Core ML (fp16) for Apple Silicon",
        rationale=(
            f"{c.where()}; the pipeline deploys to Apple Silicon: the package is converted "
            "and its spec checked here, the prediction is validated on a Mac (deferred)"
        ),
        params={"precision": "fp16"},
        evidence={"target": "apple"},
    )


def _tensorrt_cross_target(c: _Context) -> Proposal:
    from pipetune.plugins.hardware.backends.onnxruntime import OnnxRuntimeBackend

    return _cross_target(
        c,
        OnnxRuntimeBackend().available(),
        id="hardware.tensorrt",
        title=f"Prepare {c.ref.slot!r} for TensorRT (fp16 engine on the NVIDIA target)",
        rationale=(
            f"{c.where()}; the pipeline deploys to NVIDIA GPUs: the ONNX graph TensorRT "
            "consumes is exported and checked here; the engine is built and timed there "
            "(deferred; TensorRT is unverified by pipetune)"
        ),
        params={"cross_target": True},
        evidence={"target": "nvidia", "verified": False},
    )


def _cross_target(
    c: _Context,
    check: Availability,
    *,
    id: str,
    title: str,
    rationale: str,
    params: dict[str, Any],
    evidence: dict[str, Any],
) -> Proposal:
    """A torch model prepared here for another target (Apple Silicon, NVIDIA): nothing is
    timed here (no speedup claimed), hours of work, medium risk; unavailable, with the
    reason and the install hint, where ``check`` says this machine cannot prepare it."""
    base = c.proposal(
        id,
        title,
        1.0,
        params=params,
        evidence=evidence,
        rationale=rationale,
        effort="hours",
        accuracy_risk="medium",
    )
    if not check:
        return base.evolve(status="unavailable", reason=check.reason, install=check.install)
    return base


def _onnx_proposals(c: _Context) -> list[Proposal]:
    ref = c.ref
    proposals = []
    if ref.kind == "onnx_session" and ref.value is not None:
        wanted = [Candidate("onnxruntime", "fp32")]
        if c.available("openvino"):
            wanted.insert(0, Candidate("openvino", "fp32", {"hint": "LATENCY"}))
        proposals.append(
            c.proposal(
                "hardware.compile",
                f"Rebuild the {ref.slot!r} session for this CPU",
                1.2,
                params={"candidates": [w.to_dict() for w in wanted]},
                rationale=(
                    f"{c.where()}; every graph optimization, thread pools sized to the "
                    "physical cores, or OpenVINO with an explicit f32 precision hint"
                ),
                effort="minutes",
                accuracy_risk="low",
            )
        )
    if c.available("onnxruntime"):
        rr = {} if has_int8_dot_product(c.machine.isa) else {"reduce_range": True}
        int8 = Candidate("onnxruntime", "int8", {"quantization": "dynamic", **rr})
        proposals.append(
            c.proposal(
                "hardware.precision",
                f"Quantize the {ref.slot!r} ONNX model to int8 (dynamic)",
                PRIORS["int8"],
                params={"candidates": [int8.to_dict()]},
                rationale=f"{c.where()}; int8 weights, activations quantized per call",
                effort="minutes",
                accuracy_risk="medium",
            )
        )
    return proposals


def instance_proposal(
    pipeline: Pipeline,
    profile: Profile,
    requirements: Requirements,
    timing: dict[tuple[str, str], dict[str, Any]],
) -> Proposal | None:
    from pipetune.plugins.hardware import instances

    model_ms = 0.0
    gflops = 0.0
    known = False
    stage_name = None
    for (stage, _slot), measured in timing.items():
        share = measured.get("model_share")
        stats = next((s for s in profile.stages if s.name == stage), None)
        if stats is None or not isinstance(share, int | float):
            continue
        model_ms += stats.mean_ms * share
        if measured.get("gflops_per_item"):
            gflops += float(measured["gflops_per_item"])
            known = True
        stage_name = stage_name or stage
    if stage_name is None:
        return None
    per_item_ms = sum(s.mean_ms for s in profile.stages)
    result = instances.estimate(
        instances.Workload(
            per_item_ms=per_item_ms,
            model_ms=model_ms,
            model_gflops=gflops if known else None,
            cores=profile.machine.cores,
            throughput_rps=profile.throughput_rps,
        ),
        requirements.cost_per_hour,
        requirements.monthly_volume,
    )
    return Proposal(
        id="hardware.instance",
        plugin=PLUGIN,
        stage=stage_name,
        title="Choose the instance type by cost per 1,000 predictions",
        rationale=instances.summarize(result),
        est_stage_speedup=1.0,
        effort="days",
        accuracy_risk="none",
        applicable=False,
        evidence=result,
    )


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return 0, 0
