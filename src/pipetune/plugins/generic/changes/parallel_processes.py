"""``generic.parallel_processes``: run one stage's inputs on a pool of processes (worker count
and chunk size tuned on the tuning split). Exact: each input still goes through the same
stage function."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.generic import parallel

ID = "generic.parallel_processes"
HOW = "processes"


@dataclass(frozen=True)
class ParallelProcessesParams(ChangeParams):
    workers: int
    how: str = HOW
    batch_size: int = 0
    factory: str | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return parallel.tune(
        pipeline,
        proposal.stage,
        HOW,
        context.workload,
        context.requirements,
        cores=os.cpu_count() or 1,
        factory=proposal.params.get("factory"),
        log=context.log,
    )


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    params = dict(change.params)
    params.setdefault("how", HOW)
    if "workers" not in params:
        raise ConfigError(f"{change.proposal}: the change has no 'workers' parameter")
    return parallel.materialize(pipeline, change.stage, params)


CHANGE = ChangeType(ID, ParallelProcessesParams, materialize, tune)
