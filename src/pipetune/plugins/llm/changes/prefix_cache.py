"""``llm.prefix_cache``: compute the KV of a prompt prefix many requests share (a system
prompt, few-shot examples) once and copy it. Lossless."""

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
    GenerateTuning,
    check_same,
    materialize_config,
    stage_requests,
    timed,
    tune_generate,
)
from pipetune.plugins.llm.records import GenerateConfig

ID = "llm.prefix_cache"


@dataclass(frozen=True)
class PrefixCacheParams(ChangeParams):
    prefixes: tuple[tuple[int, ...], ...] = ()


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_generate(proposal, pipeline, context, _tune_block)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return materialize_config(change, pipeline, artifacts_dir, _prefix_cache)


def _prefix_cache(config: GenerateConfig) -> dict[str, Any]:
    from pipetune.plugins.llm.prefix_cache import PrefixCache

    return {"prefix_cache": PrefixCache(config.prefixes)} if config.prefixes else {}


def _tune_block(t: GenerateTuning) -> Tuned:
    from pipetune.plugins.llm.prefix_cache import PrefixCache, prefix_coverage, shared_prefixes

    requests = stage_requests(t.context, t.pipeline, t.stage, 10_000)
    prompts = [list(r.prompt_ids) for r in requests]
    prefixes = shared_prefixes(prompts)
    if not prefixes:
        raise Rejected("no prompt prefix is shared by enough requests of the tuning split")
    cache = PrefixCache(prefixes)
    candidate = t.engine(t.config.evolve(prefixes=tuple(prefixes)), prefix_cache=cache)
    before, t_before = timed(lambda: [t.base.generate(r) for r in t.requests])
    after, t_after = timed(lambda: [candidate.generate(r) for r in t.requests])
    fidelity = check_same("prefix cache", before, after, t.floor)
    ttft = [g.stats.get("ttft_s", 0.0) for g in before]
    ttft_after = [g.stats.get("ttft_s", 0.0) for g in after]
    return Tuned(
        params={"prefixes": [list(p) for p in prefixes]},
        notes={
            "prefix_lengths": [len(p) for p in prefixes],
            "coverage": prefix_coverage(prompts, prefixes),
            "ttft_ms_before": 1000 * sum(ttft) / len(ttft),
            "ttft_ms_after": 1000 * sum(ttft_after) / len(ttft_after),
            "fidelity": fidelity.to_dict(),
            **cache.stats(),
        },
        est_stage_speedup=t_before / t_after if t_after else None,
    )


CHANGE = ChangeType(ID, PrefixCacheParams, materialize, tune)
