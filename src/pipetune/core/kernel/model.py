"""The pipeline model: stages with typed component slots, pipelines, workloads, requirements.

Every public name of the model is importable from here (plugins and user code do); the
definitions live in modules of one job each: stages and pipelines in
:mod:`.pipeline`, the workload and its splits in :mod:`.workload`, recorded arrivals in
:mod:`.trace`, requirements and growth in :mod:`.requirements`.
"""

from __future__ import annotations

from pipetune.core.kernel.pipeline import (
    OUTPUT_KINDS,
    STAGE_KINDS,
    Pipeline,
    Stage,
    accepted_slots,
)
from pipetune.core.kernel.requirements import METRICS, Growth, Requirements
from pipetune.core.kernel.trace import Trace
from pipetune.core.kernel.workload import Workload

__all__ = [
    "METRICS",
    "OUTPUT_KINDS",
    "STAGE_KINDS",
    "Growth",
    "Pipeline",
    "Requirements",
    "Stage",
    "Trace",
    "Workload",
    "accepted_slots",
]
