"""The planner: replayed end-to-end estimates, ranking, and what it refuses to rank."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune import hookimpl
from pipetune.core.kernel.errors import DuplicateError
from pipetune.core.kernel.model import Requirements
from pipetune.core.kernel.results import LatencyStats, Profile, Proposal, StageStats
from pipetune.core.loop.planner import (
    ceiling_informative,
    collect_proposals,
    describe,
    estimate,
    plan,
    rank,
)
from pipetune.core.measure.estimate import replay_speedup, tuned_estimate
from pipetune.core.runtime.machine import detect_machine
from tests.core.loop_toys import manager, toy_pipeline


def make_profile(rows: list[list[float]], names=("a", "b")) -> Profile:
    """A profile from per-input stage times (ms); the last column is ``other``."""
    array = np.asarray(rows, dtype=float)
    totals = array.sum(axis=0)
    stages = tuple(
        StageStats(name=n, kind="other", share=float(totals[i] / totals.sum()), p50_ms=0.0)
        for i, n in enumerate((*names, "other"))
    )
    latency = array.sum(axis=1)
    return Profile(
        pipeline="p",
        mode="offline",
        samples=len(rows),
        throughput_rps=1000 * len(rows) / latency.sum(),
        latency_ms=LatencyStats(
            p50=float(np.percentile(latency, 50)),
            p95=float(np.percentile(latency, 95)),
            p99=float(np.percentile(latency, 99)),
            max=float(latency.max()),
        ),
        stages=stages,
        machine=detect_machine(),
        stage_ms=tuple(tuple(r) for r in rows),
    )


def proposal(stage: str, speedup: float, **fields) -> Proposal:
    fields.setdefault("id", f"toy.{stage}_{speedup:g}")
    return Proposal(plugin="toy", stage=stage, title="t", est_stage_speedup=speedup, **fields)


def test_replay_matches_amdahl_for_throughput():
    profile = make_profile([[8.0, 2.0, 0.0]] * 10)
    # stage a is 80 % of the time; 4x on it: 1 / (0.2 + 0.8 / 4) = 2.5x
    assert replay_speedup(profile, "a", 4.0, "throughput") == pytest.approx(2.5)
    assert replay_speedup(profile, "b", 1e9, "throughput") == pytest.approx(1.25)


def test_replay_sees_a_tail_that_averages_hide():
    # Stage a is slow only on 5 inputs in 100: a third of the mean, but it *is* the P99.
    rows = [[1.0, 10.0, 0.0]] * 95 + [[100.0, 10.0, 0.0]] * 5
    profile = make_profile(rows)
    share = profile.share("a")
    amdahl = 1 / ((1 - share) + share / 10)
    p99 = replay_speedup(profile, "a", 10.0, "p99")
    throughput = replay_speedup(profile, "a", 10.0, "throughput")
    assert throughput == pytest.approx(amdahl)
    assert p99 > 3 * amdahl  # the tail shrinks far more than the mean


def test_a_stage_that_cannot_matter_says_so():
    profile = make_profile([[94.0, 6.0, 0.0]] * 10)
    ranked = estimate(proposal("b", 20.0), profile, "throughput", min_gain=0.08)
    assert ranked.cannot_matter
    assert "stage 'b' is 6% of the time: at most 1.06x end to end" in ranked.note
    worth = estimate(proposal("a", 2.0), profile, "throughput", min_gain=0.05)
    assert not worth.cannot_matter and worth.est_e2e_speedup == pytest.approx(1 / 0.53)


def test_ranking_is_gain_per_effort_and_lists_the_rest_apart():
    profile = make_profile([[50.0, 50.0, 0.0]] * 10)
    quick = proposal("a", 1.5, id="toy.quick", effort="minutes")
    big = proposal("b", 5.0, id="toy.big", effort="weeks")
    missing = proposal(
        "a",
        3.0,
        id="toy.missing",
        status="unavailable",
        reason="faiss is not installed",
        install='pip install "pipetune[recsys]"',
    )
    advice = proposal("b", 10.0, id="toy.distill", applicable=False, effort="weeks")
    tiny = proposal("b", 1.01, id="toy.tiny")
    result = rank([big, quick, missing, advice, tiny], profile, Requirements())
    assert [r.proposal.id for r in result.candidates] == ["toy.quick", "toy.big", "toy.tiny"]
    assert result.worth_trying == result.candidates  # tiny is tried, but last
    assert result.unavailable[0].proposal.install == 'pip install "pipetune[recsys]"'
    assert result.advice[0].proposal.effort == "weeks"


def test_conflicts_and_tried_are_excluded_with_a_reason():
    profile = make_profile([[50.0, 50.0, 0.0]] * 10)
    accepted = proposal("a", 2.0, id="toy.ann", conflicts=("toy.exact",))
    exact = proposal("a", 2.0, id="toy.exact")
    other = proposal("b", 2.0, id="toy.other", conflicts=("toy.ann",))
    again = proposal("b", 2.0, id="toy.again")
    result = rank(
        [accepted, exact, other, again],
        profile,
        Requirements(),
        accepted=[accepted],
        tried=["toy.again@b"],
    )
    reasons = {r.proposal.id: why for r, why in result.excluded}
    assert reasons == {
        "toy.ann": "already applied in this run",
        "toy.exact": "conflicts with toy.ann, already applied",
        "toy.other": "conflicts with toy.ann, already applied",
        "toy.again": "already tried in this run",
    }
    assert result.candidates == ()


class Proposer:
    PIPETUNE_API = 1

    def __init__(self, name, ids, fail=False, owner=None):
        self.name, self.ids, self.fail, self.owner = name, ids, fail, owner

    @hookimpl
    def propose_changes(self, pipeline):
        if self.fail:
            raise RuntimeError("boom")
        return [
            Proposal(id=i, plugin=self.owner or self.name, stage="work", title=i) for i in self.ids
        ]


def test_the_same_id_from_two_plugins_raises_naming_both():
    pm = manager(Proposer("one", ["shared.x"]), Proposer("two", ["shared.x"]))
    profile = make_profile([[1.0, 1.0, 1.0, 0.0]], names=("parse", "work", "label"))
    with pytest.raises(DuplicateError, match=r"'shared.x' is proposed by both '.*' and '.*'"):
        collect_proposals(pm, toy_pipeline(), profile, Requirements())


def test_a_plugin_that_raises_is_reported_and_the_others_go_on():
    pm = manager(Proposer("bad", [], fail=True), Proposer("good", ["good.x"]))
    profile = make_profile([[1.0, 9.0, 1.0, 0.0]], names=("parse", "work", "label"))
    result = plan(pm, toy_pipeline(), profile, Requirements())
    assert [r.proposal.id for r in result.candidates] == ["good.x"]
    assert [(f.plugin, f.error) for f in result.failures] == [("bad", "RuntimeError: boom")]


def test_a_proposal_claiming_another_owner_is_dropped_and_reported():
    pm = manager(Proposer("sneaky", ["sneaky.x"], owner="generic"))
    profile = make_profile([[1.0, 9.0, 1.0, 0.0]], names=("parse", "work", "label"))
    proposals, failures = collect_proposals(pm, toy_pipeline(), profile, Requirements())
    assert proposals == []
    assert "names plugin 'generic' as its owner" in failures[0].error


def test_a_latency_requirement_ranks_for_latency():
    rows = [[1.0, 10.0, 0.0]] * 95 + [[200.0, 10.0, 0.0]] * 5
    profile = make_profile(rows)
    a = proposal("a", 10.0, id="toy.a")
    b = proposal("b", 3.0, id="toy.b")
    by_throughput = rank([a, b], profile, Requirements())
    by_p99 = rank([a, b], profile, Requirements(p99_ms=50))
    assert by_throughput.metric == "throughput" and by_p99.metric == "p99"
    assert by_p99.candidates[0].proposal.id == "toy.a"
    assert by_p99.candidates[0].est_e2e_speedup > by_throughput.candidates[0].est_e2e_speedup


def test_the_estimate_is_a_function_of_the_profile_and_the_proposal_only():
    profile = make_profile([[8.0, 2.0, 0.0]] * 10)
    arrives = proposal("a", 4.0).evolve(est_e2e_speedup=157.0)  # whatever came before
    once = estimate(arrives, profile, "throughput", min_gain=0.05)
    again = estimate(proposal("a", 4.0), profile, "throughput", min_gain=0.05)
    assert once.est_e2e_speedup == again.est_e2e_speedup == pytest.approx(2.5)
    assert (once.ceiling, once.score, once.note) == (again.ceiling, again.score, again.note)


def test_a_ceiling_is_informative_only_when_the_rest_of_the_pipeline_is_resolved():
    half = estimate(proposal("a", 2.0), make_profile([[5.0, 5.0, 0.0]] * 10), "p50", 0.05)
    assert half.ceiling == pytest.approx(2.0) and half.ceiling_informative
    # the stage is the whole pipeline but for a microsecond of glue: "≤ 603179.73x"
    whole = estimate(proposal("a", 2.0), make_profile([[600.0, 0.001, 0.0]] * 10), "p50", 0.05)
    assert whole.ceiling > 1e5 and not whole.ceiling_informative
    assert describe(whole)["ceiling_informative"] is False
    assert ceiling_informative(100.0) and not ceiling_informative(100.01)
    assert not ceiling_informative(float("inf")) and not ceiling_informative(None)


def test_what_tuning_found_is_replayed_on_the_same_profile():
    profile = make_profile([[8.0, 2.0, 0.0]] * 10)
    found = tuned_estimate(profile, proposal("a", 4.0), 2.0, "throughput")
    assert found == pytest.approx(replay_speedup(profile, "a", 2.0, "throughput"))
    assert tuned_estimate(None, proposal("a", 4.0), 2.0, "throughput") is None
    assert tuned_estimate(profile, proposal("a", 4.0), None, "throughput") is None
