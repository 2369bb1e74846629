"""Hook implementations of the recsys plugin; each calls into the module that does the work.

Recognizes full-catalog rankers, exact top-k retrieval, embedding models and feature
lookups; proposes the two-stage architecture (ANN candidates in front of the ranker), ANN +
exact re-rank for exact retrieval, a user-embedding cache and batched feature reads; tunes
them on the tuning split and rebuilds them from saved artifacts; compares ranked ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.registry import Demo, Dependency
from pipetune.plugins import _shared as hooks

PIPETUNE_API = 3


@hookimpl
def register_dependencies() -> Sequence[Dependency]:
    return [
        Dependency(
            "faiss",
            extra="recsys",
            purpose="ANN indexes (HNSW, IVF-Flat, IVF-PQ)",
            distribution="faiss-cpu",
        ),
        Dependency(
            "torch", extra="recsys", purpose="the recsys demo's ranking model and user tower"
        ),
    ]


@hookimpl
def register_thread_pools() -> Sequence[Any]:
    from pipetune.plugins.recsys.threads import faiss_pool

    return [faiss_pool()]


@hookimpl
def register_demos() -> Sequence[Demo]:
    from pipetune.demos.recsys.demo import DEMO

    return [DEMO]


inspect_pipeline = hooks.inspect_pipeline("pipetune.plugins.recsys", "static_facts")
stage_hints = hooks.stage_hints("pipetune.plugins.recsys")
profile_pipeline = hooks.profile_pipeline("pipetune.plugins.recsys", "measured_facts")


propose_changes = hooks.propose_changes("pipetune.plugins.recsys")
register_changes = hooks.register_changes("pipetune.plugins.recsys")
register_output_kinds = hooks.register_output_kinds("pipetune.plugins.recsys")
scan_rules = hooks.scan_rules("pipetune.plugins.recsys")
