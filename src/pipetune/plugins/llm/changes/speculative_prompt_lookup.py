"""``llm.speculative_prompt_lookup``: speculative decoding with drafts copied from the
prompt by n-gram lookup, when outputs copy their prompts; the draft length is chosen on
the tuning split. Lossless (greedy verification). Also holds the speculative tune step
the draft-model variant shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.llm.changes.common import (
    check_same,
    materialize_config,
    timed,
    tune_generate,
)
from pipetune.plugins.llm.records import GenerateConfig, GenerationRequest

ID = "llm.speculative_prompt_lookup"
#: Prompt-lookup draft lengths tried.
DRAFT_LENGTHS = (3, 5)


@dataclass(frozen=True)
class SpeculativeParams(ChangeParams):
    speculative: str = "prompt_lookup"
    num_draft_tokens: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_generate(
        proposal,
        pipeline,
        context,
        lambda t: tune_speculative(
            proposal, t.base, t.config, t.requests, t.engine, t.floor, t.min_speedup
        ),
    )


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return materialize_config(change, pipeline, artifacts_dir)


def tune_speculative(
    proposal: Proposal,
    base: Any,
    config: GenerateConfig,
    requests: list[GenerationRequest],
    engine: Any,
    floor: float,
    min_speedup: float,
) -> Tuned:
    reference, t_ref = timed(lambda: [base.generate(r) for r in requests])
    kind = "prompt_lookup" if proposal.id == ID else "draft"
    lengths = DRAFT_LENGTHS if kind == "prompt_lookup" else (config.num_draft_tokens,)
    points = []
    best: dict[str, Any] | None = None
    for k in lengths:
        candidate = engine(config.evolve(speculative=kind, num_draft_tokens=k))
        outputs, t = timed(lambda c=candidate: [c.generate(r) for r in requests])
        fidelity = check_same(f"speculative decoding ({kind}, k={k})", reference, outputs, floor)
        drafted = sum(g.stats.get("drafted", 0) for g in outputs)
        accepted = sum(g.stats.get("accepted", 0) for g in outputs)
        passes = sum(g.stats.get("verify_steps", 0) for g in outputs)
        point = {
            "num_draft_tokens": k,
            "speedup": t_ref / t if t else 0.0,
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "drafted": drafted,
            "accepted": accepted,
            "verify_passes": passes,
            "fidelity": fidelity.value,
        }
        points.append(point)
        if best is None or point["speedup"] > best["speedup"]:
            best = point
    assert best is not None
    if best["speedup"] < min_speedup:
        raise Rejected(
            f"speculative decoding ({kind}) does not pay on this traffic: acceptance "
            f"{best['acceptance_rate']:.0%} ({best['accepted']} of {best['drafted']} drafted "
            f"tokens), measured {best['speedup']:.2f}x on {len(requests)} requests "
            f"(needs {min_speedup:.2f}x)"
        )
    return Tuned(
        params={"speculative": kind, "num_draft_tokens": best["num_draft_tokens"]},
        notes={"requests": len(requests), "points": points, "chosen": best},
        est_stage_speedup=best["speedup"],
    )


CHANGE = ChangeType(ID, SpeculativeParams, materialize, tune)
