"""Cross-input batching of a one-at-a-time stage: measuring it, tuning it, building it.

The mechanism is :mod:`.coalesce`: the stage's own function runs per input, and its calls
to the components that accept a batch (a torch model) are made as one batched call per
group. This module measures what that gains on observed inputs (a profile fact), searches
the group size and the ordering window (and, online, the batching delay) on the
requirement's metric, tries the cheap lossless *parts* that only matter once the stage is
batched (``torch.inference_mode`` for the batched calls here; a domain plugin adds its own,
such as a Rust tokenizer), keeping each only where it holds, and materializes the result:
the stage with its new ``batch_fn`` and the pipeline served in windows.

Batching needs several inputs at once: offline it is proposed for throughput jobs (a
batch job has them all); for latency jobs it is tuned online, where the batcher waits at
most the tuned delay for a group to fill.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import InFlight, Tuned
from pipetune.core.kernel.state import reset_state
from pipetune.core.measure.timed_pass import RuntimeSpec, run_pass
from pipetune.core.runtime.serving import ServingOptions, with_serving
from pipetune.plugins.generic.batching import DELAYS_MS, paired_gain, single_and_batched_s
from pipetune.plugins.generic.coalesce import (
    META_KEY,
    batchable_slots,
    coalesced_stage,
    text_length,
)

#: Group sizes tried (inputs whose component calls become one batched call).
GROUP_SIZES = (8, 16, 32)
#: Offline, inputs are ordered by length within a window of this many groups.
WINDOW_GROUPS = 4
#: Inputs timed per candidate while tuning: enough for two windows of the largest group.
TUNE_ITEMS = 96
#: Fewer (at least MIN_TUNE_ITEMS) when the search would take longer than this: about six
#: passes' worth of one-at-a-time time (a generate stage takes seconds an input).
TUNE_BUDGET_S = 120.0
MIN_TUNE_ITEMS = 4
#: A part is kept when it is at least this fast relative to the batching without it.
PART_MIN_GAIN = 1.0


def batching_pays_here(mode: str, metric: str) -> bool:
    """Batching across inputs needs several in flight: a throughput job offline, or any
    job online (where the batching delay is tuned on its metric). Offline, an input
    waits for its whole batch, so batching cannot lower a latency."""
    return mode != "offline" or metric == "throughput"


def measured_in_flight(entry: Mapping[str, Any], mode: str) -> InFlight:
    """What the measured gain assumed: the observed inputs batched together."""
    inputs = max(2, int(entry.get("inputs", 2)))
    return InFlight(
        inputs=inputs,
        arrival="backlog" if mode == "offline" else "workload",
        assumes=f"{inputs} inputs in flight at once, their model calls batched",
    )


def measure(
    stage: Stage, inputs: Sequence[Any], *, mean_ms: float = 0.0, budget_ms: float = 2000.0
) -> dict[str, Any] | None:
    """One-at-a-time calls of ``stage`` against one coalesced batch on the same observed
    inputs: per-input times and their ratio (a profile fact)."""
    if stage.batch_fn is not None:
        return None
    slots = batchable_slots(stage)
    if not slots or len(inputs) < 4:
        return None
    n = len(inputs)
    if mean_ms > 0:
        n = max(4, min(n, int(budget_ms / (4 * mean_ms))))
    items = list(inputs[:n])
    batched = coalesced_stage(stage, slots, batch_size=n)
    batched.call_batch(items[:4])  # warm-up: first calls at new shapes
    one, both = single_and_batched_s(stage, batched, items)
    return {
        "inputs": n,
        "slots": slots,
        "per_item_ms_single": round(one * 1000, 3),
        "per_item_ms_batched": round(both * 1000, 3),
        "speedup": round(one / both, 3) if both > 0 else None,
    }


@dataclass(frozen=True)
class Setting:
    """Group size, ordering window, batching delay and grad mode of a batched stage."""

    batch_size: int
    window: int
    max_delay_ms: float = 0.0
    grad_mode: str | None = None

    def as_params(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "window": self.window,
            "max_delay_ms": self.max_delay_ms,
            "inference_mode": self.grad_mode == "inference_mode",
        }


def build(
    pipeline: Pipeline,
    stage_name: str,
    slots: Sequence[str],
    setting: Setting,
    length: Callable[[Any], int] | None = text_length,
) -> Pipeline:
    """``pipeline`` with ``stage_name`` batched across inputs and served in windows (one
    input at a time, unchanged, for a group of one)."""
    if setting.batch_size == 1 and setting.grad_mode is None:
        return pipeline
    stage = pipeline.stage(stage_name)
    batched = coalesced_stage(
        stage, slots, batch_size=setting.batch_size, grad_mode=setting.grad_mode, length=length
    )
    current = ServingOptions.of(pipeline)
    window = max(setting.window, current.batch_size)
    return with_serving(
        pipeline.replace(stage_name, batched),
        batch_size=window,
        max_delay_ms=max(setting.max_delay_ms, current.max_delay_ms),
    )


@dataclass(frozen=True)
class Part:
    """A cheap lossless change tried on top of the batching: ``apply`` returns the
    candidate with it (or raises :class:`Rejected` with the reason it does not hold)."""

    name: str
    apply: Callable[[Pipeline, Setting], tuple[Pipeline, Setting]]


def batched_outputs(pipeline: Pipeline, items: Sequence[Any]) -> list[Any]:
    """Outputs of ``pipeline`` served as its ``meta["serving"]`` says (in windows), so the
    batched path is the one checked."""
    reset_state(pipeline)
    result = run_pass(pipeline, list(items), RuntimeSpec(mode="offline"))
    return list(result.outputs)


def tune(
    pipeline: Pipeline,
    stage_name: str,
    slots: Sequence[str],
    context: TuneContext,
    *,
    parts: Sequence[Part] = (),
    length: Callable[[Any], int] | None = text_length,
    parts_alone: bool = False,
) -> Tuned:
    """Search the group size and window (and online the delay) on the requirement's
    metric, check the batched outputs on the tuning split, then try each part on top and
    keep it only where it holds. Raises :class:`Rejected` when batching does not pay
    (with ``parts_alone``: when neither batching nor any part does; the parts are then
    tried on the stage one input at a time)."""
    runtime = _tuning_runtime(pipeline, context)
    items = list(context.workload.items)[: tune_items(context)]
    if len(items) < 2:
        raise Rejected("too few tuning inputs to form a batch")
    metric = context.requirements.metric
    gain, chosen, curve = _search(pipeline, stage_name, slots, items, runtime, context, length)
    notes: dict[str, Any] = {"curve": curve, "gain_on_tune_split": round(gain, 3), "parts": {}}
    gate = 1.0 + max(context.requirements.min_gain, 0.02)
    if chosen is None or gain < gate:
        why = (
            f"batching {stage_name!r} across inputs does not pay here: the best setting gives "
            f"{gain:.2f}x on {metric} over one input at a time ({len(items)} tuning inputs)"
        )
        if not (parts_alone and parts):
            raise Rejected(why)
        notes["batching"] = why + "; its parts are tried one input at a time"
        context.log(f"cross-input batching: {notes['batching']}")
        chosen, gain = Setting(1, 1), 1.0
    candidate = build(pipeline, stage_name, slots, chosen, length)
    if chosen.batch_size > 1:
        check_outputs(candidate, context, "batched")
    kept_any = False
    for part in parts:
        found = _try_part(part, candidate, chosen, items, runtime, context, notes)
        if found is not None:
            candidate, chosen, part_gain = found
            gain *= part_gain
            kept_any = True
    if chosen.batch_size == 1 and not kept_any:
        raise Rejected(f"{notes['batching']}, and none of its parts holds: {notes['parts']}")
    params = {"slots": list(slots), **chosen.as_params()}
    notes["gain_with_parts_on_tune_split"] = round(gain, 3)
    return Tuned(
        params=params, notes=notes, in_flight=in_flight(chosen, online=runtime.mode != "offline")
    )


def tune_items(context: TuneContext) -> int:
    """How many tuning inputs the search times: :data:`TUNE_ITEMS`, fewer when the
    profile says one input takes long enough that the search would pass its budget."""
    mean_ms = context.profile.latency_ms.mean if context.profile is not None else 0.0
    if not mean_ms or mean_ms <= 0:
        return TUNE_ITEMS
    fits = int(TUNE_BUDGET_S / (6 * mean_ms / 1000.0))
    return max(MIN_TUNE_ITEMS, min(TUNE_ITEMS, fits))


def in_flight(setting: Setting, *, online: bool) -> InFlight | None:
    """What a batched setting needs in flight: its window, at once offline (a batch job
    has them all), at the workload's own arrivals online."""
    if setting.batch_size <= 1:
        return None
    return InFlight(
        inputs=setting.window,
        arrival="workload" if online else "backlog",
        assumes=(
            f"groups of {setting.batch_size} inputs ordered by length within windows of "
            f"{setting.window}"
        ),
    )


def _tuning_runtime(pipeline: Pipeline, context: TuneContext) -> RuntimeSpec:
    """The workload's runtime; online without a rate, 70 % of one-at-a-time capacity (as
    the profiler and the validator offer), so the delay is tuned under real queueing."""
    runtime = RuntimeSpec.from_workload(context.workload)
    if runtime.mode != "offline" and runtime.rate is None and runtime.trace is None:
        reset_state(pipeline)
        probe = list(context.workload.items)[:32]
        capacity = run_pass(pipeline, probe, RuntimeSpec()).throughput_rps
        runtime = replace(runtime, rate=max(0.7 * capacity, 1e-3))
    return runtime


def _search(
    pipeline: Pipeline,
    stage_name: str,
    slots: Sequence[str],
    items: list[Any],
    runtime: RuntimeSpec,
    context: TuneContext,
    length: Callable[[Any], int] | None,
) -> tuple[float, Setting | None, list[dict[str, Any]]]:
    """The best (gain, setting) over group sizes, windows and delays, and the curve."""
    metric = context.requirements.metric
    online = runtime.mode != "offline"
    bound = getattr(context.requirements, f"{metric}_ms", None) if metric != "throughput" else None
    delays = tuple(d for d in DELAYS_MS if bound is None or d <= 0.5 * bound) if online else ()
    curve: list[dict[str, Any]] = []
    best: tuple[float, Setting | None] = (1.0, None)
    for size in GROUP_SIZES:
        if size > len(items) and curve:
            break
        size = min(size, len(items))
        window = size if online else min(len(items), WINDOW_GROUPS * size)
        for delay in delays or (0.0,):
            setting = Setting(size, window, delay)
            candidate = build(pipeline, stage_name, slots, setting, length)
            gain, _, value = paired_gain(pipeline, candidate, items, runtime, metric, rounds=1)
            curve.append({**setting.as_params(), "gain": round(gain, 3), metric: value})
            context.log(
                f"cross-input batching: group {size}, window {window}, "
                f"delay {delay:g} ms: {gain:.2f}x on {metric}"
            )
            if gain > best[0]:
                best = (gain, setting)
    return best[0], best[1], curve


def _try_part(
    part: Part,
    candidate: Pipeline,
    setting: Setting,
    items: list[Any],
    runtime: RuntimeSpec,
    context: TuneContext,
    notes: dict[str, Any],
) -> tuple[Pipeline, Setting, float] | None:
    """``part`` on top of ``candidate``, when it is no slower and its outputs hold."""
    try:
        with_part, new_setting = part.apply(candidate, setting)
    except Rejected as exc:
        notes["parts"][part.name] = {"kept": False, "why": str(exc)}
        context.log(f"cross-input batching: {part.name}: not kept: {exc}")
        return None
    metric = context.requirements.metric
    gain, _, _ = paired_gain(candidate, with_part, items, runtime, metric, rounds=1)
    kept = gain >= PART_MIN_GAIN
    why = "" if kept else f"no faster with it ({gain:.2f}x)"
    if kept:
        try:
            check_outputs(with_part, context, part.name)
        except Rejected as exc:
            kept, why = False, str(exc)
    notes["parts"][part.name] = {"kept": kept, "gain": round(gain, 3), "why": why}
    verdict = "kept" if kept else "not kept"
    context.log(f"cross-input batching: {part.name}: {gain:.2f}x: {verdict}")
    return (with_part, new_setting, gain) if kept else None


def check_outputs(candidate: Pipeline, context: TuneContext, what: str) -> None:
    """The candidate's outputs on the tuning split, judged against the original's."""
    outputs = batched_outputs(candidate, context.workload.items)
    fidelity = context.fidelity(outputs)
    if not fidelity.passed:
        raise Rejected(
            f"the {what} outputs differ: {fidelity.metric} {fidelity.value:.3f} on the tuning "
            f"split (< {fidelity.threshold:.3f})"
        )


def inference_mode_part() -> Part:
    """Run the batched calls under ``torch.inference_mode()`` (exact; skips autograd's
    bookkeeping)."""

    def apply(pipeline: Pipeline, setting: Setting) -> tuple[Pipeline, Setting]:
        if setting.grad_mode == "inference_mode":
            raise Rejected("already on")
        if setting.batch_size == 1:
            raise Rejected("one input at a time, the stage's own calls keep their grad mode")
        on = replace(setting, grad_mode="inference_mode")
        return _rebuilt(pipeline, on), on

    return Part("inference_mode", apply)


def _rebuilt(pipeline: Pipeline, setting: Setting) -> Pipeline:
    """The batched stage of ``pipeline`` rebuilt with another setting."""
    for stage in pipeline.stages:
        note = stage.meta.get(META_KEY)
        if note:
            length = getattr(stage.batch_fn, "length", text_length)
            return build(pipeline, stage.name, list(note.get("slots", ())), setting, length)
    return pipeline


def materialize(
    pipeline: Pipeline,
    stage_name: str,
    params: dict[str, Any],
    length: Callable[[Any], int] | None = text_length,
) -> Pipeline:
    setting = Setting(
        batch_size=int(params["batch_size"]),
        window=int(params.get("window", params["batch_size"])),
        max_delay_ms=float(params.get("max_delay_ms", 0.0)),
        grad_mode="inference_mode" if params.get("inference_mode") else None,
    )
    slots = [str(s) for s in params.get("slots", ())] or batchable_slots(pipeline.stage(stage_name))
    return build(pipeline, stage_name, slots, setting, length)
