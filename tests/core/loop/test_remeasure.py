"""A measured gain beyond the planner's ceiling is measured again before it is kept."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.results import Change, Trial
from pipetune.core.loop.planner import estimate
from pipetune.core.loop.remeasure import confirm_beyond_ceiling
from pipetune.core.measure.validator import Outcome
from tests.core.loop.test_planner import make_profile, proposal
from tests.core.loop_toys import toy_pipeline

#: stage "a" is 40 % of the time: at most 1 / 0.6 = 1.67x end to end
PROFILE = make_profile([[4.0, 6.0, 0.0]] * 10)
RANKED = estimate(proposal("a", 1.2, id="toy.int8"), PROFILE, "throughput", min_gain=0.05)
CHANGE = Change(proposal="toy.int8", plugin="toy", stage="a")


def trial(speedup: float, status: str = "accepted", reason: str = "") -> Trial:
    return Trial(
        proposal="toy.int8",
        status=status,  # type: ignore[arg-type]
        reason=reason or f"faster: {speedup:.2f}x",
        stage="a",
        plugin="toy",
        speedup=speedup,
        speedup_ci=(speedup * 0.95, speedup * 1.05),
        est_speedup=RANKED.est_e2e_speedup,
        change=CHANGE,
        notes={"tune": {"k": 1}, "comparison": {"first": True}, "tuned_estimate": 1.1},
        duration_s=2.0,
    )


class StubValidator:
    """Answers ``validate`` with the outcomes given, recording each call."""

    def __init__(self, *outcomes: Outcome):
        self.outcomes = list(outcomes)
        self.calls: list[dict] = []

    def validate(self, change, current, candidate, *, est_speedup=None, notes=None):
        self.calls.append({"change": change, "est": est_speedup, "notes": dict(notes or {})})
        outcome = self.outcomes.pop(0)
        return Outcome(
            outcome.trial.evolve(notes={**(notes or {}), **outcome.trial.notes}), outcome.candidate
        )


def test_the_ceiling_is_the_stage_taking_no_time():
    assert RANKED.ceiling == pytest.approx(1 / 0.6)
    assert RANKED.beyond_ceiling(1.70) and not RANKED.beyond_ceiling(1.60)
    assert not RANKED.beyond_ceiling(None)


def test_a_gain_within_the_ceiling_is_kept_as_measured():
    candidate = toy_pipeline()
    first = Outcome(trial(1.30), candidate)
    validator = StubValidator()
    assert confirm_beyond_ceiling(validator, RANKED, toy_pipeline(), first) is first
    assert validator.calls == []


def test_a_gain_beyond_the_ceiling_confirmed_by_a_second_measurement_is_kept():
    candidate = toy_pipeline()
    validator = StubValidator(Outcome(trial(1.25), candidate))
    outcome = confirm_beyond_ceiling(
        validator, RANKED, toy_pipeline(), Outcome(trial(1.90), candidate)
    )
    (call,) = validator.calls
    assert call["change"] is CHANGE and call["est"] == RANKED.est_e2e_speedup
    assert "comparison" not in call["notes"] and call["notes"]["tune"] == {"k": 1}
    assert outcome.trial.status == "accepted" and outcome.candidate is candidate
    assert outcome.trial.speedup == 1.25  # the second, unselected figure
    assert outcome.trial.reason.startswith(
        "first measured 1.90x [1.80, 1.99], beyond the planner's ceiling of 1.67x "
        "(stage 'a' taking no time at all), so measured again: faster: 1.25x"
    )
    figures = outcome.trial.notes["beyond_ceiling"]
    assert figures["first_speedup"] == 1.90 and figures["again"] is False
    assert outcome.trial.duration_s == 4.0


def test_a_gain_beyond_the_ceiling_the_second_measurement_does_not_confirm_is_not_kept():
    candidate = toy_pipeline()
    not_proven = trial(1.02, "rejected", "gain not proven: 1.02x [0.97, 1.07]")
    validator = StubValidator(Outcome(not_proven, None))
    outcome = confirm_beyond_ceiling(
        validator, RANKED, toy_pipeline(), Outcome(trial(1.90), candidate)
    )
    assert outcome.trial.status == "rejected" and outcome.candidate is None
    assert "so measured again: gain not proven: 1.02x" in outcome.trial.reason


def test_beyond_the_ceiling_twice_is_kept_and_says_so():
    candidate = toy_pipeline()
    validator = StubValidator(Outcome(trial(1.85), candidate))
    outcome = confirm_beyond_ceiling(
        validator, RANKED, toy_pipeline(), Outcome(trial(1.90), candidate)
    )
    assert outcome.trial.status == "accepted"
    assert outcome.trial.notes["beyond_ceiling"]["again"] is True
    assert "beyond the ceiling again" in outcome.trial.reason


def test_a_rejected_trial_is_never_measured_again():
    validator = StubValidator()
    rejected = Outcome(trial(1.90, "rejected", "breaks P99"), None)
    assert confirm_beyond_ceiling(validator, RANKED, toy_pipeline(), rejected) is rejected
    assert validator.calls == []
