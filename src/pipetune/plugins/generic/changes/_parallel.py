"""What ``generic.parallel_threads`` and ``generic.parallel_processes`` share: the params
schema, and the tune and materialize steps over :mod:`pipetune.plugins.generic.parallel` for a
given pool kind (``threads`` or ``processes``)."""

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


@dataclass(frozen=True)
class ParallelParams(ChangeParams):
    """The params of a parallel change; each change subclasses it with its own ``how``."""

    workers: int
    how: str = ""
    batch_size: int = 0
    factory: str | None = None


def change_type(change_id: str, how: str, params: type[ParallelParams]) -> ChangeType:
    """The change that runs one stage's inputs on a pool of ``how`` (threads or processes)."""

    def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
        return parallel.tune(
            pipeline,
            proposal.stage,
            how,
            context.workload,
            context.requirements,
            cores=os.cpu_count() or 1,
            factory=proposal.params.get("factory"),
            log=context.log,
        )

    def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
        values = dict(change.params)
        values.setdefault("how", how)
        if "workers" not in values:
            raise ConfigError(f"{change.proposal}: the change has no 'workers' parameter")
        return parallel.materialize(pipeline, change.stage, values)

    return ChangeType(change_id, params, materialize, tune)
