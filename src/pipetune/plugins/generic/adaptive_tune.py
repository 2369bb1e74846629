"""The tune step of adaptive computation (:mod:`.adaptive`): the small and large paths run
on the calibration split, and the confidence threshold is chosen as the largest routed share
whose fidelity cost stays within the budget (a Wilson upper bound for proportion metrics),
or the change is refused with the figures when nothing is routable or routing does not pay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.generic.adaptive_routing import Router
from pipetune.plugins.generic.adaptive_span import (
    Span,
    find_span,
    first_stage_speedup,
    span_ms,
)
from pipetune.plugins.generic.fidelity import equal_or_false

if TYPE_CHECKING:
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Requirements, Workload
    from pipetune.core.kernel.results import Profile

#: For metrics that are not proportions: the share of the remaining fidelity budget kept as
#: a margin for the held-out split (the calibration may spend the rest).
SAFETY = 0.5
#: Proportion metrics: the one-sided confidence of the upper bound on the change rate of
#: routed inputs (Wilson score bound).
UPPER_CONFIDENCE = 0.90
UPPER_Z = 1.2816
#: Candidate thresholds tried at most (quantiles of the calibration confidences).
MAX_THRESHOLDS = 200
#: Observed inputs the profile facts time the small path on.


def tune(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
    *,
    safety: float = SAFETY,
) -> Tuned:
    """Choose the threshold on the calibration split (see the module docstring)."""
    span = find_span(pipeline)
    if span is None:
        raise Rejected("no smaller model is declared (or the span is already routed)")
    stages = [pipeline.stage(name) for name in span.names]
    items = list(workload.items)
    if len(items) < 2:
        raise Rejected("the calibration split needs at least 2 inputs")
    context.log(f"adaptive: calibrating on {len(items)} inputs")
    inputs = context.stage_inputs(pipeline, span.first, items)
    confidences, small_outputs, small_ms = _small_path(pipeline, span, stages, inputs)
    large_outputs, large_ms = _large(pipeline, span, context, items, inputs)

    reference = context.fidelity(large_outputs)
    budget = max(0.0, reference.value - context.fidelity_floor)
    proportion = _is_proportion(reference.metric)
    changed = np.array([not _same(a, b) for a, b in zip(small_outputs, large_outputs, strict=True)])
    order = np.argsort(-confidences, kind="stable")
    changed_ranked = np.cumsum(changed[order])
    n = len(items)
    best, curve = _scan_thresholds(
        context,
        requirements,
        confidences,
        order,
        changed_ranked,
        (small_outputs, large_outputs),
        reference,
        safety,
    )
    span_text = " -> ".join(span.names)
    if best is None:
        raise _nothing_routable(curve, proportion, n, budget, span_text, reference.metric)
    figures = {
        "span": list(span.names),
        "calibration_items": n,
        "small_ms": small_ms,
        "large_ms": large_ms,
        "fidelity_budget": budget,
        "fidelity_of_large_path": reference.value,
        "metric": reference.metric,
        "rule": _rule(proportion, safety),
        "curve": curve[:50],
    }
    k, threshold, fidelity = best
    share = k / len(items)
    new_ms = small_ms + (1 - share) * large_ms
    span_speedup = large_ms / new_ms if new_ms > 0 else 1.0
    e2e = _e2e(context.profile, span, span_speedup)
    gate = 1.0 + requirements.min_gain
    figures.update(
        threshold=threshold,
        small_share=share,
        large_share=1 - share,
        calibration_fidelity=fidelity.value,
        changed_routed=int(changed_ranked[k - 1]),
        span_speedup=span_speedup,
        est_e2e_speedup=e2e,
    )
    context.log(
        f"adaptive: threshold {threshold:.4f} routes {share:.1%} to the small model, "
        f"{reference.metric} {fidelity.value:.4f} on calibration; span {span_speedup:.2f}x"
    )
    if (e2e if e2e is not None else span_speedup) < gate:
        raise _does_not_pay(figures, reference.metric, gate)
    est = first_stage_speedup(context.profile, span, span_speedup) if context.profile else None
    return Tuned(
        params={"threshold": threshold, "span": list(span.names)},
        notes=figures,
        est_stage_speedup=est or span_speedup,
    )


def _small_path(
    pipeline: Pipeline, span: Span, stages: Sequence[Stage], inputs: Sequence[Any]
) -> tuple[np.ndarray, list[Any], float]:
    """The small model's confidence and the pipeline's output for each input when it takes
    the small path, and the small path's time per input (ms)."""
    router = Router(span, stages, -math.inf)
    slots = dict(stages[0].slots)
    router.decide(inputs[0], slots)  # warm-up (lazy initialisation of the small model)
    started = time.perf_counter()
    decided = [router.decide(value, slots) for value in inputs]
    small_ms = (time.perf_counter() - started) * 1000.0 / len(inputs)
    confidences = np.array([c for c, _ in decided])
    return confidences, _after_span(pipeline, span, [out for _, out in decided]), small_ms


def _scan_thresholds(
    context: TuneContext,
    requirements: Requirements,
    confidences: np.ndarray,
    order: np.ndarray,
    changed_ranked: np.ndarray,
    outputs: tuple[Sequence[Any], Sequence[Any]],
    reference: Any,
    safety: float,
) -> tuple[tuple[int, float, Any] | None, list[dict[str, Any]]]:
    """Route the k most confident inputs to the small model, for growing k, while the
    fidelity it costs stays within the budget: the last k that did (with its threshold and
    fidelity), or ``None``, and the curve of every k tried."""
    small_outputs, large_outputs = outputs
    floor = context.fidelity_floor
    budget = max(0.0, reference.value - floor)
    proportion = _is_proportion(reference.metric)
    n = len(confidences)
    best = None
    curve = []
    for k in _threshold_candidates(confidences[order]):  # the k most confident go small
        routed = list(large_outputs)
        for i in order[:k]:
            routed[i] = small_outputs[i]
        fidelity = context.fidelity(routed)
        changes = int(changed_ranked[k - 1])
        # The fidelity the routing may cost: a one-sided upper bound on the share of
        # routed inputs whose output changes, times the routed share (proportion metrics);
        # otherwise the calibration figure, keeping half the budget as a margin.
        if proportion:
            cost = k / n * wilson_upper(changes, k, UPPER_Z)
        else:
            cost = (reference.value - fidelity.value) / (1.0 - safety)
        drop = fidelity.details.get("accuracy_drop") if fidelity.details else None
        ok = (
            cost <= budget + 1e-12
            and fidelity.value >= floor - 1e-12
            and not (
                isinstance(drop, int | float) and drop > requirements.max_accuracy_drop + 1e-12
            )
        )
        threshold = float(confidences[order[k - 1]])
        curve.append(
            {
                "share": k / n,
                "threshold": threshold,
                "fidelity": fidelity.value,
                "changed": changes,
                "bound": cost,
            }
        )
        if not ok:
            break
        best = (k, threshold, fidelity)
    return best, curve


def _rule(proportion: bool, safety: float) -> str:
    """How the threshold is chosen, in words, for the report."""
    if proportion:
        return (
            f"largest routed share whose {UPPER_CONFIDENCE:.0%} upper bound on the fidelity "
            "it costs stays within the budget"
        )
    return f"largest routed share costing at most {1 - safety:.0%} of the budget"


def _does_not_pay(figures: Mapping[str, Any], metric: str, gate: float) -> Rejected:
    """Why routing at the chosen threshold is not fast enough to keep (from its figures)."""
    small_ms, large_ms = figures["small_ms"], figures["large_ms"]
    e2e = figures["est_e2e_speedup"]
    return Rejected(
        f"does not pay: the small path costs {small_ms:.2f} ms per input against "
        f"{large_ms:.2f} ms for the large span ({small_ms / large_ms:.0%}); routing "
        f"{figures['small_share']:.1%} of inputs to it (threshold {figures['threshold']:.3f}, "
        f"{metric} {figures['calibration_fidelity']:.4f} on calibration) gives "
        f"{figures['span_speedup']:.2f}x on the span"
        + (f", {e2e:.2f}x end to end" if e2e is not None else "")
        + f", below the {gate:.2f}x minimum"
    )


def _nothing_routable(
    curve: Sequence[Mapping[str, Any]],
    proportion: bool,
    n: int,
    budget: float,
    span_text: str,
    metric: str,
) -> Rejected:
    """Why no share of the inputs can take the small path."""
    top = curve[0] if curve else {"fidelity": float("nan"), "share": 0.0, "changed": 0}
    if proportion and top["changed"] == 0:
        return Rejected(
            f"the calibration split is too small to route anything on {span_text}: with "
            f"{n} inputs a {UPPER_CONFIDENCE:.0%} bound on the change rate of routed "
            f"inputs is at least {wilson_upper(0, n, UPPER_Z):.1%}, above the "
            f"{budget:.1%} fidelity budget, even though the small model's most confident "
            f"answers matched; use a workload of at least "
            f"{math.ceil(UPPER_Z**2 / max(budget, 1e-9))} inputs for the tuning split"
        )
    return Rejected(
        f"the smaller model is not reliable enough to route anything on {span_text}: even "
        f"its most confident {top['share']:.1%} of inputs change {top['changed']} "
        f"output(s) ({metric} {top['fidelity']:.3f}) on the calibration split "
        f"({n} inputs), beyond the {budget:.1%} fidelity budget"
    )


def wilson_upper(changes: int, n: int, z: float = UPPER_Z) -> float:
    """One-sided Wilson upper bound on a proportion (``changes`` of ``n``)."""
    if n <= 0:
        return 1.0
    p = changes / n
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + margin) / denominator)


def _is_proportion(metric: str) -> bool:
    return any(
        hint in metric.lower()
        for hint in ("agreement", "match", "recall", "accuracy", "precision", "iou")
    )


def _same(a: Any, b: Any) -> bool:
    """Exactly the same output (arrays and tensors element for element)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    if hasattr(b, "detach"):
        b = b.detach().cpu().numpy()
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        try:
            return bool(np.array_equal(np.asarray(a), np.asarray(b)))
        except (TypeError, ValueError):
            return False
    return equal_or_false(a, b)


def _threshold_candidates(ranked_confidences: np.ndarray) -> list[int]:
    """Numbers of routed inputs to try: each distinct confidence (ties go together), at
    most :data:`MAX_THRESHOLDS` of them, increasing."""
    n = len(ranked_confidences)
    # k such that the k-th most confident differs from the (k+1)-th: a real threshold
    ranked = ranked_confidences
    cuts = [k for k in range(1, n + 1) if k == n or ranked[k] < ranked[k - 1]]
    if len(cuts) > MAX_THRESHOLDS:
        picks = np.unique(np.linspace(0, len(cuts) - 1, MAX_THRESHOLDS).round().astype(int))
        cuts = [cuts[i] for i in picks]
    return cuts


def _after_span(pipeline: Pipeline, span: Span, values: list[Any]) -> list[Any]:
    """Run the stages after the span (shared by both paths) on span outputs."""
    position = pipeline.index(span.last)
    for stage in pipeline.stages[position + 1 :]:
        values = [stage(v) for v in values]
    return values


def _large(
    pipeline: Pipeline,
    span: Span,
    context: TuneContext,
    items: list[Any],
    inputs: list[Any],
) -> tuple[list[Any], float]:
    """The large path's outputs on the calibration split and its time per input (ms).

    On the original pipeline the cached original outputs are exactly the large path's and
    the profile has the span's time; otherwise the pipeline runs (its outputs may already
    differ from the original's after earlier lossy changes)."""
    large_ms = span_ms(context.profile, span) if context.profile is not None else None
    if pipeline is context.original and len(items) == len(context.workload.items):
        outputs = context.baseline_outputs()
        if large_ms is not None:
            return outputs, large_ms
    else:
        outputs = context.outputs(pipeline, items)
    if large_ms is None:
        sample = inputs[: min(len(inputs), 16)]
        stages = [pipeline.stage(name) for name in span.names]
        started = time.perf_counter()
        for value in sample:
            for stage in stages:
                value = stage(value)
        large_ms = (time.perf_counter() - started) * 1000.0 / len(sample)
    return outputs, large_ms


def _e2e(profile: Profile | None, span: Span, span_speedup: float) -> float | None:
    if profile is None:
        return None
    share = sum(profile.share(name) for name in span.names)
    if share <= 0:
        return None
    return 1.0 / ((1.0 - share) + share / span_speedup)
