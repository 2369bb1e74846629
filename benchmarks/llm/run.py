"""The llm plugin's benchmarks on SmolLM2-135M-Instruct, every pair through ``compare``.

Run from the repository root::

    python -m benchmarks.llm.run            # full: about an hour on a quiet 2-core CPU
    python -m benchmarks.llm.run --quick    # smoke run: a few minutes
    python -m benchmarks.llm.run --sections kv,batching   # a subset (merged into the JSON)

Each section puts two ways of serving side by side through ``compare`` (paired ABBA
rounds, an interval, the inputs and samples each figure rests on, the host's load): the
inputs are distinct requests (or, for batching, distinct streams of requests), and every
variant's greedy tokens are checked against the other side's. Decoding on a CPU takes
seconds a request, so the rounds are few and small; each section says how many.

* ``kv``: tokens/s generating exactly N new tokens (EOS disabled; N=256, quick 32) from
  distinct story prompts, batch 1: without a KV cache (the whole prefix re-run per
  token) against the plugin's KV-cache loop, and that loop against transformers' own
  ``generate`` with its cache (the competent reference it must match).
* ``prefix``: the mixed stream's requests one at a time with and without the shared
  system prompts' KV cached: time per request, and time to first token over every call.
* ``batching``: continuous batching against static batching (padded, as ``generate`` on
  a batch; and evicting finished rows, what a competent server does) at max batch 8, an
  input being a whole stream of mixed-length requests arriving at once (48 requests of
  ``traffic.mixed_stream``, one seed a stream): stream time, tokens/s while requests
  waited (the drain at the end of a finite stream left out) and P99 request latency.
* ``speculative``: three kinds of traffic: input-grounded (edit / extract / summarize, up
  to 160 tokens), open-ended short answers (48 tokens) and open-ended long stories (160
  tokens, where a 135M model decoding greedily repeats itself). The plugin's own tune
  step for prompt-lookup speculation decides on tuning requests; where it accepts, the
  accepted draft length against plain KV decoding on *other* requests of the same kind.
  A self-speculative draft (the target's first layers) on grounded requests.
* ``compile``: batch 1, N new tokens (EOS disabled): the plugin's dynamic-cache loop
  against the static-cache decode step through ``torch.compile`` (``compile_step=True``);
  the one-off compile time reported apart.
* ``cuda``: on a CUDA machine only: batch-1 tokens/s of transformers' eager ``generate``, the
  plugin's dynamic-cache loop, the static cache + CUDA-graph decode, and the same with the
  step compiled before capture, against the device's memory-bandwidth bound (weight bytes
  per token), one run each; then the headline, ``generate`` against the graph, through
  ``compare`` on distinct prompts (``compared``). Skipped with the reason here.

Results: tables on stdout and ``benchmarks/results/llm.json`` (machine, thread settings,
the command, every figure).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "llm.json"
SECTIONS = ("kv", "prefix", "batching", "speculative", "compile", "cuda")
#: Requests in each stream the batching section serves.
BATCHING_REQUESTS = 48


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _same(a: list[Any], b: list[Any]) -> float:
    from pipetune.plugins.llm.fidelity import token_match

    return token_match(a, b).value


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print("  " + "  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(row: dict[str, Any]) -> str:
    low, high = row["ci"]
    return f"[{low:.2f}, {high:.2f}]"


def _coverage(row: dict[str, Any]) -> dict[str, Any]:
    """A section's headline comparison's coverage and load, at the section's top level
    (where the render reads them)."""
    keys = ("inputs_timed", "inputs_total", "samples_per_side", "host_load")
    return {key: row.get(key) for key in keys}


# -- sections ----------------------------------------------------------------------------------


def bench_kv(loaded: Any, quick: bool) -> dict[str, Any]:
    """No cache against the plugin's KV-cache loop, and that loop against transformers'
    ``generate`` with its own cache, through ``compare`` on distinct story prompts, each
    decoding exactly N new tokens."""

    from benchmarks.llm.served import (
        Served,
        engine_served,
        generate_exactly,
        identical,
        keyed,
        pipeline,
        through_compare,
    )
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    # no cache decodes 256 tokens in about two minutes here: one prompt a round, 3 rounds
    new, prompts = (32, 2) if quick else (256, 3)
    items = [{**item, "max_new_tokens": new} for item in traffic.story_stream(prompts, seed=5)]
    requests = keyed([encode_request(item, loaded.tokenizer) for item in items])
    no_eos = (-1,)  # exactly `new` tokens in every variant
    slow = Engine(loaded.model, GenerateConfig(use_cache=False, eos_token_ids=no_eos))
    fast = Engine(loaded.model, GenerateConfig(use_cache=True, eos_token_ids=no_eos))

    no_cache, kv_cache = engine_served(slow), engine_served(fast)
    library = Served(lambda request: (generate_exactly(loaded.model, request, new), {}))
    a, b, c = (
        pipeline(n, s) for n, s in (("no cache", no_cache), ("kv", kv_cache), ("generate", library))
    )
    _, fast_s = _timed(lambda: fast.generate(requests[0][1]))  # a warm-up that sizes the rest
    slow_s = fast_s * max(2.0, new / 16)  # an upper guess: no cache costs ~9x at 256 tokens
    rounds = len(requests)
    vs_none = through_compare(a, b, requests, rounds=rounds, per_round=1, expected_s=slow_s)
    vs_library = through_compare(c, b, requests, rounds=rounds, per_round=1, expected_s=2 * fast_s)
    tokens_s = {
        name: new * 1000.0 / row["ms_per_item"][side]
        for name, row, side in (
            ("no_cache", vs_none, "a"),
            ("kv_cache", vs_none, "b"),
            ("transformers_generate", vs_library, "a"),
        )
        if row["ms_per_item"][side]
    }
    result = {
        "prompts": len(requests),
        "prompt_tokens": [len(r.prompt_ids) for _, r in requests],
        "new_tokens": new,
        "no_cache_tokens_per_s": tokens_s.get("no_cache"),
        "kv_cache_tokens_per_s": tokens_s.get("kv_cache"),
        "transformers_generate_tokens_per_s": tokens_s.get("transformers_generate"),
        "speedup_kv_vs_no_cache": vs_none["speedup"],
        "kv_vs_transformers_generate": vs_library["speedup"],
        "vs_no_cache": vs_none,
        "vs_transformers_generate": vs_library,
        "identical_tokens": identical(no_cache, kv_cache) == 1.0,
        "identical_to_transformers": identical(library, kv_cache) == 1.0,
        **_coverage(vs_none),
    }
    _table(
        f"KV cache: {new} new tokens, batch 1, {len(requests)} prompts through compare",
        ["variant", "tokens/s", "vs no cache"],
        [
            ["no KV cache (prefix re-run)", _fmt(result["no_cache_tokens_per_s"]), "1.00x"],
            [
                "KV cache (pipetune loop)",
                _fmt(result["kv_cache_tokens_per_s"]),
                f"{vs_none['speedup']:.2f}x {_ci(vs_none)}",
            ],
            [
                "KV cache (transformers generate)",
                _fmt(result["transformers_generate_tokens_per_s"]),
                f"loop: {vs_library['speedup']:.2f}x {_ci(vs_library)}",
            ],
        ],
    )
    print(
        f"  identical tokens: {result['identical_tokens']}, "
        f"same as transformers: {result['identical_to_transformers']}"
    )
    return result


def bench_prefix(loaded: Any, quick: bool) -> dict[str, Any]:
    """The mixed stream's requests one at a time with and without the shared system
    prompts' keys and values cached, through ``compare``: time per request, and time to
    first token over every call."""
    from benchmarks.llm.served import Served, identical, keyed, pipeline, through_compare
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.prefix_cache import PrefixCache, prefix_coverage, shared_prefixes
    from pipetune.plugins.llm.records import GenerateConfig

    items = traffic.mixed_stream(6 if quick else 16, seed=3, max_new_cap=8 if quick else 16)
    encoded = [encode_request(i, loaded.tokenizer) for i in items]
    prompts = [list(r.prompt_ids) for r in encoded]
    prefixes = shared_prefixes(prompts)
    base = Engine(loaded.model, GenerateConfig())
    cache = PrefixCache(prefixes)
    cached = Engine(loaded.model, GenerateConfig(prefixes=tuple(prefixes)), prefix_cache=cache)

    def serve(engine: Any) -> Served:
        def one(request: Any) -> tuple[Any, dict[str, Any]]:
            generation = engine.generate(request)
            return generation.tokens, {"ttft_s": generation.stats["ttft_s"]}

        return Served(one)

    before, after = serve(base), serve(cached)
    _, one_s = _timed(lambda: base.generate(encoded[0]))
    per_round = 2 if quick else 4
    row = through_compare(
        pipeline("no prefix cache", before),
        pipeline("prefix cache", after),
        keyed(encoded),
        rounds=len(encoded) // per_round,
        per_round=per_round,
        expected_s=2 * one_s,
    )
    ttft_b = [s["ttft_s"] * 1000 for s in before.stats]
    ttft_a = [s["ttft_s"] * 1000 for s in after.stats]
    result = {
        "requests": len(encoded),
        "prefix_lengths": [len(p) for p in prefixes],
        "coverage": prefix_coverage(prompts, prefixes),
        "ttft_ms_p50_before": statistics.median(ttft_b),
        "ttft_ms_p50_after": statistics.median(ttft_a),
        "ttft_samples": {"before": len(ttft_b), "after": len(ttft_a)},
        "ms_per_request": row["ms_per_item"],
        "speedup": row["speedup"],
        "compared": row,
        "identical": identical(before, after),
        "cache": cache.stats(),
        **_coverage(row),
    }
    _table(
        f"Prefix cache: {len(encoded)} requests through compare, shared prefixes "
        f"{result['prefix_lengths']} tokens "
        f"({result['coverage']['prefill_tokens_saved']:.0%} of prompt tokens)",
        ["variant", "TTFT p50 ms", "ms a request"],
        [
            ["no prefix cache", _fmt(result["ttft_ms_p50_before"]), _fmt(row["ms_per_item"]["a"])],
            ["prefix cache", _fmt(result["ttft_ms_p50_after"]), _fmt(row["ms_per_item"]["b"])],
        ],
    )
    print(
        f"  speedup {row['speedup']:.2f}x {_ci(row)}, identical tokens: {result['identical']:.0%}"
    )
    return result


def bench_batching(loaded: Any, quick: bool) -> dict[str, Any]:
    """Continuous batching against static batching (padded, and evicting finished rows)
    at max batch 8, through ``compare``: an input is a whole stream of mixed-length
    requests arriving at once, served to the end, and the streams differ (one seed each).
    Throughput is the ratio of stream times (the same tokens); tokens/s while requests
    waited and per-request latency come from every stream served."""
    from benchmarks.llm.served import Served, identical, keyed, pipeline, through_compare
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.analysis import distribution
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig
    from pipetune.plugins.llm.scheduler import serve_stream

    n, batch, streams = (8, 4, 2) if quick else (BATCHING_REQUESTS, 8, 2)
    cap = 24 if quick else None
    mixes = [traffic.mixed_stream(n, seed=seed, max_new_cap=cap) for seed in range(streams)]
    payloads = keyed([tuple(encode_request(i, loaded.tokenizer) for i in m) for m in mixes])

    def serve(config: GenerateConfig) -> Served:
        def stream(requests: Any) -> tuple[Any, dict[str, Any]]:
            records, summary = serve_stream(Engine(loaded.model, config), list(requests))
            stats = {
                "wall_s": summary.wall_s,
                "tokens_per_s": summary.tokens_per_s,
                "backlog_tokens_per_s": summary.backlog_tokens_per_s,
                "mean_batch": summary.mean_batch,
                "latency_s": [r.latency_s for r in records],
            }
            return tuple(tuple(r.generation.tokens) for r in records), stats

        return Served(stream)

    served = {
        "static (padded)": serve(GenerateConfig(batching="static", max_batch=batch)),
        "static (evict finished)": serve(
            GenerateConfig(batching="static", max_batch=batch, static_evict=True)
        ),
        "continuous": serve(GenerateConfig(batching="continuous", max_batch=batch)),
    }
    pipes = {name: pipeline(name, one) for name, one in served.items()}
    _, warm_s = _timed(
        lambda: serve_stream(Engine(loaded.model, GenerateConfig()), [payloads[0][1][0]])
    )
    expected = max(30.0, warm_s * n)  # an upper guess at a stream's time (the hang deadline)
    compared = {
        base: through_compare(
            pipes[base], pipes["continuous"], payloads, rounds=2, per_round=1, expected_s=expected
        )
        for base in ("static (padded)", "static (evict finished)")
    }
    policies = {}
    for name, one in served.items():
        latencies = [x for call in one.stats for x in call["latency_s"]]
        policies[name] = {
            "streams_served": len(one.stats),
            "tokens_per_s": statistics.median(c["tokens_per_s"] for c in one.stats),
            "backlog_tokens_per_s": statistics.median(c["backlog_tokens_per_s"] for c in one.stats),
            "mean_batch": statistics.mean(c["mean_batch"] for c in one.stats),
            "latency_ms": distribution([x * 1000 for x in latencies]),
        }
    cont = policies["continuous"]
    ratios = {}
    for base, row in compared.items():
        other = policies[base]
        ratios[base] = {
            "throughput": row["speedup"],
            "ci": row["ci"],
            "backlog_throughput": cont["backlog_tokens_per_s"] / other["backlog_tokens_per_s"],
            "p99_lower": other["latency_ms"]["p99"] / cont["latency_ms"]["p99"],
        }
    _table(
        f"Batching, saturated: {streams} streams of {n} requests at t=0, max_batch={batch}, "
        "through compare",
        ["policy", "tokens/s", "while waiting tok/s", "P99 s", "mean batch", "streams"],
        [
            [
                name,
                _fmt(p["tokens_per_s"]),
                _fmt(p["backlog_tokens_per_s"]),
                _fmt(p["latency_ms"]["p99"] / 1000, 1),
                _fmt(p["mean_batch"], 2),
                p["streams_served"],
            ]
            for name, p in policies.items()
        ],
    )
    for base, r in ratios.items():
        print(
            f"  continuous vs {base}: {r['throughput']:.2f}x {_ci(compared[base])} stream time, "
            f"{r['backlog_throughput']:.2f}x while requests waited, P99 {r['p99_lower']:.2f}x lower"
        )
    lengths = [len(t) for stream in served["continuous"].outputs.values() for t in stream]
    return {
        "requests": n,
        "streams": streams,
        "max_batch": batch,
        "stream": traffic.describe([i for m in mixes for i in m]),
        "output_tokens": distribution(lengths),
        "policies": policies,
        "compared": compared,
        "ratios": ratios,
        "identical": min(identical(served[base], served["continuous"]) for base in compared),
        **_coverage(compared["static (padded)"]),
    }


def bench_speculative(loaded: Any, quick: bool) -> dict[str, Any]:
    """Prompt-lookup speculation on three kinds of traffic: the plugin's own tune step
    decides on each from tuning requests; where it accepts, the accepted setting against
    plain KV-cache decoding on *other* requests of the same kind, through ``compare``. A
    self-speculative draft (the target's first layers) through ``compare`` on grounded
    requests."""
    import tempfile

    from benchmarks.llm.served import Served, identical, keyed, pipeline, through_compare
    from pipetune import Rejected, get_plugin_manager
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Pipeline, Requirements, Workload
    from pipetune.core.kernel.results import Proposal
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.analysis import ngram_copy_rate
    from pipetune.plugins.llm.blocks import encode_request, generate_stage, prompt_stage
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    n, held = (3, 2) if quick else (8, 8)
    long_cap = 32 if quick else 160
    short_cap = 16 if quick else 48
    layers = loaded.model.config.num_hidden_layers
    draft_layers = max(1, layers // 3)
    # stream -> (tuning requests, held-out requests of the same kind)
    kinds = {
        "input-grounded": (traffic.grounded_stream, 1, long_cap),
        "open-ended, short answers": (traffic.open_stream, 2, short_cap),
        "open-ended, long stories": (traffic.story_stream, 4, long_cap),
    }
    pm = get_plugin_manager(entry_points=False)
    out: dict[str, Any] = {"draft_layers": draft_layers, "held_out_requests": held}
    rows = []
    proposal = Proposal(
        id="llm.speculative_prompt_lookup",
        plugin="llm",
        stage="generate",
        title="prompt lookup",
        params={"speculative": "prompt_lookup"},
    )

    def serve(config: GenerateConfig) -> Served:
        engine = Engine(loaded.model, config, tokenizer=loaded.tokenizer)

        def one(request: Any) -> tuple[Any, dict[str, Any]]:
            generation = engine.generate(request)
            keep = ("drafted", "accepted")
            return generation.tokens, {k: generation.stats.get(k, 0) for k in keep}

        return Served(one)

    def acceptance(one: Served) -> float:
        drafted = sum(c["drafted"] for c in one.stats)
        return sum(c["accepted"] for c in one.stats) / drafted if drafted else 0.0

    for name, (make, seed, cap_at) in kinds.items():
        items = make(n, seed=seed, max_new_cap=cap_at)
        others = make(held, seed=seed + 10, max_new_cap=cap_at)
        cap = max(int(i["max_new_tokens"]) for i in items + others)
        tuning_pipeline = Pipeline(
            f"spec-{name}",
            [
                prompt_stage(loaded.tokenizer),
                generate_stage(loaded.model, loaded.tokenizer, max_new_tokens=cap),
            ],
            output_kind="tokens",
        )
        workload = Workload(items=tuple(items))
        requirements = Requirements()
        with tempfile.TemporaryDirectory() as tmp:
            context = TuneContext(pm, tuning_pipeline, workload, requirements, ArtifactStore(tmp))
            started = time.perf_counter()
            try:
                tuned = pm.tune(proposal, tuning_pipeline, context)
                if tuned is None:
                    raise RuntimeError("the llm plugin did not tune prompt lookup")
                decision = {
                    "status": "accepted",
                    "params": dict(tuned.params),
                    "points": tuned.notes["points"],
                    "chosen": tuned.notes["chosen"],
                }
            except Rejected as exc:
                decision = {"status": "rejected", "reason": str(exc)}
            decision["tune_s"] = time.perf_counter() - started
        requests = keyed([encode_request(i, loaded.tokenizer) for i in others])
        plain = serve(GenerateConfig(max_new_tokens=cap))
        _, one_s = _timed(lambda p=plain, r=requests: p(r[0]))
        found: dict[str, Any] = {
            "tuning_requests": len(items),
            "requests": len(requests),
            "stream": traffic.describe(others),
            "plugin_decision": decision,
        }
        per_round = max(1, len(requests) // 2)
        if decision["status"] == "accepted":
            k = int(decision["params"].get("num_draft_tokens") or 3)
            lookup = serve(
                GenerateConfig(max_new_tokens=cap, speculative="prompt_lookup", num_draft_tokens=k)
            )
            row = through_compare(
                pipeline("kv cache", plain),
                pipeline("prompt lookup", lookup),
                requests,
                rounds=2,
                per_round=per_round,
                expected_s=2 * one_s,
            )
            found["held_out"] = {
                **row,
                "num_draft_tokens": k,
                "acceptance_rate": acceptance(lookup),
                "identical": identical(plain, lookup),
            }
            found.update(_coverage(row))
            rows.append(
                [
                    name,
                    f"prompt lookup k={k}",
                    f"{acceptance(lookup):.0%}",
                    f"{row['speedup']:.2f}x {_ci(row)}",
                    f"accepted (tune: {decision['chosen']['speedup']:.2f}x)",
                ]
            )
        else:
            rows.append([name, "prompt lookup", "-", "-", "declined by the tune step"])
        if name == "input-grounded":
            draft = serve(
                GenerateConfig(
                    max_new_tokens=cap,
                    speculative="draft",
                    draft_layers=draft_layers,
                    num_draft_tokens=3,
                )
            )
            subset = requests[: max(2, len(requests) // 2)]
            row = through_compare(
                pipeline("kv cache", plain),
                pipeline("self-draft", draft),
                subset,
                rounds=2,
                per_round=max(1, len(subset) // 2),
                expected_s=4 * one_s,
            )
            found["self_speculative"] = {
                **row,
                "acceptance_rate": acceptance(draft),
                "identical": identical(plain, draft),
            }
            rows.append(
                [
                    name,
                    f"self-draft {draft_layers}/{layers} layers, k=3",
                    f"{acceptance(draft):.0%}",
                    f"{row['speedup']:.2f}x {_ci(row)}",
                    f"identical {found['self_speculative']['identical']:.0%}",
                ]
            )
        reference = [plain.outputs[key] for key, _ in requests if key in plain.outputs]
        found["output_tokens_mean"] = (
            statistics.mean(len(t) for t in reference) if reference else None
        )
        found["ngram_copy_rate"] = statistics.mean(
            ngram_copy_rate(r.prompt_ids, plain.outputs[key])
            for key, r in requests
            if key in plain.outputs
        )
        out[name] = found
    grounded = out["input-grounded"].get("held_out") or {}
    out["host_load"] = grounded.get("host_load")  # the section's headline comparison's
    _table(
        "Speculative decoding (batch 1, greedy, lossless): held-out requests through compare",
        ["stream", "drafter", "acceptance", "vs KV cache", "plugin decision"],
        rows,
    )
    for name in kinds:
        decision = out[name]["plugin_decision"]
        if decision["status"] == "rejected":
            print(f"  {name}: rejected: {decision['reason']}")
    return out


def bench_compile(loaded: Any, quick: bool) -> dict[str, Any]:
    """The plugin's dynamic-cache loop against the static-cache decode step compiled with
    ``torch.compile`` (``compile_step=True``), batch 1, N new tokens (EOS disabled), through
    ``compare`` on distinct prompts; the one-off compile time apart."""
    from benchmarks.llm.served import engine_served, identical, keyed, pipeline, through_compare
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    new, prompts = (32, 2) if quick else (256, 4)
    items = [{**item, "max_new_tokens": new} for item in traffic.story_stream(prompts, seed=6)]
    requests = keyed([encode_request(item, loaded.tokenizer) for item in items])
    room = max(len(r.prompt_ids) for _, r in requests) + new + 8
    dynamic = Engine(loaded.model, GenerateConfig(eos_token_ids=(-1,)))
    compiled = Engine(
        loaded.model,
        GenerateConfig(eos_token_ids=(-1,), compile_step=True, static_cache_len=room),
    )
    _, compile_s = _timed(lambda: compiled.generate(requests[0][1]))  # compiles here
    runner = compiled._static_runner
    _, one_s = _timed(lambda: dynamic.generate(requests[0][1]))
    plain, fast = engine_served(dynamic), engine_served(compiled)
    row = through_compare(
        pipeline("dynamic cache", plain),
        pipeline("compiled static step", fast),
        requests,
        rounds=2 if quick else 4,
        per_round=1,
        expected_s=2 * one_s,
    )
    rate = {
        "dynamic cache (plugin loop)": new * 1000.0 / row["ms_per_item"]["a"],
        "static cache, compiled step": new * 1000.0 / row["ms_per_item"]["b"],
    }
    _table(
        f"Compiled decode step: batch 1, {new} tokens, {len(requests)} prompts through compare "
        f"(first request with the compile: {compile_s:.1f} s)",
        ["variant", "tokens/s", "vs dynamic"],
        [
            ["dynamic cache (plugin loop)", _fmt(rate["dynamic cache (plugin loop)"]), "1.00x"],
            [
                "static cache, compiled step",
                _fmt(rate["static cache, compiled step"]),
                f"{row['speedup']:.2f}x {_ci(row)}",
            ],
        ],
    )
    return {
        "new_tokens": new,
        "prompts": len(requests),
        "tokens_per_s": rate,
        "speedup_compiled_vs_dynamic": row["speedup"],
        "compared": row,
        "first_request_s_including_compile": compile_s,
        "compile_error": runner.compile_error if runner is not None else "no runner",
        "identical": identical(plain, fast) == 1.0,
        **_coverage(row),
    }


def _cuda_kernels(torch: Any, step: Any) -> dict[str, Any]:
    """The device operations (kernels, copies) one call of ``step`` runs on the GPU and
    their summed device time, from the profiler's CUDA trace; against the step's wall time
    this says whether the kernels themselves or the gaps between them cost the time."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    step()  # warm
    torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    torch.cuda.synchronize()
    wall_us = 1e6 * (time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    ops = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy_us = sum(e.time_range.elapsed_us() for e in ops)
    return {
        "device_ops": len(ops),
        "device_busy_us": busy_us,
        "us_per_op": busy_us / len(ops) if ops else None,
        "wall_us": wall_us,
    }


def _cuda_compared(
    model: Any, tokenizer: Any, new: int, expected_s: float, quick: bool
) -> dict[str, Any]:
    """transformers' eager ``generate`` against the static cache + CUDA-graph decode through
    ``compare``, batch 1, ``new`` tokens (EOS disabled) from distinct story prompts. Each
    side returns token ids on the host, so the time includes the device's work."""

    from benchmarks.llm.served import (
        Served,
        engine_served,
        generate_exactly,
        identical,
        keyed,
        pipeline,
        through_compare,
    )
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    prompts = 2 if quick else 4
    items = [{**item, "max_new_tokens": new} for item in traffic.story_stream(prompts, seed=5)]
    requests = keyed([encode_request(item, tokenizer) for item in items])
    room = max(len(r.prompt_ids) for _, r in requests) + new + 8
    graphed = Engine(
        model, GenerateConfig(eos_token_ids=(-1,), cuda_graph=True, static_cache_len=room)
    )

    library = Served(lambda request: (generate_exactly(model, request, new, "cuda"), {}))
    graph = engine_served(graphed)
    graphed.generate(requests[0][1])  # capture, outside the timed passes
    row = through_compare(
        pipeline("generate", library),
        pipeline("cuda graph", graph),
        requests,
        rounds=len(requests),
        per_round=1,
        expected_s=expected_s,
    )
    return {**row, "identical": identical(library, graph)}


def bench_cuda(loaded: Any, quick: bool) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        reason = "no CUDA device on this machine"
        print(f"\nCUDA graphs: skipped ({reason})")
        return {"skipped": reason}
    from benchmarks.llm.served import generate_exactly
    from pipetune.plugins.llm.analysis import peak_bandwidth
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    device_name = torch.cuda.get_device_name(0)
    model = copy.deepcopy(loaded.model).to("cuda").eval()  # the user's model stays on the CPU
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    new = 64 if quick else 256
    request = encode_request(
        {"prompt": "Tell me a long story about the sea.", "max_new_tokens": new}, loaded.tokenizer
    )

    def sync_timed(fn: Any) -> tuple[Any, float]:
        torch.cuda.synchronize()
        start = time.perf_counter()
        value = fn()
        torch.cuda.synchronize()
        return value, time.perf_counter() - start

    def hf() -> Any:
        return generate_exactly(model, request, new, "cuda")

    hf()
    _, t_hf = sync_timed(hf)
    eager = Engine(model, GenerateConfig(eos_token_ids=(-1,)))
    eager.generate(request)
    eager_out, t_eager = sync_timed(lambda: eager.generate(request))

    room = len(request.prompt_ids) + new + 8
    graphed = Engine(
        model, GenerateConfig(eos_token_ids=(-1,), cuda_graph=True, static_cache_len=room)
    )
    _, capture_s = sync_timed(lambda: graphed.generate(request))  # capture
    graph_out, t_graph = sync_timed(lambda: graphed.generate(request))
    # the step compiled before capture; a failure is recorded, never loses the rest
    compiled_graph: dict[str, Any] = {}
    fused_runner: Any = None
    try:
        fused = Engine(
            model,
            GenerateConfig(
                eos_token_ids=(-1,),
                cuda_graph=True,
                compile_step=True,
                static_cache_len=room,
            ),
        )
        _, compiled_graph["compile_and_capture_s"] = sync_timed(lambda: fused.generate(request))
        fused_runner = fused._static_runner
        fused_out, t_fused = sync_timed(lambda: fused.generate(request))
        compiled_graph.update(
            tokens_per_s=new / t_fused,
            speedup_vs_generate=t_hf / t_fused,
            identical=list(fused_out.tokens) == list(eager_out.tokens),
            compile_error=fused._static_runner.compile_error,
        )
    except Exception as exc:  # a variant that fails is reported, never loses the rest
        compiled_graph["error"] = f"{type(exc).__name__}: {str(exc)[:800]}"
    # what one decode step runs on the device: eager, replayed, compiled and replayed
    kernels: dict[str, Any] = {}
    try:
        runner = graphed._static_runner
        kernels["eager_step"] = _cuda_kernels(torch, runner._step_and_argmax)
        kernels["graph_replay"] = _cuda_kernels(torch, runner.graph.replay)
        if fused_runner is not None and fused_runner.graph is not None:
            kernels["compiled_graph_replay"] = _cuda_kernels(torch, fused_runner.graph.replay)
    except Exception as exc:  # profiling is extra: a failure is reported, nothing lost
        kernels["error"] = f"{type(exc).__name__}: {str(exc)[:800]}"
    for name, row in kernels.items():
        if isinstance(row, dict):
            print(
                f"  {name}: {row['device_ops']} device ops, {row['device_busy_us']:.0f} us busy "
                f"of {row['wall_us']:.0f} us wall"
            )
    # the headline through compare: generate against the graph on distinct prompts
    compared: dict[str, Any] = {}
    try:
        compared = _cuda_compared(model, loaded.tokenizer, new, max(1.0, 2 * t_hf), quick)
    except Exception as exc:  # the single runs above stay; the failure is reported
        compared = {"error": f"{type(exc).__name__}: {str(exc)[:800]}"}
    peak = peak_bandwidth(device_name)
    bound = peak / weight_bytes if peak else None
    result = {
        "device": device_name,
        # benchmarks.gpu_all sets this where the real weights could not travel to the GPU
        "weights": os.environ.get("PIPETUNE_GPU_LLM_WEIGHTS", loaded.source),
        "weight_bytes": weight_bytes,
        "new_tokens": new,
        "transformers_generate_tokens_per_s": new / t_hf,
        "pipetune_dynamic_cache_tokens_per_s": new / t_eager,
        "static_cache_cuda_graph_tokens_per_s": new / t_graph,
        "speedup_graph_vs_generate": t_hf / t_graph,
        "bandwidth_bound_tokens_per_s": bound,
        "graph_fraction_of_bound": (new / t_graph) / bound if bound else None,
        "identical": list(eager_out.tokens) == list(graph_out.tokens),
        "capture_s": capture_s,
        "compiled_graph": compiled_graph,
        "kernels": kernels,
        "compared": compared,
        **(_coverage(compared) if "speedup" in compared else {}),
    }
    _table(
        f"CUDA graphs on {device_name}: batch 1, {new} tokens, fp32 weights "
        f"{weight_bytes / 1e6:.0f} MB",
        ["variant", "tokens/s"],
        [
            ["transformers generate (eager)", _fmt(new / t_hf)],
            ["pipetune loop, dynamic cache", _fmt(new / t_eager)],
            ["static cache + CUDA graph", _fmt(new / t_graph)],
            ["  ... step compiled before capture", _fmt(compiled_graph.get("tokens_per_s"))],
            ["memory-bandwidth bound", _fmt(bound)],
        ],
    )
    return result


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (minutes)")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch/OpenMP threads (default: the physical cores)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from pipetune.core.runtime.machine import detect_machine
    from pipetune.core.runtime.threads import pin_threads, thread_settings
    from pipetune.plugins.llm.model_loading import load_reference_model

    threads = args.threads or detect_machine().cores
    report: dict[str, Any] = {
        "command": "python -m benchmarks.llm.run "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
    }
    with pin_threads(threads):
        loaded = load_reference_model()
        machine = detect_machine(thread_settings())
        report["machine"] = machine.to_dict()
        report["model"] = {"name": loaded.name, "source": loaded.source, "notice": loaded.notice}
        print(
            f"model: {loaded.name} ({loaded.source}); threads: {threads}; "
            f"machine: {machine.cpu}, {machine.cores} cores"
        )
        if loaded.notice:
            print(f"NOTE: {loaded.notice}")
        benches = {
            "kv": bench_kv,
            "prefix": bench_prefix,
            "batching": bench_batching,
            "speculative": bench_speculative,
            "compile": bench_compile,
            "cuda": bench_cuda,
        }
        for name in SECTIONS:
            if name in sections:
                started = time.perf_counter()
                report[name] = benches[name](loaded, args.quick)
                report[name]["section_s"] = time.perf_counter() - started
                report[name]["command"] = report["command"]
                report[name]["threads"] = threads
                report[name]["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if set(sections) != set(SECTIONS) and args.output.is_file():
        # a partial run updates its sections and keeps the others (each says how and when)
        try:
            previous = json.loads(args.output.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
        report = {**previous, **report}
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.output}")
    return report


if __name__ == "__main__":
    main()
