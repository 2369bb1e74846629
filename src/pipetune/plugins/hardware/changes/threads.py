"""``hardware.threads``: a per-stage thread plan (torch, BLAS/OpenMP, plugin pools such as
faiss, ONNX Runtime and OpenVINO sessions), tuned by measurement on the tuning split.
Exact: only thread counts change (a different count may reorder float sums).

Params version 2 (version 1 pinned one module's torch pool: its count becomes the plan of
the change's own stage, written under the stage name ``""``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change
from pipetune.plugins.hardware.thread_plan import apply_plan
from pipetune.plugins.hardware.thread_tune import tune_plan

ID = "hardware.threads"
#: In a migrated version-1 change, the plan's key for the change's own stage.
OWN_STAGE = ""


@dataclass(frozen=True)
class ThreadPlanParams(ChangeParams):
    """``stages``: the plan, by stage (``{"classify": {"threads": 1, "spinning": False}}``;
    in a proposal, the stages to try, with empty entries). ``counts``: the counts tried;
    ``cores``: the physical cores usable when proposed; ``uniform``: one count for every
    stage (several calls in flight share the process's pools); ``shared``: stages share
    cores, so rebuilt sessions do not spin."""

    stages: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    counts: tuple[int, ...] = ()
    cores: int | None = None
    uniform: bool = False
    shared: bool = True


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    """The pipeline with the plan in force on every stage it names (no measuring)."""
    params = ThreadPlanParams.of(change)
    plan = {
        (change.stage if name == OWN_STAGE else name): entry
        for name, entry in params.stages.items()
    }
    return apply_plan(pipeline, plan)


def from_version_1(params: dict[str, Any]) -> dict[str, Any]:
    """Version 1 pinned the stage's module to ``candidate.options.threads`` per call."""
    candidate = params.get("candidate") or {}
    threads = (candidate.get("options") or {}).get("threads")
    if threads is None:
        advice = params.get("advice") or {}
        threads = advice.get("intra_op")
    stages = {OWN_STAGE: {"threads": int(threads)}} if threads else {}
    return {"stages": stages, "shared": False}


CHANGE = ChangeType(
    ID, ThreadPlanParams, materialize, tune_plan, version=2, migrations={1: from_version_1}
)
