"""``generic.parallel_processes``: run one stage's inputs on a pool of processes (worker count
and chunk size tuned on the tuning split). Exact: each input still goes through the same
stage function."""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.plugins.generic.changes._parallel import ParallelParams, change_type

ID = "generic.parallel_processes"
HOW = "processes"


@dataclass(frozen=True)
class ParallelProcessesParams(ParallelParams):
    how: str = HOW


CHANGE = change_type(ID, HOW, ParallelProcessesParams)
