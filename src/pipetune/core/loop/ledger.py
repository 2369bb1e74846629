"""The proposals an optimize run was shown, as its report lists them.

Every plan the loop makes (one per round: after each kept change the plugins propose
again) is entered here: one entry per proposal, with the profile its estimate is on and
the plan's reason when it excluded it. A proposal already tried keeps the entry it was
tried with. At the end each proposal left untried gets the true reason
(:mod:`pipetune.core.loop.untried`), from the last plan that listed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.loop import planner, untried


class ProposalLedger:
    """The report's proposal entries by key (``id@stage``), and what the untried reasons
    need: the keys of the last plan, and the round of the last plan that listed each key
    (round ``r`` is planned after ``r`` changes were kept)."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self._last_plan: set[str] = set()
        self._planned_round: dict[str, int] = {}

    def record(
        self, plan: planner.Plan, *, tried: set[str], estimated_on: str, kept_before: int
    ) -> None:
        """Enter ``plan``'s proposals, each with the profile its estimate is on. A proposal
        already tried keeps the entry it was tried with, so the report shows one estimate
        per proposal: the one its trial carries."""
        self._last_plan = {ranked.key for ranked in plan.all()}
        for ranked in plan.all():
            if ranked.key in tried:
                continue
            entry = dict(planner.describe(ranked))
            entry["estimated_on"] = estimated_on
            self.entries[ranked.key] = entry
            self._planned_round[ranked.key] = kept_before
        for ranked, reason in plan.excluded:
            if ranked.key not in tried:
                self.entries[ranked.key]["excluded"] = reason

    def note_untried(self, *, tried: set[str], accepted: Sequence[str], stopped: str) -> None:
        """Every proposal the loop did not try gets the true reason (``not_tried``)."""
        reasons = untried.reasons(
            self.entries,
            tried=tried,
            last_plan=self._last_plan,
            planned_round=self._planned_round,
            accepted=accepted,
            stopped=stopped,
        )
        for key, reason in reasons.items():
            self.entries[key]["not_tried"] = reason
