"""Why the optimize loop left a proposal untried, in words that cannot contradict its
estimate.

A proposal is left untried for one of a few reasons, each checked against what the loop
actually did: the requirements were met first, the trial or time budget was spent, it
conflicts with a change already kept, its stage is too small a share of the time to reach
the minimum gain, a plugin stopped proposing it once another change was kept, it is
unavailable here, or it is advice the loop never applies. "Nothing left worth trying" is
why a loop stops, never why a proposal with an estimate was passed over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The loop's stop reasons that mean "the proposals not reached were not needed".
REQUIREMENTS_MET = "requirements met"
INTERRUPTED = "interrupted"


def reasons(
    proposals: Mapping[str, Mapping[str, Any]],
    *,
    tried: set[str],
    last_plan: set[str],
    planned_round: Mapping[str, int],
    accepted: Sequence[str],
    stopped: str,
) -> dict[str, str]:
    """The reason each untried proposal (by key, ``id@stage``) was not tried.

    Args:
        proposals: the report's proposal entries by key (:func:`planner.describe`, with the
            plan's ``excluded`` reason where it gave one).
        tried: keys of the proposals the loop tried.
        last_plan: keys listed by the last plan the loop made.
        planned_round: for each key, the round of the last plan that listed it (round
            ``r`` is planned after ``r`` changes were kept).
        accepted: the ids of the kept changes, in the order they were kept.
        stopped: why the greedy loop stopped (``requirements met``, a budget sentence,
            ``interrupted``, ``nothing left worth trying``).
    """
    out: dict[str, str] = {}
    for key, entry in proposals.items():
        if key in tried:
            continue
        out[key] = _reason(entry, key in last_plan, planned_round.get(key), accepted, stopped)
    return out


def _reason(
    entry: Mapping[str, Any],
    in_last_plan: bool,
    planned_round: int | None,
    accepted: Sequence[str],
    stopped: str,
) -> str:
    if entry.get("status") == "unavailable":
        return (
            f"unavailable here: {entry.get('reason') or 'a dependency or the hardware is missing'}"
        )
    if not entry.get("applicable", True):
        return "advice: never applied automatically"
    if entry.get("excluded"):
        return str(entry["excluded"])
    if entry.get("cannot_matter"):
        return f"below the minimum gain: {_without_prefix(str(entry.get('note', '')))}"
    if not in_last_plan and planned_round is not None and planned_round < len(accepted):
        return (
            f"not proposed again once {accepted[planned_round]} was kept (its estimate is "
            f"on the profile it was last proposed on: {entry.get('estimated_on', 'earlier')})"
        )
    return not_reached(stopped)


def not_reached(stopped: str) -> str:
    """Why a proposal the loop would have tried next was not: the stop reason, in words."""
    if REQUIREMENTS_MET in stopped:
        return "not needed: the latency and throughput requirements held before it was reached"
    if stopped.startswith("max trials"):
        return f"not reached: the trial budget was spent ({stopped})"
    if stopped.startswith("time budget"):
        return f"not reached: the {stopped.removesuffix(' spent')} was spent"
    if stopped == INTERRUPTED:
        return "not reached: the run was interrupted"
    return "not reached before the loop stopped"


def _without_prefix(note: str) -> str:
    return note.removeprefix("cannot matter: ") or "its stage is too small a share of the time"
