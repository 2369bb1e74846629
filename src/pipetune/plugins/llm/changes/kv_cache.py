"""``llm.kv_cache``: keep a KV cache where generation re-ran the whole prefix for every
token (``use_cache=True`` on the generate block, or a caching proxy in a user's model slot).
Lossless: greedy tokens must not change."""

from __future__ import annotations

from dataclasses import dataclass

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.llm.changes.common import (
    GenerateTuning,
    check_same,
    timed,
    tune_generate,
)
from pipetune.plugins.llm.changes.common import materialize_config as materialize

ID = "llm.kv_cache"


@dataclass(frozen=True)
class KvCacheParams(ChangeParams):
    use_cache: bool = True
    wrap: str | None = None
    prompt_lookup_num_tokens: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_generate(proposal, pipeline, context, _tune_block)


def _tune_block(t: GenerateTuning) -> Tuned:
    candidate = t.engine(t.config.evolve(use_cache=True))
    sample = t.requests[: max(2, len(t.requests) // 3)]  # the slow side is slow by design
    before, t_before = timed(lambda: [t.base.generate(r) for r in sample])
    after, t_after = timed(lambda: [candidate.generate(r) for r in sample])
    fidelity = check_same("KV cache", before, after, t.floor)
    tokens = sum(len(g.tokens) for g in after)
    return Tuned(
        params={"use_cache": True},
        notes={
            "requests": len(sample),
            "tokens_per_s_before": tokens / t_before if t_before else None,
            "tokens_per_s_after": tokens / t_after if t_after else None,
            "fidelity": fidelity.to_dict(),
        },
        est_stage_speedup=t_before / t_after if t_after else None,
    )


CHANGE = ChangeType(ID, KvCacheParams, materialize, tune)
