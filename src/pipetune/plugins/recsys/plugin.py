"""Hook implementations of the recsys plugin (DESIGN §4).

Recognizes full-catalog rankers, exact top-k retrieval, embedding models and feature
lookups; proposes the two-stage architecture (ANN candidates in front of the ranker), ANN +
exact re-rank for exact retrieval, a user-embedding cache and batched feature reads; tunes
them on the tuning split and rebuilds them from saved artifacts; compares ranked ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import Observations, TuneContext
from pipetune.core.kernel.hookspecs import hookimpl
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.registry import Demo, Dependency
from pipetune.core.kernel.results import Change, Fidelity, Profile, Proposal, Tuned
from pipetune.plugins.recsys.scan_rules import scan_rules  # noqa: F401

PIPETUNE_API = 1
PLUGIN = "recsys"


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
    from pipetune.plugins.recsys.proposals import hints_for

    return hints_for(stage) or None


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
def tune_proposal(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: TuneContext,
) -> Tuned | None:
    if proposal.plugin != PLUGIN:
        return None
    from pipetune.plugins.recsys.tuning import tune

    return tune(proposal, pipeline, workload, context)


@hookimpl
def materialize_change(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline | None:
    if change.plugin != PLUGIN:
        return None
    from pipetune.plugins.recsys.tuning import materialize

    return materialize(change, pipeline, Path(artifacts_dir))


@hookimpl
def compare_outputs(
    output_kind: str,
    baseline: Sequence[Any],
    candidate: Sequence[Any],
    labels: Sequence[Any] | None,
) -> Fidelity | None:
    if output_kind != "ranked_ids":
        return None
    from pipetune.plugins.recsys.fidelity import ranked_ids_fidelity

    return ranked_ids_fidelity(baseline, candidate, labels)
