"""Why a proposal was left untried: the loop's true reason, never "nothing left worth
trying" beside an estimate."""

from __future__ import annotations

import pytest

from pipetune.core.loop.untried import not_reached, reasons


def entry(**fields):
    base = {
        "id": "toy.x",
        "stage": "work",
        "est_e2e_speedup": 2.25,
        "status": "proposed",
        "applicable": True,
        "note": "",
        "cannot_matter": False,
        "estimated_on": "baseline",
    }
    return {**base, **fields}


def test_each_untried_proposal_gets_the_reason_the_loop_had():
    proposals = {
        "toy.fast@work": entry(id="toy.fast"),  # tried: no reason
        "toy.next@work": entry(id="toy.next", est_e2e_speedup=2.83),
        "toy.exact@work": entry(
            id="toy.exact", excluded="conflicts with toy.fast, already applied"
        ),
        "toy.tiny@parse": entry(
            id="toy.tiny",
            stage="parse",
            cannot_matter=True,
            note="cannot matter: stage 'parse' is 1% of the time: at most 1.01x end to end "
            "on throughput, below the 5% minimum gain",
        ),
        "toy.gone@work": entry(id="toy.gone", est_e2e_speedup=2.25),
        "toy.trt@work": entry(id="toy.trt", status="unavailable", reason="no TensorRT"),
        "toy.distill@work": entry(id="toy.distill", applicable=False),
    }
    found = reasons(
        proposals,
        tried={"toy.fast@work"},
        last_plan={"toy.next@work", "toy.exact@work", "toy.tiny@parse", "toy.trt@work"},
        planned_round={key: 1 for key in proposals} | {"toy.gone@work": 0},
        accepted=["toy.fast"],
        stopped="max trials (2) reached",
    )
    assert "toy.fast@work" not in found
    assert found["toy.next@work"] == (
        "not reached: the trial budget was spent (max trials (2) reached)"
    )
    assert found["toy.exact@work"] == "conflicts with toy.fast, already applied"
    assert found["toy.tiny@parse"].startswith("below the minimum gain: stage 'parse' is 1%")
    assert found["toy.gone@work"] == (
        "not proposed again once toy.fast was kept (its estimate is on the profile it was "
        "last proposed on: baseline)"
    )
    assert found["toy.trt@work"] == "unavailable here: no TensorRT"
    assert found["toy.distill@work"] == "advice: never applied automatically"


@pytest.mark.parametrize(
    ("stopped", "expected"),
    [
        (
            "requirements met",
            "not needed: the latency and throughput requirements held before it was reached",
        ),
        (
            "speed requirements met; the fidelity gate is unproven",
            "not needed: the latency and throughput requirements held before it was reached",
        ),
        ("time budget (60 s) spent", "not reached: the time budget (60 s) was spent"),
        ("interrupted", "not reached: the run was interrupted"),
        ("nothing left worth trying", "not reached before the loop stopped"),
    ],
)
def test_the_stop_reason_in_words(stopped, expected):
    assert not_reached(stopped) == expected


def test_nothing_left_worth_trying_is_never_a_proposal_s_reason():
    stops = ["nothing left worth trying", "requirements met", "max trials (1) reached", ""]
    proposals = {"toy.a@work": entry(id="toy.a"), "toy.b@work": entry(id="toy.b")}
    for stopped in stops:
        for last_plan in (set(), {"toy.a@work"}):
            found = reasons(
                proposals,
                tried=set(),
                last_plan=last_plan,
                planned_round={"toy.a@work": 0, "toy.b@work": 0},
                accepted=["toy.c"],
                stopped=stopped,
            )
            assert all("nothing left worth trying" not in why for why in found.values())
