"""The planner: collect every plugin's proposals, estimate each one's end-to-end effect on
the metric the requirements name, and rank them by gain per unit of effort.

The estimate replays the profile's recorded per-input stage times (``Profile.stage_ms``)
with the proposal's stage scaled by its estimated stage speedup, then recomputes the metric
on the replayed rows. This is Amdahl's law done on the data rather than on averages: it
gives the right answer for throughput (the sum of the times) *and* for a latency
percentile, where a stage that is slow only on long inputs moves P99 far more than its
mean share suggests (and a plain ``1 / ((1 - s) + s / k)`` would be wrong).

The five mistakes the loop exists to prevent include "optimizing a stage that is 5 % of
the time": every ranked proposal carries the most its stage could ever give (the stage's
time removed entirely), and one whose ceiling is below the minimum gain is marked as one
that cannot matter, with the sentence that says why.

The estimate is computed here and nowhere else, and it is a deterministic function of the
profile, the proposal and the metric: ``pipetune propose``, every plan of the optimize
loop and every report show the figure :func:`estimate` gives for the profile it was made
on. (Two profiles of the same pipeline differ by their measurement noise, and so do the
estimates made on them.) What a change's tune step learns later is a second figure,
:func:`~pipetune.core.measure.estimate.tuned_estimate` (the validator records it), reported
beside the first and never in its place. The replay itself is in
:mod:`pipetune.core.measure.estimate`, shared by both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import DuplicateError
from pipetune.core.kernel.manager import HookFailure
from pipetune.core.kernel.results import ALL_STAGES, EFFORT_HOURS, Profile, Proposal
from pipetune.core.measure.estimate import MAX_STAGE_SPEEDUP, replay_speedup, stage_columns

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager
    from pipetune.core.kernel.model import Pipeline, Requirements

#: A ceiling above this bounds nothing worth printing: the rest of the pipeline is under
#: 1 % of the metric, a share the profile does not resolve from its timer and glue overhead
#: (such ceilings read "≤ 603179.73x").
INFORMATIVE_CEILING = 100.0


@dataclass(frozen=True)
class Ranked:
    """A proposal with the planner's figures.

    ``proposal.est_e2e_speedup`` holds the replayed end-to-end estimate for ``metric``;
    ``ceiling`` the estimate if the stage took no time at all; ``score`` the gain per hour
    of effort used for ranking; ``note`` a sentence for the report.
    """

    proposal: Proposal
    ceiling: float
    score: float
    share: float
    note: str = ""
    cannot_matter: bool = False
    gate: float = 1.05  # 1 + min_gain

    @property
    def key(self) -> str:
        return self.proposal.key

    @property
    def est_e2e_speedup(self) -> float:
        return float(self.proposal.est_e2e_speedup or 1.0)

    @property
    def ceiling_informative(self) -> bool:
        """Whether the ceiling is worth printing (see :func:`ceiling_informative`)."""
        return ceiling_informative(self.ceiling)

    def beyond_ceiling(self, measured: float | None) -> bool:
        """Whether a measured end-to-end speedup exceeds the most this proposal's stage
        could give on the profile it was planned on: the profile or the measurement is
        off, and the measurement is taken again before the change is kept."""
        return measured is not None and math.isfinite(self.ceiling) and measured > self.ceiling


@dataclass(frozen=True)
class Plan:
    """Everything the planner found, for the loop and the report."""

    metric: str
    candidates: tuple[Ranked, ...]  # proposed, applicable, ranked best first
    advice: tuple[Ranked, ...] = ()  # applicable=False: listed with their effort, never applied
    unavailable: tuple[Ranked, ...] = ()  # missing dependency or hardware: reason + install
    excluded: tuple[tuple[Ranked, str], ...] = ()  # conflicts, already tried: with the reason
    failures: tuple[HookFailure, ...] = ()  # plugins that raised in propose_changes

    @property
    def worth_trying(self) -> tuple[Ranked, ...]:
        """Candidates that can still make a difference, best first."""
        return tuple(r for r in self.candidates if not r.cannot_matter)

    def all(self) -> list[Ranked]:
        return [
            *self.candidates,
            *self.advice,
            *self.unavailable,
            *(ranked for ranked, _ in self.excluded),
        ]


@dataclass
class _Collected:
    proposals: list[Proposal] = field(default_factory=list)
    failures: list[HookFailure] = field(default_factory=list)


# -- collecting ------------------------------------------------------------------------------


def collect_proposals(
    pm: PipetunePluginManager,
    pipeline: Pipeline,
    profile: Profile,
    requirements: Requirements,
) -> tuple[list[Proposal], list[HookFailure]]:
    """Every plugin's proposals (``propose_changes`` on every plugin).

    A plugin that raises is reported and the others go on. The same proposal id from two
    plugins raises :class:`DuplicateError` naming both; a plugin returning a proposal that
    claims another plugin as its owner is reported (apply would be dispatched to the wrong
    plugin) and the proposal dropped.
    """
    before = len(pm.hook_failures)
    results = pm.call_each(
        "propose_changes", pipeline=pipeline, profile=profile, requirements=requirements
    )
    collected = _Collected(failures=list(pm.hook_failures[before:]))
    owners: dict[str, str] = {}
    seen_keys: set[str] = set()
    for plugin, values in results:
        if isinstance(values, Proposal):
            values = [values]
        for value in values:
            if not isinstance(value, Proposal):
                _failed(
                    pm,
                    collected,
                    plugin,
                    f"returned {type(value).__name__}, not a Proposal: ignored",
                )
                continue
            if value.plugin != plugin:
                _failed(
                    pm,
                    collected,
                    plugin,
                    f"proposal {value.id!r} names plugin {value.plugin!r} as its owner; "
                    f"it must be {plugin!r} (apply is dispatched to the owner): ignored",
                )
                continue
            owner = owners.setdefault(value.id, plugin)
            if owner != plugin:
                raise DuplicateError(
                    f"proposal id {value.id!r} is proposed by both {owner!r} and {plugin!r}"
                )
            if value.key in seen_keys:  # the same plugin proposing the same change twice
                continue
            seen_keys.add(value.key)
            collected.proposals.append(value)
    return collected.proposals, collected.failures


def _failed(pm: Any, collected: _Collected, plugin: str, problem: str) -> None:
    """A broken ``propose_changes`` result: recorded with the manager (an error in strict
    mode) and in this plan's failures."""
    record = getattr(pm, "record_failure", None)
    if record is not None:
        record(plugin, "propose_changes", problem)
    collected.failures.append(HookFailure(plugin, "propose_changes", problem))


# -- estimating ------------------------------------------------------------------------------


def ceiling_informative(ceiling: float | None) -> bool:
    """A ceiling is printed only when it bounds something: finite and at most
    :data:`INFORMATIVE_CEILING` (the rest of the pipeline at least 1 % of the metric)."""
    return ceiling is not None and math.isfinite(ceiling) and ceiling <= INFORMATIVE_CEILING


def rank(
    proposals: Iterable[Proposal],
    profile: Profile,
    requirements: Requirements,
    *,
    accepted: Sequence[Proposal] = (),
    tried: Iterable[str] = (),
    failures: Sequence[HookFailure] = (),
) -> Plan:
    """Estimate and rank proposals (see the module docstring).

    Args:
        accepted: changes already kept in this run: proposals that conflict with one of
            them (either side may declare the conflict) are excluded, as are re-proposals
            of an accepted change.
        tried: proposal keys (``id@stage``) already tried in this run; excluded.
    """
    metric = requirements.metric
    accepted_ids = {p.id for p in accepted}
    accepted_keys = {p.key for p in accepted}
    conflicting = {c for p in accepted for c in p.conflicts}
    tried_keys = set(tried)
    candidates: list[Ranked] = []
    advice: list[Ranked] = []
    unavailable: list[Ranked] = []
    excluded: list[tuple[Ranked, str]] = []
    for proposal in proposals:
        ranked = estimate(proposal, profile, metric, requirements.min_gain)
        if proposal.key in accepted_keys:
            excluded.append((ranked, "already applied in this run"))
        elif proposal.id in conflicting or accepted_ids & set(proposal.conflicts):
            other = next(
                (
                    p.id
                    for p in accepted
                    if proposal.id in p.conflicts or p.id in proposal.conflicts
                ),
                "?",
            )
            excluded.append((ranked, f"conflicts with {other}, already applied"))
        elif proposal.key in tried_keys:
            excluded.append((ranked, "already tried in this run"))
        elif proposal.status == "unavailable":
            unavailable.append(ranked)
        elif not proposal.applicable:
            advice.append(ranked)
        else:
            candidates.append(ranked)
    order = _order_key
    return Plan(
        metric=metric,
        candidates=tuple(sorted(candidates, key=order)),
        advice=tuple(sorted(advice, key=order)),
        unavailable=tuple(sorted(unavailable, key=order)),
        excluded=tuple(excluded),
        failures=tuple(failures),
    )


def _order_key(ranked: Ranked) -> tuple[bool, bool, float, float, str]:
    # Proposals whose own estimate is below the minimum gain still get tried (estimates
    # are guesses; 1.0 often means "unknown until tuned") but after those above it.
    below_gate = ranked.est_e2e_speedup < ranked.gate
    return (ranked.cannot_matter, below_gate, -ranked.score, -ranked.est_e2e_speedup, ranked.key)


def estimate(proposal: Proposal, profile: Profile, metric: str, min_gain: float) -> Ranked:
    """One proposal's end-to-end estimate, ceiling, score and note: a function of the
    profile's recorded stage times and the proposal's stage speedup only (whatever
    ``est_e2e_speedup`` the proposal arrives with is replaced)."""
    columns = stage_columns(profile, proposal.stage)
    share = sum(profile.stages[i].share for i in columns)
    est = replay_speedup(profile, proposal.stage, proposal.est_stage_speedup, metric)
    ceiling = replay_speedup(profile, proposal.stage, MAX_STAGE_SPEEDUP, metric)
    hours = EFFORT_HOURS.get(proposal.effort, EFFORT_HOURS["days"])
    score = (est - 1.0) / hours
    label = _metric_label(metric)
    where = "the whole pipeline" if proposal.stage == ALL_STAGES else f"stage {proposal.stage!r}"
    note = ""
    cannot_matter = False
    if not columns:
        note = f"{where} is not in the profile: its effect cannot be estimated"
    elif ceiling < 1.0 + min_gain:
        cannot_matter = True
        note = (
            f"cannot matter: {where} is {share:.0%} of the time: at most {ceiling:.2f}x "
            f"end to end on {label}, below the {min_gain:.0%} minimum gain"
        )
    elif share < 0.25:
        note = f"{where} is {share:.0%} of the time: at most {ceiling:.2f}x end to end on {label}"
    return Ranked(
        proposal=proposal.evolve(est_e2e_speedup=est),
        ceiling=ceiling,
        score=score,
        share=share,
        note=note,
        cannot_matter=cannot_matter,
        gate=1.0 + min_gain,
    )


def plan(
    pm: PipetunePluginManager,
    pipeline: Pipeline,
    profile: Profile,
    requirements: Requirements,
    *,
    accepted: Sequence[Proposal] = (),
    tried: Iterable[str] = (),
) -> Plan:
    """Collect the proposals for ``pipeline`` and rank them."""
    proposals, failures = collect_proposals(pm, pipeline, profile, requirements)
    return rank(proposals, profile, requirements, accepted=accepted, tried=tried, failures=failures)


def _metric_label(metric: str) -> str:
    return "throughput" if metric == "throughput" else f"{metric.upper()} latency"


def describe(ranked: Ranked) -> Mapping[str, Any]:
    """The report contract's proposal entry (the JSON contract), with the planner's additions."""
    p = ranked.proposal
    return {
        "id": p.id,
        "plugin": p.plugin,
        "stage": p.stage,
        "title": p.title,
        "rationale": p.rationale,
        "est_stage_speedup": p.est_stage_speedup,
        "est_e2e_speedup": ranked.est_e2e_speedup,
        "ceiling": ranked.ceiling,
        "ceiling_informative": ranked.ceiling_informative,
        "share": ranked.share,
        "effort": p.effort,
        "accuracy_risk": p.accuracy_risk,
        "status": p.status,
        "reason": p.reason,
        "install": p.install,
        "applicable": p.applicable,
        "note": ranked.note,
        "cannot_matter": ranked.cannot_matter,
        "conflicts": list(p.conflicts),
        # what the estimate assumes in flight (a batch), when the change needs several
        "assumes": p.in_flight.describe() if p.in_flight is not None else None,
    }
