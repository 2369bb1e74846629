"""The change type ``example.set_lookup``: a slot holding a list that the stage only tests
membership in is replaced by a frozenset of the same items.

A change type is three things (see CONTRIBUTING.md in pipetune's repository): a params
dataclass (what a recipe stores), a ``materialize`` that builds the changed pipeline from
those params alone, and optionally a ``tune`` that searches them. This one has nothing to
search: the proposal already names the slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipetune import Change, ChangeParams, ChangeType, Pipeline

ID = "example.set_lookup"


@dataclass(frozen=True)
class SetLookupParams(ChangeParams):
    """The slots whose lists become frozensets."""

    slots: tuple[str, ...]


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    """A new pipeline whose stage holds frozensets; the user's lists are left alone."""
    params = SetLookupParams.of(change)
    stage = pipeline.stage(change.stage)
    swapped = {slot: frozenset(stage.slots[slot]) for slot in params.slots}
    new_stage = stage.with_slots(**swapped).noted(
        applied=[*stage.meta.get("applied", ()), change.proposal]
    )
    return pipeline.replace(stage.name, new_stage)


#: Exact: a frozenset answers ``x in ...`` as the list does for hashable items.
CHANGE = ChangeType(ID, SetLookupParams, materialize, lossy=False)
