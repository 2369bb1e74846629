"""``generic.parallel_threads``: run one stage's inputs on a pool of threads (worker count
and chunk size tuned on the tuning split). Exact: each input still goes through the same
stage function."""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.plugins.generic.changes._parallel import ParallelParams, change_type

ID = "generic.parallel_threads"
HOW = "threads"


@dataclass(frozen=True)
class ParallelThreadsParams(ParallelParams):
    how: str = HOW


CHANGE = change_type(ID, HOW, ParallelThreadsParams)
