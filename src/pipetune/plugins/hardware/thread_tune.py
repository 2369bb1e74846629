"""Tuning a thread plan by measurement, on the tuning split.

For each stage the proposal names, every count of the ladder (1 to the physical cores
usable here: :func:`~pipetune.plugins.hardware.thread_plan.ladder`) is put in force on that
stage alone and the *whole* pipeline is timed, interleaved round by round with the current
pipeline on the same inputs: a stage's count is judged by what it costs end to end, so a
pool that keeps spinning after its stage and slows the next one down is caught, and so is
a count that oversubscribes a host other processes are using. A stage keeps the fastest
count when it beats the current settings by :data:`MIN_GAIN`; the stages' choices are then
combined and timed once more against the current pipeline. With several calls in flight
(``uniform``) one count is tried for every stage at once, since the per-call settings are
process state.

When stages share cores (``shared``: several stages, or a busy host), the sessions the plan
rebuilds do not spin their idle threads. The validator then confirms the plan on the
held-out split like any change.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.core.kernel.state import reset_state
from pipetune.plugins.hardware.thread_plan import SessionCache, apply_plan, ladder, settings_for

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext

#: A stage's count is kept only when the pipeline is at least this much faster with it.
MIN_GAIN = 0.02
ROUNDS = 5
MAX_INPUTS = 24
MIN_INPUTS = 4
#: Seconds one timed pass of the current pipeline should take (sizes the inputs used).
PASS_TARGET_S = 0.6
CURRENT = "current"


def tune_plan(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Measure each named stage at each count; keep what beats the current settings."""
    from pipetune.core.measure.load import HostLoadMeter
    from pipetune.plugins.hardware.changes.threads import ThreadPlanParams
    from pipetune.plugins.hardware.threads import default_intra_op_threads

    params = ThreadPlanParams.of(proposal)
    names = [name for name in params.stages if name in pipeline.stage_names]
    if not names:
        raise Rejected(f"{proposal.id}: none of the stages it plans is in the pipeline")
    counts = list(params.counts) or ladder(params.cores or default_intra_op_threads())
    spinning = False if params.shared else None
    items = _timing_inputs(pipeline, context.workload.items)
    cache: SessionCache = {}
    plans = _variants(names, counts, spinning, params.uniform)
    variants = {CURRENT: pipeline}
    variants.update(
        {label: apply_plan(pipeline, plan, cache=cache) for label, plan in plans.items()}
    )
    context.log(
        f"threads: timing {len(variants)} settings of the pipeline on {len(items)} inputs "
        f"(counts {', '.join(map(str, counts))})"
    )
    meter = HostLoadMeter().start()
    medians = _medians(interleaved(variants, items, ROUNDS))
    chosen = _choose(plans, medians, names, params.uniform)
    if not chosen:
        meter.stop()
        raise Rejected(
            f"{proposal.id}: no thread count beat the current settings by "
            f"{MIN_GAIN:.0%} on the tuning split ({_figures(medians)})"
        )
    final = apply_plan(pipeline, chosen, cache=cache)
    confirm = _medians(interleaved({CURRENT: pipeline, "plan": final}, items, ROUNDS))
    load = meter.stop()
    speedup = confirm[CURRENT] / confirm["plan"] if confirm["plan"] > 0 else 1.0
    if speedup <= 1.0:
        raise Rejected(
            f"{proposal.id}: the stages' best counts together measured {speedup:.2f}x the "
            f"current settings ({_figures(medians)})"
        )
    return Tuned(
        params=ThreadPlanParams(
            stages=chosen,
            counts=tuple(counts),
            cores=params.cores,
            uniform=params.uniform,
            shared=params.shared,
        ).to_params(),
        notes={
            "ms_per_input": {label: round(value * 1000, 3) for label, value in medians.items()},
            "confirmed_ms_per_input": {k: round(v * 1000, 3) for k, v in confirm.items()},
            "inputs": len(items),
            "rounds": ROUNDS,
            "host_load": load.to_dict(),
            "plan": describe_plan(chosen),
        },
        est_stage_speedup=round(speedup, 3),
    )


def describe_plan(plan: Mapping[str, Mapping[str, Any]]) -> str:
    """``classify: 1 thread (no spinning); rank: 2 threads``."""
    parts = []
    for name, entry in plan.items():
        count = int(entry["threads"])
        text = f"{name}: {count} thread{'s' if count != 1 else ''}"
        if entry.get("spinning") is False and count > 1:
            text += " (no spinning)"
        parts.append(text)
    return "; ".join(parts)


def interleaved(
    variants: Mapping[str, Pipeline], items: Sequence[Any], rounds: int
) -> dict[str, list[float]]:
    """Seconds per input of each variant, ``rounds`` passes each, interleaved with the
    order rotating each round (a slow patch of a shared host falls on every variant
    alike); warm state is reset before every pass. One untimed pass of each variant
    first: a rebuilt session pays for every new input shape once."""
    names = list(variants)
    for name in names:
        _one_pass(variants[name], items)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_one_pass(variants[name], items))
    return samples


# -- helpers --------------------------------------------------------------------------------


def _variants(
    names: Sequence[str], counts: Sequence[int], spinning: bool | None, uniform: bool
) -> dict[str, dict[str, dict[str, Any]]]:
    if uniform:
        return {f"*@{n}": {name: settings_for(n, spinning) for name in names} for n in counts}
    return {f"{name}@{n}": {name: settings_for(n, spinning)} for name in names for n in counts}


def _choose(
    plans: Mapping[str, Mapping[str, Mapping[str, Any]]],
    medians: Mapping[str, float],
    names: Sequence[str],
    uniform: bool,
) -> dict[str, dict[str, Any]]:
    """Each stage's fastest count (fewest threads on a tie) that beats the current
    settings by :data:`MIN_GAIN`."""
    floor = medians[CURRENT] * (1.0 - MIN_GAIN)
    groups = ["*"] if uniform else list(names)
    chosen: dict[str, dict[str, Any]] = {}
    for group in groups:
        labels = [label for label in plans if label.rsplit("@", 1)[0] == group]
        best = min(labels, key=lambda label: (medians[label], int(label.rsplit("@", 1)[1])))
        if medians[best] < floor:
            chosen.update({name: dict(entry) for name, entry in plans[best].items()})
    return chosen


def _timing_inputs(pipeline: Pipeline, items: Sequence[Any]) -> list[Any]:
    """Inputs spread over the tuning split, as many as fit :data:`PASS_TARGET_S` per pass
    of the current pipeline (between :data:`MIN_INPUTS` and :data:`MAX_INPUTS`)."""
    items = list(items)
    if not items:
        raise Rejected("the tuning split is empty: nothing to measure on")
    pipeline.run(items[0])  # a first call pays for lazy set-up
    probe = items[: min(len(items), 2)]
    per_item = _one_pass(pipeline, probe)
    wanted = int(PASS_TARGET_S / per_item) if per_item > 0 else MAX_INPUTS
    count = max(MIN_INPUTS, min(MAX_INPUTS, wanted, len(items)))
    count = min(count, len(items))
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def _one_pass(pipeline: Pipeline, items: Sequence[Any]) -> float:
    reset_state(pipeline)
    started = time.perf_counter()
    for item in items:
        pipeline.run(item)
    return (time.perf_counter() - started) / max(len(items), 1)


def _medians(samples: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in samples.items()}


def _figures(medians: Mapping[str, float]) -> str:
    return ", ".join(f"{label} {value * 1000:.2f} ms/input" for label, value in medians.items())
