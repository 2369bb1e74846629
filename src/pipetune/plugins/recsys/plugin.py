"""Hook implementations of the recsys plugin; each calls into the module that does the work.

Recognizes full-catalog rankers, exact top-k retrieval, embedding models and feature
lookups; proposes the two-stage architecture (ANN candidates in front of the ranker), ANN +
exact re-rank for exact retrieval, a user-embedding cache and batched feature reads; tunes
them on the tuning split and rebuilds them from saved artifacts; compares ranked ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import ChangeType, Demo, Dependency, OutputKind
from pipetune.core.kernel.results import Profile, Proposal
from pipetune.scan.rules import Rule

PIPETUNE_API = 2


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
def register_demos() -> Sequence[Demo]:
    from pipetune.demos.recsys.demo import DEMO

    return [DEMO]


@hookimpl
def inspect_pipeline(pipeline: Pipeline) -> Mapping[str, Any] | None:
    from pipetune.plugins.recsys.facts import static_facts

    return static_facts(pipeline)


@hookimpl
def stage_hints(stage: Stage, pipeline: Pipeline) -> Sequence[str] | None:
    from pipetune.plugins.recsys.recognize import hints_for

    return hints_for(stage, pipeline) or None


@hookimpl
def profile_pipeline(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> Mapping[str, Any] | None:
    from pipetune.plugins.recsys.facts import measured_facts

    return measured_facts(pipeline, workload, profile, observed)


@hookimpl
def propose_changes(
    pipeline: Pipeline, profile: Profile, requirements: Requirements
) -> Sequence[Proposal] | None:
    from pipetune.plugins.recsys.proposals import propose

    return propose(pipeline, profile, requirements) or None


@hookimpl
def register_changes() -> Sequence[ChangeType]:
    from pipetune.plugins.recsys.changes import change_types

    return change_types()


@hookimpl
def register_output_kinds() -> Sequence[OutputKind]:
    from pipetune.plugins.recsys.fidelity import output_kinds

    return output_kinds()


@hookimpl
def scan_rules() -> Sequence[Rule]:
    from pipetune.plugins.recsys.scan_rules import RULES

    return RULES
