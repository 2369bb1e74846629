"""A gain beyond the planner's ceiling is measured again before it is kept.

The planner's ceiling is the most a proposal could give end to end if its stage took no
time at all, on the profile it was planned on. A measured speedup above it means the
profile or the measurement is off — a noisy round set, contention that eased while the
candidate ran, a change whose effect reaches past its stage — and the figure is the one
most likely to be an overestimate (it was noticed *because* it was high). The change is
validated again from scratch, and the second measurement decides: it is kept only when the
second look proves it faster too, and the trial reports the second figure, with the first
beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.results import ALL_STAGES
from pipetune.core.loop.planner import Ranked
from pipetune.core.measure.validator import Outcome

if TYPE_CHECKING:
    from pipetune.core.kernel.model import Pipeline
    from pipetune.core.measure.validator import Validator

#: Trial notes that the second validation measures again (the rest carries over).
_MEASURED_NOTES = ("comparison", "speedups", "warnings", "cache", "stats")


def confirm_beyond_ceiling(
    validator: Validator,
    ranked: Ranked,
    current: Pipeline,
    outcome: Outcome,
    log: Callable[[str], None] = lambda message: None,
) -> Outcome:
    """``outcome`` itself, unless it is an accepted trial whose measured speedup exceeds
    ``ranked``'s ceiling: then the change is validated again and that second outcome,
    with the first measurement in its reason and notes, is returned."""
    trial = outcome.trial
    if (
        trial.status != "accepted"
        or outcome.candidate is None
        or trial.change is None
        or not ranked.beyond_ceiling(trial.speedup)
    ):
        return outcome
    first = _figure(trial.speedup, trial.speedup_ci)
    log(
        f"{trial.proposal}: measured {first}, beyond the planner's ceiling of "
        f"{ranked.ceiling:.2f}x: measuring again"
    )
    notes: dict[str, Any] = {k: v for k, v in trial.notes.items() if k not in _MEASURED_NOTES}
    notes["beyond_ceiling"] = {
        "ceiling": ranked.ceiling,
        "first_speedup": trial.speedup,
        "first_speedup_ci": list(trial.speedup_ci) if trial.speedup_ci else None,
    }
    again = validator.validate(
        trial.change, current, outcome.candidate, est_speedup=trial.est_speedup, notes=notes
    )
    second = again.trial
    beyond_again = second.status == "accepted" and ranked.beyond_ceiling(second.speedup)
    notes = {**second.notes}
    notes["beyond_ceiling"] = {**notes["beyond_ceiling"], "again": beyond_again}
    where = (
        "the whole pipeline"
        if ranked.proposal.stage == ALL_STAGES
        else f"stage {ranked.proposal.stage!r}"
    )
    reason = (
        f"first measured {first}, beyond the planner's ceiling of {ranked.ceiling:.2f}x "
        f"({where} taking no time at all), so measured again: {second.reason}"
    )
    if beyond_again:
        reason += (
            "; beyond the ceiling again, so the change speeds up more than its stage's "
            "profiled time"
        )
    trial = second.evolve(
        reason=reason, notes=notes, duration_s=trial.duration_s + second.duration_s
    )
    return Outcome(trial, again.candidate, again.comparison)


def _figure(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
