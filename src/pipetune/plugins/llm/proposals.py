"""Propose, tune and materialize the llm plugin's changes.

Every change is lossless (greedy tokens must not change), so each is a new value of a
:class:`GenerateConfig` field for the plugin's block, or a proxy in the ``model`` slot of a
user's stage; materialize builds a new stage from those parameters and never touches the
user's model.

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

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError, PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change, InFlight, Profile, Proposal, Tuned
from pipetune.plugins.llm.blocks import encode_request, is_generate_block, stage_engine
from pipetune.plugins.llm.records import GenerateConfig, Generation, GenerationRequest

PLUGIN = "llm"
KV_CACHE = "llm.kv_cache"
KV_CACHE_LOOP = "llm.kv_cache_loop"
PREFIX_CACHE = "llm.prefix_cache"
CONTINUOUS = "llm.continuous_batching"
LOOKUP = "llm.speculative_prompt_lookup"
DRAFT = "llm.speculative_draft"
CUDA_GRAPHS = "llm.cuda_graphs"
SPECULATIVE = (LOOKUP, DRAFT)

#: How many of the tuning split's requests a tune step measures on (this plugin's tune
#: steps run the real model; the validator confirms on the held-out split).
TUNE_REQUESTS = 12
#: The batch sizes the continuous-batching tune step tries.
BATCH_SIZES = (4, 8, 16)
#: Prompt-lookup draft lengths tried.
DRAFT_LENGTHS = (3, 5)
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
    from pipetune.plugins.llm.recognize import generate_stages, model_slot

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
            slot = model_slot(stage)
            probe = facts.get("probe", {}) or {}
            if probe.get("kv_cache") is False and slot and stage.injects(slot):  # noqa: SIM102
                if probe.get("generate_calls", 1):
                    proposals.append(
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
            if probe.get("prefix_rerun"):
                proposals.append(
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
    return proposals


def _propose_block(
    stage: Stage,
    facts: Mapping[str, Any],
    traffic: Mapping[str, Any],
    prompt_mean: float,
    output_mean: float,
) -> list[Proposal]:
    config: GenerateConfig = stage.slots["config"]
    model_info = facts.get("model", {}) or {}
    on_cuda = str(model_info.get("device", "cpu")).startswith("cuda")
    out: list[Proposal] = []
    if not config.use_cache:
        out.append(
            Proposal(
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
        )
        return out  # the other changes all build on the cache: proposed once it is kept

    shared = traffic.get("shared_prefixes")
    if not config.prefixes and shared and shared.get("prefill_tokens_saved", 0) >= 0.15:
        ttft = (facts.get("ttft_ms") or {}).get("p50")
        latency = facts.get("request_ms_p50")
        prefill_share = min(0.9, ttft / latency) if ttft and latency else 0.3
        saved = float(shared["prefill_tokens_saved"])
        out.append(
            Proposal(
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
        )

    outputs_mean = output_mean
    lookup = traffic.get("prompt_lookup") or {}
    if config.batching != "continuous":
        policy = "one at a time" if config.batching == "none" else "in static batches"
        lengths = [int(outputs_mean)] * 8
        dist = traffic.get("output_tokens") or {}
        if dist.get("n"):
            lengths = [int(dist.get(q, outputs_mean)) for q in ("min", "p50", "p90", "max")]
        out.append(
            Proposal(
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
        )
    if config.speculative is None and config.batching == "none":
        tokens_per_pass = float(lookup.get("tokens_per_pass", 1.0))
        acceptance = float(lookup.get("acceptance_rate", 0.0))
        copy_rate = float(traffic.get("ngram_copy_rate", 0.0))
        # decided from the traffic: the replay over the observed outputs is exact for greedy
        # decoding, so below this many tokens per target pass a verify pass cannot pay
        if lookup and tokens_per_pass >= MIN_TOKENS_PER_PASS:
            out.append(
                Proposal(
                    id=LOOKUP,
                    plugin=PLUGIN,
                    stage=stage.name,
                    title="Speculative decoding with prompt-lookup (n-gram) drafts",
                    rationale=(
                        f"outputs copy their prompts: {copy_rate:.0%} of output 3-grams occur "
                        f"in the prompt; replaying prompt lookup over the observed outputs "
                        f"accepts {acceptance:.0%} of drafted tokens, {tokens_per_pass:.2f} "
                        "tokens per target pass"
                    ),
                    est_stage_speedup=max(1.0, tokens_per_pass / (1.0 + 0.08 * 4)),
                    params={"speculative": "prompt_lookup"},
                    conflicts=(CONTINUOUS, DRAFT),
                    fidelity_kind="tokens",
                    evidence={"prompt_lookup": dict(lookup), "ngram_copy_rate": copy_rate},
                )
            )
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
    if not config.cuda_graph and config.batching == "none":
        available = on_cuda
        out.append(
            Proposal(
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
        )
    return out


# -- tuning -------------------------------------------------------------------------------


def _requests(
    context: Any, pipeline: Pipeline, stage: Stage, limit: int
) -> list[GenerationRequest]:
    inputs = context.stage_inputs(pipeline, stage.name)
    tokenizer = stage.slots.get("tokenizer")
    requests = [encode_request(item, tokenizer) for item in inputs]
    return requests[:limit]


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _check_same(
    name: str, baseline: Sequence[Generation], candidate: Sequence[Generation], floor: float
) -> Any:
    from pipetune.plugins.llm.fidelity import token_match

    fidelity = token_match(baseline, candidate)
    if fidelity.value < floor:
        first = fidelity.details.get("first_divergence")
        changed = fidelity.n - fidelity.details["requests_identical"]
        raise Rejected(
            f"{name}: greedy tokens changed on {changed} of {fidelity.n} requests "
            f"(first divergence: {first})"
        )
    return fidelity


def tune(
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    context: Any,
) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    if proposal.id == KV_CACHE_LOOP:
        raise Rejected("advice only: the stage's own loop must be changed by hand")
    if not is_generate_block(stage):
        return _tune_wrapped(proposal, pipeline, stage, context, requirements)
    from pipetune.plugins.llm.engine import Engine

    base = stage_engine(stage)
    config: GenerateConfig = stage.slots["config"]
    requests = _requests(context, pipeline, stage, TUNE_REQUESTS)
    if not requests:
        raise Rejected("no requests reach the generate stage in the tuning split")
    floor = context.fidelity_floor
    min_speedup = 1.0 + requirements.min_gain

    def engine(cfg: GenerateConfig, **slots: Any) -> Engine:
        return Engine(
            stage.slots["model"],
            cfg,
            tokenizer=stage.slots.get("tokenizer"),
            draft_model=slots.get("draft_model", stage.slots.get("draft_model")),
            prefix_cache=slots.get("prefix_cache"),
        )

    if proposal.id == KV_CACHE:
        candidate = engine(config.evolve(use_cache=True))
        sample = requests[: max(2, len(requests) // 3)]  # the slow side is slow by design
        before, t_before = _timed(lambda: [base.generate(r) for r in sample])
        after, t_after = _timed(lambda: [candidate.generate(r) for r in sample])
        fidelity = _check_same("KV cache", before, after, floor)
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

    if proposal.id == PREFIX_CACHE:
        from pipetune.plugins.llm.prefix_cache import PrefixCache, prefix_coverage, shared_prefixes

        prompts = [list(r.prompt_ids) for r in _requests(context, pipeline, stage, 10_000)]
        prefixes = shared_prefixes(prompts)
        if not prefixes:
            raise Rejected("no prompt prefix is shared by enough requests of the tuning split")
        cache = PrefixCache(prefixes)
        candidate = engine(config.evolve(prefixes=tuple(prefixes)), prefix_cache=cache)
        before, t_before = _timed(lambda: [base.generate(r) for r in requests])
        after, t_after = _timed(lambda: [candidate.generate(r) for r in requests])
        fidelity = _check_same("prefix cache", before, after, floor)
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

    if proposal.id == CONTINUOUS:
        tuned = _tune_continuous(base, config, requests, engine, floor, min_speedup)
        batch = int(tuned.params["max_batch"])  # validated with passes that can fill it
        return tuned.evolve(
            in_flight=InFlight(inputs=batch, assumes=f"{batch} requests in flight at once")
        )

    if proposal.id in SPECULATIVE:
        return _tune_speculative(proposal, base, config, requests, engine, floor, min_speedup)

    if proposal.id == CUDA_GRAPHS:
        from pipetune.plugins.llm.cuda_graphs import cuda_graph_available

        if not cuda_graph_available(stage.slots["model"]):
            raise Rejected("CUDA graphs need the model on a CUDA device")
        return _tune_cuda_graphs(base, config, requests, engine, floor, min_speedup)
    raise Rejected(f"unknown llm proposal {proposal.id}")


#: The CUDA-graph tune step's two captures: the eager decode step, and the step compiled
#: by ``torch.compile`` first (its ~1,200 small kernels fused into ~400 on the CPU: see
#: docs/benchmarks/llm.md). Both are measured; the faster one with the same tokens is kept.
GRAPH_VARIANTS = (("captured", False), ("compiled, then captured", True))


def _tune_cuda_graphs(
    base: Any,
    config: GenerateConfig,
    requests: list[GenerationRequest],
    engine: Any,
    floor: float,
    min_speedup: float,
) -> Tuned:
    """Static cache + one CUDA graph per decode step, captured as is and compiled first.

    A compiled variant that fails to compile, falls back to the eager step, or changes a
    token is left out with the reason in the notes; the plain capture decides alone then.
    """
    sample = requests[:4]
    # warm up (capture, compile) on the request that decodes longest: a one-token request
    # never reaches the decode step
    warm_up = max(sample, key=lambda r: r.max_new_tokens)
    before, t_before = _timed(lambda: [base.generate(r) for r in sample])
    measured: dict[str, dict[str, Any]] = {}
    best: tuple[float, bool, Any] | None = None
    for name, compile_step in GRAPH_VARIANTS:
        candidate = engine(config.evolve(cuda_graph=True, compile_step=compile_step))
        try:
            candidate.generate(warm_up)
            after, t_after = _timed(lambda c=candidate: [c.generate(r) for r in sample])
            error = getattr(candidate._static_runner, "compile_error", None)
            if error:
                raise Rejected(f"fell back to the eager step: {error}")
            fidelity = _check_same(f"CUDA graphs ({name})", before, after, floor)
        except Exception as exc:
            if not compile_step:
                raise
            # inductor, capture or tokens: the compiled variant is left out, the plain
            # capture decides
            reason = str(exc) if isinstance(exc, Rejected) else f"{type(exc).__name__}: {exc}"
            measured[name] = {"left_out": reason[:500]}
            continue
        speedup = t_before / t_after if t_after else 0.0
        measured[name] = {"speedup": speedup, "fidelity": fidelity.to_dict()}
        if best is None or speedup > best[0]:
            best = (speedup, compile_step, fidelity)
    assert best is not None  # the plain capture either measured or raised
    speedup, compile_step, fidelity = best
    if speedup < min_speedup:
        raise Rejected(f"CUDA graph decode measured {speedup:.2f}x: does not pay")
    return Tuned(
        params={
            "cuda_graph": True,
            "compile_step": compile_step,
            "static_cache_len": config.static_cache_len,
        },
        notes={"speedup": speedup, "fidelity": fidelity.to_dict(), "variants": measured},
        est_stage_speedup=speedup,
    )


def _tune_continuous(
    base: Any,
    config: GenerateConfig,
    requests: list[GenerationRequest],
    engine: Any,
    floor: float,
    min_speedup: float,
) -> Tuned:
    from pipetune.plugins.llm.scheduler import serve_stream

    reference, t_ref = _timed(lambda: base.generate_many(requests))
    tokens = sum(len(g.tokens) for g in reference)
    points = []
    best: tuple[float, dict[str, Any]] | None = None
    sizes = [b for b in BATCH_SIZES if b <= max(len(requests), BATCH_SIZES[0])]
    for size in sizes:
        static_engine = engine(config.evolve(batching="static", max_batch=size))
        _, static = serve_stream(static_engine, requests)
        cont_engine = engine(config.evolve(batching="continuous", max_batch=size))
        records, cont = serve_stream(cont_engine, requests)
        fidelity = _check_same(
            f"continuous batching (batch {size})",
            reference,
            [r.generation for r in records],
            floor,
        )
        point = {
            "max_batch": size,
            "engine": "pipetune",
            "static_tokens_per_s": static.tokens_per_s,
            "continuous_tokens_per_s": cont.tokens_per_s,
            "static_p99_ms": static.latency_ms["p99"],
            "continuous_p99_ms": cont.latency_ms["p99"],
            "mean_batch": cont.mean_batch,
            "fidelity": fidelity.value,
        }
        points.append(point)
        if best is None or cont.tokens_per_s > best[0]:
            best = (cont.tokens_per_s, point)
    assert best is not None
    chosen = dict(best[1])
    try:  # transformers' own continuous batching, when the installed version has it
        if base.device.type != "cuda":
            raise RuntimeError(
                "measured only on CUDA: on CPU its manager's warm-up and paged-cache set-up "
                "dominate (77 s for 8 requests of a tiny model in our benchmark)"
            )
        tf_engine = engine(
            config.evolve(
                batching="continuous", max_batch=chosen["max_batch"], engine="transformers"
            )
        )
        records, tf = serve_stream(tf_engine, requests)
        fidelity = _check_same(
            "transformers continuous batching", reference, [r.generation for r in records], floor
        )
        points.append(
            {
                "max_batch": chosen["max_batch"],
                "engine": "transformers",
                "continuous_tokens_per_s": tf.tokens_per_s,
                "continuous_p99_ms": tf.latency_ms["p99"],
                "fidelity": fidelity.value,
            }
        )
        if tf.tokens_per_s > best[0]:
            chosen = dict(points[-1])
    except Exception as exc:  # unavailable or unsuitable here: the plugin's own scheduler
        points.append({"engine": "transformers", "unavailable": f"{type(exc).__name__}: {exc}"})
    sequential_tps = tokens / t_ref if t_ref else 0.0
    speedup = chosen["continuous_tokens_per_s"] / sequential_tps if sequential_tps else 0.0
    if speedup < min_speedup:
        raise Rejected(
            f"continuous batching measured {speedup:.2f}x the sequential tokens/s "
            f"({chosen['continuous_tokens_per_s']:.1f} vs {sequential_tps:.1f}) on "
            f"{len(requests)} requests: does not pay"
        )
    return Tuned(
        params={
            "batching": "continuous",
            "max_batch": chosen["max_batch"],
            "engine": chosen["engine"],
        },
        notes={
            "requests": len(requests),
            "sequential_tokens_per_s": sequential_tps,
            "points": points,
            "chosen": chosen,
        },
        est_stage_speedup=speedup,
    )


def _tune_speculative(
    proposal: Proposal,
    base: Any,
    config: GenerateConfig,
    requests: list[GenerationRequest],
    engine: Any,
    floor: float,
    min_speedup: float,
) -> Tuned:
    reference, t_ref = _timed(lambda: [base.generate(r) for r in requests])
    kind = "prompt_lookup" if proposal.id == LOOKUP else "draft"
    lengths = DRAFT_LENGTHS if kind == "prompt_lookup" else (config.num_draft_tokens,)
    points = []
    best: dict[str, Any] | None = None
    for k in lengths:
        candidate = engine(config.evolve(speculative=kind, num_draft_tokens=k))
        outputs, t = _timed(lambda c=candidate: [c.generate(r) for r in requests])
        fidelity = _check_same(f"speculative decoding ({kind}, k={k})", reference, outputs, floor)
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


def _tune_wrapped(
    proposal: Proposal, pipeline: Pipeline, stage: Stage, context: Any, requirements: Requirements
) -> Tuned:
    """A user's stage: measure the proxy against the original on a few inputs."""
    candidate = materialize(Change.from_proposal(proposal), pipeline, Path("."))
    items = list(context.workload.items)[:4]
    before, t_before = _timed(lambda: [pipeline.run(i) for i in items])
    after, t_after = _timed(lambda: [candidate.run(i) for i in items])
    fidelity = context.fidelity(after, kind="tokens", baseline=before)
    if fidelity.value < context.fidelity_floor:
        raise Rejected(f"outputs changed with a KV cache: {fidelity.details}")
    speedup = t_before / t_after if t_after else 0.0
    return Tuned(
        params=dict(proposal.params), notes={"speedup": speedup}, est_stage_speedup=speedup
    )


# -- materializing ------------------------------------------------------------------------


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    params = dict(change.params)
    if change.proposal == KV_CACHE_LOOP:
        raise PipelineError("llm.kv_cache_loop is advice: it cannot be applied automatically")
    if params.get("wrap") == "cached_generate":
        from pipetune.plugins.llm.recognize import CachedGenerate, model_slot

        slot = model_slot(stage)
        if slot is None:
            raise PipelineError(f"stage {stage.name!r} no longer holds a causal LM")
        model = stage.slots[slot]
        inner = getattr(model, "__pipetune_wrapped__", model)
        lookup = params.get("prompt_lookup_num_tokens") or getattr(model, "_prompt_lookup", None)
        new = stage.with_slots(**{slot: CachedGenerate(inner, lookup)})
        return pipeline.replace(
            stage.name, new.noted(llm=[*stage.meta.get("llm", []), change.proposal])
        )
    if not is_generate_block(stage):
        raise PipelineError(
            f"{change.proposal} applies to pipetune's generate block; "
            f"stage {stage.name!r} is not one"
        )
    config: GenerateConfig = stage.slots["config"]
    known = set(GenerateConfig.__dataclass_fields__)
    updates = {k: v for k, v in params.items() if k in known}
    if "prefixes" in updates:
        updates["prefixes"] = tuple(tuple(p) for p in updates["prefixes"])
    try:
        new_config = config.evolve(**updates)
        new_config = GenerateConfig.from_dict(new_config.to_dict())  # re-validate
    except (TypeError, ConfigError) as exc:
        raise PipelineError(f"{change.proposal}: invalid parameters {updates}: {exc}") from None
    slots: dict[str, Any] = {"config": new_config}
    if new_config.prefixes and change.proposal == PREFIX_CACHE:
        from pipetune.plugins.llm.prefix_cache import PrefixCache

        slots["prefix_cache"] = PrefixCache(new_config.prefixes)
    applied = [*stage.meta.get("llm", []), change.proposal]
    result = pipeline.replace(stage.name, stage.with_slots(**slots).noted(llm=applied))
    if change.proposal == CONTINUOUS:  # served in batches, or the engine sees one request
        from pipetune.core.runtime.serving import with_serving

        result = with_serving(result, batch_size=new_config.max_batch)
    return result
