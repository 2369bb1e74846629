"""What the llm plugin proposes from the profile and the measured traffic. How each
change is tuned and built lives in :mod:`.changes`.

==============================  ====================================================
``llm.kv_cache``                keep a KV cache where generation re-ran the prefix
``llm.prefix_cache``            compute a shared prompt prefix's KV once, copy it
``llm.continuous_batching``     requests join and leave the running batch every step
``llm.speculative_prompt_lookup``  draft by n-gram lookup when outputs copy prompts
``llm.speculative_draft``       draft with a smaller model of the same tokenizer
``llm.cuda_graphs``             static KV cache + one CUDA graph per decode step
``llm.kv_cache_loop``           advice: a hand-written loop re-runs the prefix
==============================  ====================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.model import Pipeline, Requirements, Stage
from pipetune.core.kernel.results import InFlight, Profile, Proposal
from pipetune.plugins.llm.blocks import is_generate_block
from pipetune.plugins.llm.changes.continuous_batching import ID as CONTINUOUS
from pipetune.plugins.llm.changes.cuda_graphs import ID as CUDA_GRAPHS
from pipetune.plugins.llm.changes.kv_cache import ID as KV_CACHE
from pipetune.plugins.llm.changes.prefix_cache import ID as PREFIX_CACHE
from pipetune.plugins.llm.changes.speculative_draft import ID as DRAFT
from pipetune.plugins.llm.changes.speculative_prompt_lookup import ID as LOOKUP
from pipetune.plugins.llm.records import GenerateConfig

PLUGIN = "llm"
KV_CACHE_LOOP = "llm.kv_cache_loop"  # advice only: no change type
SPECULATIVE = (LOOKUP, DRAFT)
#: Prompt lookup is proposed only when replaying it over the observed outputs yields at
#: least this many tokens per target pass (a verify pass of k+1 tokens costs more than a
#: single-token step, so fewer cannot pay; the tune step measures the real speedup).
MIN_TOKENS_PER_PASS = 1.15


# -- proposing ---------------------------------------------------------------------------


def _est_kv_cache(prompt_mean: float, output_mean: float, decode_to_token: float = 25.0) -> float:
    """Tokens processed without a cache (the whole prefix per step) against a prefill plus
    one cached step per token, where a cached step costs ``decode_to_token`` prefill tokens
    (weight reads dominate a single-token step)."""
    n, p = max(output_mean, 1.0), max(prompt_mean, 1.0)
    without = n * (p + n / 2)
    with_cache = p + n * decode_to_token
    return max(1.0, min(50.0, without / with_cache))


def _est_continuous(outputs: Sequence[int], batch: int = 8, growth: float = 0.12) -> float:
    """Sequential decode steps against continuous batching's, with a step over ``b`` rows
    costing ``1 + growth * (b - 1)`` single steps."""
    tokens = [max(1, t) for t in outputs] or [1]
    sequential = float(sum(tokens))
    rows = min(batch, len(tokens))
    continuous = sum(tokens) / rows * (1 + growth * (rows - 1))
    return max(1.0, sequential / continuous)


def _stage_facts(profile: Profile, stage: str) -> Mapping[str, Any]:
    stages = profile.facts.get(PLUGIN, {}).get("stages", {})
    return stages.get(stage, {}) if isinstance(stages, Mapping) else {}


def propose(pipeline: Pipeline, profile: Profile, requirements: Requirements) -> list[Proposal]:
    from pipetune.plugins.llm.recognize import generate_stages

    proposals: list[Proposal] = []
    for stage in generate_stages(pipeline):
        facts = _stage_facts(profile, stage.name)
        traffic = facts.get("traffic", {}) or {}
        prompt_mean = float((traffic.get("prompt_tokens") or {}).get("mean", 64.0))
        output_dist = traffic.get("output_tokens") or {}
        output_mean = float(output_dist.get("mean", 32.0))
        if is_generate_block(stage):
            proposals.extend(_propose_block(stage, facts, traffic, prompt_mean, output_mean))
        else:
            proposals.extend(_propose_plain(stage, facts, traffic, prompt_mean, output_mean))
    return proposals


def _propose_plain(
    stage: Stage,
    facts: Mapping[str, Any],
    traffic: Mapping[str, Any],
    prompt_mean: float,
    output_mean: float,
) -> list[Proposal]:
    """A user's own stage over a causal LM: a KV-caching proxy when its ``generate`` runs
    without a cache; once the cache is on, prompt-lookup drafts through ``generate``'s own
    ``prompt_lookup_num_tokens`` when the observed outputs copy their prompts; advice for a
    hand-written loop that re-runs the prefix (the proxy cannot reach it)."""
    from pipetune.plugins.llm.recognize import model_slot

    slot = model_slot(stage)
    probe = facts.get("probe", {}) or {}
    model = stage.slots.get(slot) if slot else None
    wrapped = getattr(model, "__pipetune_wrapped__", None) is not None
    injected = bool(slot and stage.injects(slot))
    via_generate = probe.get("via_generate", True)
    out: list[Proposal] = []
    if probe.get("kv_cache") is False and injected and via_generate and not wrapped:
        out.append(
            Proposal(
                id=KV_CACHE,
                plugin=PLUGIN,
                stage=stage.name,
                title="Keep a KV cache in generate (use_cache=True)",
                rationale=(
                    f"every forward call re-ran the whole prefix without a cache "
                    f"({probe.get('forward_calls')} calls, "
                    f"{probe.get('tokens_processed')} tokens processed for one "
                    "request); a proxy in the model slot makes generate keep one"
                ),
                est_stage_speedup=_est_kv_cache(prompt_mean, output_mean),
                effort="minutes",
                accuracy_risk="none",
                params={"wrap": "cached_generate"},
                fidelity_kind="tokens",
                evidence={"probe": dict(probe)},
            )
        )
    elif probe.get("prefix_rerun") and not via_generate and not wrapped:
        # a hand-written loop: generate's options do not reach it (a generate without a
        # cache gets the proxy above, or a hint to inject its model, never this advice)
        out.append(
            Proposal(
                id=KV_CACHE_LOOP,
                plugin=PLUGIN,
                stage=stage.name,
                title="Decode with a KV cache instead of re-running the prefix",
                rationale=(
                    "the stage's loop re-runs the whole sequence for every new token; "
                    "pass the cache between steps (model(..., use_cache=True) and "
                    "feed only the new token), or declare the stage with "
                    "pipetune.plugins.llm.generate_stage so pipetune can apply it"
                ),
                est_stage_speedup=_est_kv_cache(prompt_mean, output_mean),
                effort="hours",
                applicable=False,
                evidence={"probe": dict(probe)},
            )
        )
    cache_on = wrapped or probe.get("kv_cache") is True
    lookup_on = bool(getattr(model, "_prompt_lookup", None)) if wrapped else False
    lookup = traffic.get("prompt_lookup") or {}
    if injected and via_generate and cache_on and not lookup_on and lookup:
        proposal = _lookup_proposal(stage, traffic, lookup, plain=True)
        if proposal is not None:
            out.append(proposal)
    return out


def _lookup_proposal(
    stage: Stage, traffic: Mapping[str, Any], lookup: Mapping[str, Any], *, plain: bool
) -> Proposal | None:
    """Prompt-lookup speculation, decided from the traffic: the replay over the observed
    outputs is exact for greedy decoding, so below :data:`MIN_TOKENS_PER_PASS` tokens per
    target pass a verify pass cannot pay and nothing is proposed."""
    tokens_per_pass = float(lookup.get("tokens_per_pass", 1.0))
    acceptance = float(lookup.get("acceptance_rate", 0.0))
    copy_rate = float(traffic.get("ngram_copy_rate", 0.0))
    if tokens_per_pass < MIN_TOKENS_PER_PASS:
        return None
    # a verify pass of k+1 tokens costs about 1 + 0.08 k single-token steps (k = 4)
    estimate = max(1.0, tokens_per_pass / (1.0 + 0.08 * 4))
    assumes = (
        f"assumes the tuning traffic copies its prompts as the profiled outputs did "
        f"({copy_rate:.0%} of output 3-grams in the prompt, {tokens_per_pass:.2f} tokens per "
        "target pass when replayed) and a verify pass of 5 tokens costing 1.32 decode steps"
    )
    how = (
        "through generate's own prompt_lookup_num_tokens (a proxy in the model slot; "
        "the draft length is measured on the tuning split)"
        if plain
        else "the draft length is measured on the tuning split"
    )
    return Proposal(
        id=LOOKUP,
        plugin=PLUGIN,
        stage=stage.name,
        title="Speculative decoding with prompt-lookup (n-gram) drafts",
        rationale=(
            f"outputs copy their prompts: {copy_rate:.0%} of output 3-grams occur "
            f"in the prompt; replaying prompt lookup over the observed outputs "
            f"accepts {acceptance:.0%} of drafted tokens, {tokens_per_pass:.2f} "
            f"tokens per target pass; {how}. The estimate {assumes}"
        ),
        est_stage_speedup=estimate,
        params={"wrap": "cached_generate"} if plain else {"speculative": "prompt_lookup"},
        conflicts=(CONTINUOUS, DRAFT),
        fidelity_kind="tokens",
        evidence={
            "prompt_lookup": dict(lookup),
            "ngram_copy_rate": copy_rate,
            "assumes": assumes,
        },
    )


def _propose_block(
    stage: Stage,
    facts: Mapping[str, Any],
    traffic: Mapping[str, Any],
    prompt_mean: float,
    output_mean: float,
) -> list[Proposal]:
    """A declared generate block: the KV cache first (every other change builds on it),
    then a shared-prefix cache, continuous batching, speculative decoding and CUDA graphs,
    each where the block's config leaves it off and the traffic suggests it pays."""
    config: GenerateConfig = stage.slots["config"]
    if not config.use_cache:
        # the other changes all build on the cache: proposed once it is kept
        return [_block_kv_cache(stage, prompt_mean, output_mean)]
    out: list[Proposal] = []
    shared = traffic.get("shared_prefixes")
    if not config.prefixes and shared and shared.get("prefill_tokens_saved", 0) >= 0.15:
        out.append(_block_prefix_cache(stage, facts, shared))
    if config.batching != "continuous":
        out.append(_block_continuous(stage, config, traffic, output_mean))
    if config.speculative is None and config.batching == "none":
        out.extend(_block_speculative(stage, traffic))
    if not config.cuda_graph and config.batching == "none":
        model_info = facts.get("model", {}) or {}
        on_cuda = str(model_info.get("device", "cpu")).startswith("cuda")
        out.append(_block_cuda_graphs(stage, on_cuda))
    return out


def _block_kv_cache(stage: Stage, prompt_mean: float, output_mean: float) -> Proposal:
    """Keeping a KV cache in a block that decodes without one (each step re-runs the prefix)."""
    return Proposal(
        id=KV_CACHE,
        plugin=PLUGIN,
        stage=stage.name,
        title="Keep a KV cache while decoding",
        rationale=(
            f"generation runs without a KV cache: each of ~{output_mean:.0f} output "
            f"tokens re-runs the whole prefix (~{prompt_mean:.0f} prompt tokens and "
            "the output so far)"
        ),
        est_stage_speedup=_est_kv_cache(prompt_mean, output_mean),
        params={"use_cache": True},
        fidelity_kind="tokens",
        evidence={"prompt_tokens_mean": prompt_mean, "output_tokens_mean": output_mean},
    )


def _block_prefix_cache(
    stage: Stage, facts: Mapping[str, Any], shared: Mapping[str, Any]
) -> Proposal:
    """Caching the KV of the traffic's shared prompt prefixes, estimated from the share of
    request time spent in prefill (TTFT over latency, 0.3 when either is unknown)."""
    ttft = (facts.get("ttft_ms") or {}).get("p50")
    latency = facts.get("request_ms_p50")
    prefill_share = min(0.9, ttft / latency) if ttft and latency else 0.3
    saved = float(shared["prefill_tokens_saved"])
    return Proposal(
        id=PREFIX_CACHE,
        plugin=PLUGIN,
        stage=stage.name,
        title="Cache the KV of the shared prompt prefix",
        rationale=(
            f"{shared['requests_with_prefix']:.0%} of requests start with a shared "
            f"prefix of {shared['lengths'][0]} tokens ({saved:.0%} of all prompt "
            "tokens): compute its keys and values once and copy them into each request"
        ),
        est_stage_speedup=1.0 / max(0.1, 1.0 - prefill_share * saved),
        params={},
        fidelity_kind="tokens",
        evidence={"shared_prefixes": dict(shared), "prefill_share": prefill_share},
    )


def _block_continuous(
    stage: Stage, config: GenerateConfig, traffic: Mapping[str, Any], outputs_mean: float
) -> Proposal:
    """Continuous batching for a block that decodes one at a time or in static batches,
    estimated from the observed output lengths (or eight of the mean when none were seen)."""
    policy = "one at a time" if config.batching == "none" else "in static batches"
    lengths = [int(outputs_mean)] * 8
    dist = traffic.get("output_tokens") or {}
    if dist.get("n"):
        lengths = [int(dist.get(q, outputs_mean)) for q in ("min", "p50", "p90", "max")]
    return Proposal(
        id=CONTINUOUS,
        plugin=PLUGIN,
        stage=stage.name,
        title="Continuous batching: requests join and leave the batch every step",
        rationale=(
            f"requests are decoded {policy}; "
            f"output lengths vary (p50 {dist.get('p50', '?')}, max {dist.get('max', '?')} "
            "tokens), so an iteration-level scheduler keeps every batch row busy"
        ),
        est_stage_speedup=_est_continuous(lengths),
        effort="minutes",
        params={"batching": "continuous"},
        conflicts=(*SPECULATIVE, CUDA_GRAPHS),
        fidelity_kind="tokens",
        evidence={"batching": config.batching, "output_tokens": dict(dist)},
        in_flight=InFlight(inputs=8, assumes="8 requests in flight at once"),
    )


def _block_speculative(stage: Stage, traffic: Mapping[str, Any]) -> list[Proposal]:
    """Speculative decoding for a batch-1 block: prompt-lookup drafts when the traffic's
    outputs copy their prompts, and the draft model when the stage's slot holds one."""
    out: list[Proposal] = []
    lookup = traffic.get("prompt_lookup") or {}
    proposal = _lookup_proposal(stage, traffic, lookup, plain=False) if lookup else None
    if proposal is not None:
        out.append(proposal)
    if stage.slots.get("draft_model") is not None:
        out.append(
            Proposal(
                id=DRAFT,
                plugin=PLUGIN,
                stage=stage.name,
                title="Speculative decoding with the given draft model",
                rationale="a draft model with the same tokenizer is in the stage's "
                "draft_model slot; its acceptance rate is measured on the workload",
                est_stage_speedup=1.3,
                params={"speculative": "draft"},
                conflicts=(CONTINUOUS, LOOKUP),
                fidelity_kind="tokens",
            )
        )
    return out


def _block_cuda_graphs(stage: Stage, available: bool) -> Proposal:
    """A static KV cache with one CUDA graph per batch-1 decode step; unavailable (with
    the reason) when the model is not on a CUDA GPU."""
    return Proposal(
        id=CUDA_GRAPHS,
        plugin=PLUGIN,
        stage=stage.name,
        title="Static KV cache + CUDA graph for the batch-1 decode step",
        rationale=(
            "batch-1 decoding of a small model is bound by kernel launches, not by "
            "the GPU: replaying one captured graph per token removes them"
        ),
        est_stage_speedup=3.0,
        status="proposed" if available else "unavailable",
        reason="" if available else "needs the model on a CUDA GPU (none here)",
        params={"cuda_graph": True},
        conflicts=(CONTINUOUS, *SPECULATIVE),
        fidelity_kind="tokens",
    )
