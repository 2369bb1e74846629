"""What the vision plugin's change types share: each replaces one stage, notes what it
applied on the new stage, and tunes by building candidates through its own materialize."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Change, Proposal

Materialize = Callable[[Change, Pipeline, Path], Pipeline]


def replace_stage(
    change: Change, pipeline: Pipeline, build: Callable[[Stage, dict[str, Any]], Stage]
) -> Pipeline:
    """``pipeline`` with ``change``'s stage replaced by ``build(stage, params)``, noted with
    the change id and its params (never touching the original stage)."""
    stage = pipeline.stage(change.stage)
    params = dict(change.params)
    new = build(stage, params)
    return pipeline.replace(stage.name, new.noted(vision=change.proposal, vision_params=params))


def build_candidate(
    proposal: Proposal, pipeline: Pipeline, params: dict[str, Any], materialize: Materialize
) -> Pipeline:
    """``pipeline`` with ``proposal`` applied at ``params`` (a tuning candidate)."""
    change = Change.from_proposal(proposal).evolve(params={**proposal.params, **params})
    return materialize(change, pipeline, Path("."))


def stage_time(pipeline: Pipeline, stage: str, inputs: list[Any], repeats: int = 3) -> float:
    target = pipeline.stage(stage)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in inputs:
            target(item)
        best = min(best, time.perf_counter() - start)
    return best
