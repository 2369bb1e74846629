"""What the hardware plugin adds to a profile: the machine, the backends, and per model
the share of its stage's time spent inside the module and its FLOPs per call.

``inspect_pipeline`` facts are static (no forward pass). ``profile_pipeline`` runs each
model's stage on a few of the inputs the shared profiling run observed, with timing hooks
on the module (removed after), so a proposal can say how much of the stage compiling the
module can touch (Amdahl within the stage), and the instance advice can price the model's
FLOPs on a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipetune.core.runtime.machine import describe_machine, detect_machine
from pipetune.plugins.hardware.recognize import TORCH, find_models, main_model

if TYPE_CHECKING:
    from pipetune.core.kernel.context import Observations
    from pipetune.core.kernel.model import Pipeline

PROFILE_INPUTS = 6


def inspect(pipeline: Pipeline) -> dict[str, Any]:
    from pipetune.plugins.hardware.backends import all_backends

    machine = detect_machine()
    backends = {}
    for backend in all_backends():
        status = backend.available()
        backends[backend.name] = {
            "available": status.ok,
            "reason": status.reason,
            "install": status.install,
            "target": backend.target,
            "verified": backend.verified,
        }
    return {
        "machine": dict(describe_machine(machine)),
        "backends": backends,
        "models": [ref.describe() for ref in find_models(pipeline)],
    }


def measure(pipeline: Pipeline, observed: Observations) -> dict[str, Any]:
    timings = []
    for stage in pipeline.stages:
        ref = main_model(stage)
        if ref is None or ref.kind != TORCH or ref.applied is not None:
            continue
        # A generation takes seconds: two inputs say enough about where its time goes.
        inputs = observed.inputs_of(stage.name)[: 2 if ref.generates else PROFILE_INPUTS]
        if not inputs:
            continue
        try:
            timings.append(
                {"stage": stage.name, "slot": ref.slot, **time_module(stage, ref, inputs)}
            )
        except Exception as exc:  # a fact we could not measure is absent, not an error
            timings.append({"stage": stage.name, "slot": ref.slot, "error": str(exc)[:200]})
    return {"model_timing": timings}


def time_module(stage: Any, ref: Any, inputs: Sequence[Any]) -> dict[str, Any]:
    """Per stage call: time inside the module vs the whole stage, module calls, FLOPs."""
    import torch

    module = ref.module
    inside: list[float] = []
    started: list[float] = []
    depth = [0]

    def before(*_: Any) -> None:
        depth[0] += 1
        if depth[0] == 1:
            started.append(time.perf_counter())

    def after(*_: Any) -> None:
        if depth[0] == 1 and started:
            inside.append(time.perf_counter() - started.pop())
        depth[0] = max(0, depth[0] - 1)

    handles = [
        module.register_forward_pre_hook(before),
        module.register_forward_hook(after, always_call=True),
    ]
    stage_times = []
    module_times = []
    try:
        if not ref.generates:
            stage(inputs[0])  # warm-up (lazy initialisation, first-call allocations)
        inside.clear()
        for item in inputs:
            mark = len(inside)
            t0 = time.perf_counter()
            stage(item)
            stage_times.append(time.perf_counter() - t0)
            module_times.append(sum(inside[mark:]))
        calls_per_item = len(inside) / max(len(inputs), 1)
    finally:
        for handle in handles:
            handle.remove()
    flops = None if ref.generates else _flops_per_item(stage, inputs[0])
    stage_ms = statistics.median(stage_times) * 1000
    module_ms = statistics.median(module_times) * 1000
    return {
        "stage_ms": round(stage_ms, 3),
        "module_ms": round(module_ms, 3),
        "model_share": round(min(1.0, module_ms / stage_ms), 3) if stage_ms > 0 else None,
        "calls_per_item": calls_per_item,
        "gflops_per_item": round(flops / 1e9, 4) if flops is not None else None,
        "torch_threads": torch.get_num_threads(),
    }


def _flops_per_item(stage: Any, item: Any) -> float | None:
    """FLOPs of one stage call, counted by torch's FLOP counter (matmuls, convolutions,
    attention): the dominant cost of a neural model, what a GPU's TFLOPS buy."""
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            stage(item)
        return float(counter.get_total_flops())
    except Exception:
        return None


def measured_facts(pipeline: Pipeline, observed: Observations) -> dict[str, Any] | None:
    """:func:`measure`, for pipelines holding a model this plugin recognizes."""
    if not find_models(pipeline):
        return None
    return measure(pipeline, observed)
