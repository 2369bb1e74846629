"""``llm.speculative_prompt_lookup``: speculative decoding with drafts copied from the
prompt by n-gram lookup, when outputs copy their prompts; the draft length is chosen on
the tuning split. Lossless (greedy verification). Also holds the speculative tune step
the draft-model variant shares.

On pipetune's generate block it sets ``speculative="prompt_lookup"``. On a user's own
stage that calls transformers' ``generate`` (``wrap="cached_generate"``), it puts a
:class:`~pipetune.plugins.llm.recognize.CachedGenerate` proxy in the model slot that
passes ``prompt_lookup_num_tokens`` (and ``use_cache=True``, which prompt lookup needs)
to ``generate``: :func:`tune_plain` tries :data:`PLAIN_DRAFT_LENGTHS` against the stage as
it is, keeps the fastest whose greedy tokens are identical, and rejects the change when
none beats no lookup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.llm.changes.common import (
    GenerateTuning,
    check_same,
    timed,
    tune_generate,
)
from pipetune.plugins.llm.changes.common import materialize_config as materialize

ID = "llm.speculative_prompt_lookup"
#: Prompt-lookup draft lengths tried.
DRAFT_LENGTHS = (3, 5)
#: Draft lengths (``prompt_lookup_num_tokens``) tried on a user's generate stage.
PLAIN_DRAFT_LENGTHS = (3, 5, 10)
#: Inputs of the tuning split a user's stage is measured on (each runs the real model).
PLAIN_TUNE_ITEMS = 8


@dataclass(frozen=True)
class SpeculativeParams(ChangeParams):
    speculative: str = "prompt_lookup"
    num_draft_tokens: int | None = None
    #: ``"cached_generate"``: a user's stage, through a proxy in its model slot
    wrap: str | None = None
    #: the draft length given to transformers' generate on a user's stage
    prompt_lookup_num_tokens: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    if proposal.params.get("wrap") == "cached_generate":
        return tune_plain(proposal, pipeline, context)
    return tune_generate(proposal, pipeline, context, tune_speculative)


def tune_speculative(t: GenerateTuning) -> Tuned:
    """The tune step on the generate block, for both drafting kinds (by the proposal's id)."""
    base, config, requests = t.base, t.config, t.requests
    reference, t_ref = timed(lambda: [base.generate(r) for r in requests])
    kind = "prompt_lookup" if t.proposal.id == ID else "draft"
    lengths = DRAFT_LENGTHS if kind == "prompt_lookup" else (config.num_draft_tokens,)
    points = []
    best: dict[str, Any] | None = None
    for k in lengths:
        candidate = t.engine(config.evolve(speculative=kind, num_draft_tokens=k))
        outputs, elapsed = timed(lambda c=candidate: [c.generate(r) for r in requests])
        fidelity = check_same(f"speculative decoding ({kind}, k={k})", reference, outputs, t.floor)
        drafted = sum(g.stats.get("drafted", 0) for g in outputs)
        accepted = sum(g.stats.get("accepted", 0) for g in outputs)
        passes = sum(g.stats.get("verify_steps", 0) for g in outputs)
        point = {
            "num_draft_tokens": k,
            "speedup": t_ref / elapsed if elapsed else 0.0,
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
    if best["speedup"] < t.min_speedup:
        raise Rejected(
            f"speculative decoding ({kind}) does not pay on this traffic: acceptance "
            f"{best['acceptance_rate']:.0%} ({best['accepted']} of {best['drafted']} drafted "
            f"tokens), measured {best['speedup']:.2f}x on {len(requests)} requests "
            f"(needs {t.min_speedup:.2f}x)"
        )
    return Tuned(
        params={"speculative": kind, "num_draft_tokens": best["num_draft_tokens"]},
        notes={"requests": len(requests), "points": points, "chosen": best},
        est_stage_speedup=best["speedup"],
    )


def tune_plain(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """A user's stage calling ``generate``: the pipeline as it is (KV cache on, no lookup)
    against the proxy with each draft length, on the same inputs of the tuning split."""
    items = list(context.workload.items)[:PLAIN_TUNE_ITEMS]
    if not items:
        raise Rejected("the tuning split is empty: nothing to measure on")
    base = dict(proposal.params)
    base.pop("prompt_lookup_num_tokens", None)
    without = materialize(Change.from_proposal(proposal.evolve(params=base)), pipeline)
    pipeline.run(items[0])  # warm-up (first-call allocations) on both sides
    without.run(items[0])
    reference, t_ref = timed(lambda: [without.run(i) for i in items])
    points: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for k in PLAIN_DRAFT_LENGTHS:
        params = {**base, "prompt_lookup_num_tokens": k}
        candidate = materialize(Change.from_proposal(proposal.evolve(params=params)), pipeline)
        outputs, t = timed(lambda c=candidate: [c.run(i) for i in items])
        fidelity = context.fidelity(outputs, kind="tokens", baseline=reference)
        if fidelity.value < context.fidelity_floor:
            raise Rejected(
                f"prompt lookup (k={k}) changed the greedy tokens: {fidelity.details} "
                "(sampling in the stage's generate call? lookup is only lossless for greedy)"
            )
        point = {"prompt_lookup_num_tokens": k, "speedup": t_ref / t if t else 0.0}
        points.append(point)
        if best is None or point["speedup"] > best["speedup"]:
            best = point
    assert best is not None
    min_speedup = 1.0 + context.requirements.min_gain
    if best["speedup"] < min_speedup:
        raise Rejected(
            f"prompt lookup does not pay on this traffic: the best draft length "
            f"(k={best['prompt_lookup_num_tokens']}) measured {best['speedup']:.2f}x against "
            f"generate without it on {len(items)} inputs (needs {min_speedup:.2f}x)"
        )
    return Tuned(
        params={**base, "prompt_lookup_num_tokens": best["prompt_lookup_num_tokens"]},
        notes={"inputs": len(items), "points": points, "chosen": best},
        est_stage_speedup=best["speedup"],
    )


CHANGE = ChangeType(ID, SpeculativeParams, materialize, tune)
