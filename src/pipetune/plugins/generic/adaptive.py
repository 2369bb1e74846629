"""Adaptive computation: route easy inputs to a smaller model the user supplies, the rest to
the large one, with the confidence threshold tuned for fidelity.

**Declaring the smaller model.** Put it in a slot named ``small_<slot>`` next to the slot it
stands in for, on the stage that holds the large model::

    embed = embed.with_slots(small_model=first_two_layers)        # stands in for `model`
    classify = classify.with_slots(
        small_head=head_for_small_encoder,                         # stands in for `head`
        confidence=top_probability,                                # how sure the small path is
    )

The *routed span* runs from the first stage with a ``small_*`` slot to the last stage with a
``small_*`` or ``confidence`` slot. On the small path every stage of the span runs with its
``small_<slot>`` values substituted (stages with none run as they are). Confidence is

* with a ``confidence`` slot (a callable) on the span's last stage:
  ``confidence(value, **slots) -> float``, called on what that stage is about to receive
  (the small path's value), with that stage's small-path slots it names (``head=`` gets the
  small head) — for the nlp demo, the small head's top softmax probability over the
  section embeddings;
* otherwise the top softmax probability of the span's small output, which must then be a
  vector of scores (logits or probabilities: an ndarray, a tensor or a list of floats).

Easy inputs (confidence at or above the threshold) take the small path's result; the others
run the span as it was (the large model). Stages keep their names: the span's first stage
runs the small path (its time includes it) and hands an already-decided result to the later
span stages, which pass it through (:class:`Routed`).

**Tuning** (``tune``) runs the small path on the calibration (tuning) split and compares
the routed outputs with the large path's for every candidate threshold (each distinct
confidence, most confident first). For proportion metrics (label agreement, exact match,
recall...) it keeps the largest routed share whose cost stays within the remaining fidelity
budget *with 90 % confidence*: the cost bound is the routed share times a one-sided Wilson
upper bound on the share of routed inputs whose output changes, so a threshold is not picked
just before the first disagreement by luck (simulated on a hard toy, a point estimate with
half the budget held back failed the held-out gate 15-35 % of the time; the bound, 2-9 %).
For other metrics it keeps half the budget as the margin. Every smaller share must pass
too. With few calibration inputs the bound routes little: a 1 % budget needs a tuning split
of a few hundred inputs (the refusal says how many). The validator then checks fidelity on
the held-out split and the speed side by side. The change is refused (``Rejected``, with
the figures) when no threshold keeps fidelity, or when the small path costs too much of the
large one for the routed share to pay.

**Reporting.** The routing stage counts its decisions (``pipetune_stats``), so the held-out
pass of the validator records the share routed to each model in the trial's notes; the
tune notes carry the calibration figures.

**Where the parts live.** This module holds the proposal side: the profile facts, the
proposal and materialize. The span is found in :mod:`.adaptive_span`, routed at run time by
:mod:`.adaptive_routing` and tuned by :mod:`.adaptive_tune`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError, PipelineError
from pipetune.core.kernel.results import Proposal
from pipetune.plugins.generic.adaptive_routing import Router, route
from pipetune.plugins.generic.adaptive_span import (
    declared,
    find_span,
    first_stage_speedup,
    span_ms,
)

if TYPE_CHECKING:
    from pipetune.core.kernel.context import Observations
    from pipetune.core.kernel.model import Pipeline
    from pipetune.core.kernel.results import Change, Profile

PROPOSAL = "generic.adaptive_computation"
PLUGIN = "generic"
#: Observed inputs the profile facts time the small path on.
OBSERVE_ITEMS = 8
#: Without measured facts, the proposal's stage estimate.
DEFAULT_ESTIMATE = 1.5


# -- profile facts, proposal ----------------------------------------------------------------------


def observe(pipeline: Pipeline, profile: Profile, observed: Observations) -> dict[str, Any] | None:
    """Profile facts: the small path's time and confidences on a few observed inputs of the
    span, against the span's measured time."""
    try:
        span = find_span(pipeline)
    except ConfigError as exc:
        return {"error": str(exc)}
    if span is None:
        return None
    facts: dict[str, Any] = {"span": list(span.names)}
    large_ms = span_ms(profile, span)
    if large_ms is not None:
        facts["large_ms"] = large_ms
    inputs = observed.inputs_of(span.first)[:OBSERVE_ITEMS]
    if not inputs:
        return facts
    stages = [pipeline.stage(name) for name in span.names]
    router = Router(span, stages, -math.inf)
    slots = dict(stages[0].slots)
    try:
        router.decide(inputs[0], slots)  # warm-up
        started = time.perf_counter()
        confidences = [router.decide(item, slots)[0] for item in inputs]
        small_ms = (time.perf_counter() - started) * 1000.0 / len(inputs)
    except Exception as exc:  # the user's small model failing must not break profiling
        facts["error"] = f"{type(exc).__name__}: {exc}"
        return facts
    facts.update(small_ms=small_ms, confidence=[round(c, 4) for c in confidences])
    return facts


def proposals(pipeline: Pipeline, profile: Profile, facts: Mapping[str, Any]) -> list[Proposal]:
    try:
        span = find_span(pipeline)
    except ConfigError as exc:
        first = next((s.name for s in pipeline.stages if declared(s)), pipeline.stage_names[0])
        return [
            Proposal(
                id=PROPOSAL,
                plugin=PLUGIN,
                stage=first,
                title="Adaptive computation (route easy inputs to the smaller model)",
                applicable=False,
                reason=str(exc),
                effort="minutes",
                accuracy_risk="medium",
            )
        ]
    if span is None:
        return []
    entry: Any = facts.get("adaptive") if isinstance(facts.get("adaptive"), Mapping) else {}
    small_ms, large_ms = entry.get("small_ms"), entry.get("large_ms")
    confidences = entry.get("confidence") or []
    est = DEFAULT_ESTIMATE
    evidence: dict[str, Any] = {"span": list(span.names)}
    if small_ms and large_ms and large_ms > 0:
        # A first guess at the share: observed inputs the small path is at least 90 % sure of.
        share = float(np.mean([c >= 0.9 for c in confidences])) if confidences else 0.5
        span_speedup = large_ms / max(1e-9, small_ms + (1 - share) * large_ms)
        est = first_stage_speedup(profile, span, span_speedup) or span_speedup
        evidence.update(small_ms=small_ms, large_ms=large_ms, confident_share=share)
        cost = (
            f"on {len(confidences)} observed inputs the small path costs {small_ms:.2f} ms "
            f"against {large_ms:.2f} ms for the span ({small_ms / large_ms:.0%}); "
            f"{share:.0%} of them it is >= 90 % sure of"
        )
    else:
        cost = "the small path's cost is measured when the threshold is tuned"
    span_text = " -> ".join(span.names)
    return [
        Proposal(
            id=PROPOSAL,
            plugin=PLUGIN,
            stage=span.first,
            title="Adaptive computation: route easy inputs to the smaller model",
            rationale=(
                f"a smaller model is declared for {span_text}; inputs it is confident about "
                f"take its result, the rest run the large model. {cost}. The confidence "
                "threshold is tuned on the calibration split for fidelity"
            ),
            est_stage_speedup=max(1.0, float(est)),
            effort="minutes",
            accuracy_risk="medium",
            params={"span": list(span.names)},
            evidence=evidence,
        )
    ]


def materialize(change: Change, pipeline: Pipeline) -> Pipeline:
    params = dict(change.params)
    if "threshold" not in params:
        raise ConfigError(f"{PROPOSAL}: the change has no 'threshold' parameter")
    span = find_span(pipeline)
    if span is None:
        raise PipelineError(
            f"{PROPOSAL}: pipeline {pipeline.name!r} declares no smaller model (or is already "
            "routed)"
        )
    expected = params.get("span")
    if expected and list(expected) != list(span.names):
        raise PipelineError(
            f"{PROPOSAL}: the change routes {' -> '.join(expected)}, but the pipeline declares "
            f"{' -> '.join(span.names)}"
        )
    return route(pipeline, float(params["threshold"]), span)
