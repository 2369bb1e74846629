"""The llm plugin's benchmarks, side by side in one run, on SmolLM2-135M-Instruct.

Run from the repository root::

    python -m benchmarks.llm.run            # full: about 55 minutes on a quiet 2-core CPU
    python -m benchmarks.llm.run --quick    # smoke run: a few minutes
    python -m benchmarks.llm.run --sections kv,batching   # a subset (merged into the JSON)

Sections (every figure is measured in this process, variants one after another on the
same requests; every variant's greedy tokens are checked against the reference):

* ``kv``: tokens/s generating exactly N new tokens (EOS disabled; N=256, quick 32) from a
  chat prompt, batch 1: without a KV cache (the whole prefix re-run per token), with the
  plugin's KV-cache loop, and transformers' own ``generate`` with its cache (the competent
  reference the plugin's loop must match).
* ``prefix``: the mixed stream served one request at a time with and without the shared
  system prompt's KV cached: time to first token and total time.
* ``batching``: the mixed-length stream (48 requests of ``traffic.mixed_stream``: prompt
  and output-budget distributions in :mod:`pipetune.plugins.llm.traffic`) served one at a
  time, by static batching (padded, as ``generate`` on a batch; and evicting finished
  rows), and by continuous batching, at ``max_batch`` 8 and 16, all with the same forward
  pass and KV code. Saturated (every request arrives at t=0): throughput and P99 latency.
  Then Poisson arrivals at 80 % of static batching's measured capacity (max_batch 8): P99
  latency and time to first token as users of a server see them. Throughput is reported
  over the whole run and while requests were waiting (until the last request's first
  token: the drain at the end of a finite stream left out).
* ``batching_long``: static (padded) vs continuous at max_batch 8 on a 96-request stream
  of the same mix, saturated: the drain weighs half as much as on 48 requests.
* ``speculative``: three streams: input-grounded (edit / extract / summarize, up to 160
  tokens), open-ended short answers (chat and writing capped at 48 tokens) and open-ended
  long stories (160 tokens, where a 135M model decoding greedily repeats itself). The
  plugin's own tune step for prompt-lookup speculation decides on each (acceptance rate,
  measured speedup, accepted or rejected with the reason); a self-speculative draft (the
  target's first layers) is measured on the first two.
* ``compile``: batch 1, N new tokens (EOS disabled): the plugin's dynamic-cache loop, the
  static-cache decode step run eagerly, and the same step through ``torch.compile``
  (``compile_step=True``), interleaved over three rounds (medians); the one-off compile
  time reported apart.
* ``cuda``: on a CUDA machine only: batch-1 tokens/s of transformers' eager ``generate``, the
  plugin's dynamic-cache loop, the static cache + CUDA-graph decode, and the same with the
  step compiled before capture, against the device's memory-bandwidth bound (weight bytes
  per token). Skipped with the reason here.

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
SECTIONS = ("kv", "prefix", "batching", "batching_long", "speculative", "compile", "cuda")


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


# -- sections ----------------------------------------------------------------------------------


def bench_kv(loaded: Any, quick: bool) -> dict[str, Any]:
    import torch

    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    new = 32 if quick else 256
    request = encode_request(
        {
            "system": "You are a creative writer.",
            "prompt": "Write a long story about a lighthouse keeper who finds a message in a "
            "bottle. Describe the sea, the weather and the village in detail.",
            "max_new_tokens": new,
        },
        loaded.tokenizer,
    )
    no_eos = (-1,)  # exactly `new` tokens in every variant
    slow = Engine(loaded.model, GenerateConfig(use_cache=False, eos_token_ids=no_eos))
    fast = Engine(loaded.model, GenerateConfig(use_cache=True, eos_token_ids=no_eos))
    ids = torch.tensor([request.prompt_ids])

    def hf_generate() -> Any:
        return loaded.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )

    fast.generate(request.__class__(request.prompt_ids, 4))  # warm-up
    hf_generate()
    # the two cached loops interleaved (ABAB), so load changes hit both alike
    cached, t_cached, hf_times = [], [], []
    for _ in range(3):
        out, t = _timed(lambda: fast.generate(request))
        cached.append(out)
        t_cached.append(t)
        hf, t = _timed(hf_generate)
        hf_times.append(t)
    uncached, t_uncached = _timed(lambda: slow.generate(request))
    hf_tokens = hf[0, ids.shape[1] :].tolist()
    t_fast, t_hf = statistics.median(t_cached), statistics.median(hf_times)
    result = {
        "prompt_tokens": len(request.prompt_ids),
        "new_tokens": new,
        "no_cache_tokens_per_s": new / t_uncached,
        "kv_cache_tokens_per_s": new / t_fast,
        "transformers_generate_tokens_per_s": new / t_hf,
        "speedup_kv_vs_no_cache": t_uncached / t_fast,
        "kv_vs_transformers_generate": t_hf / t_fast,
        "identical_tokens": list(uncached.tokens) == list(cached[0].tokens),
        "identical_to_transformers": list(cached[0].tokens) == hf_tokens,
    }
    _table(
        f"KV cache: {new} new tokens, batch 1, prompt {len(request.prompt_ids)} tokens",
        ["variant", "tokens/s", "vs no cache"],
        [
            ["no KV cache (prefix re-run)", _fmt(result["no_cache_tokens_per_s"]), "1.00x"],
            [
                "KV cache (pipetune loop)",
                _fmt(result["kv_cache_tokens_per_s"]),
                f"{result['speedup_kv_vs_no_cache']:.2f}x",
            ],
            [
                "KV cache (transformers generate)",
                _fmt(result["transformers_generate_tokens_per_s"]),
                f"{t_uncached / t_hf:.2f}x",
            ],
        ],
    )
    print(
        f"  identical tokens: {result['identical_tokens']}, "
        f"same as transformers: {result['identical_to_transformers']}"
    )
    return result


def bench_prefix(loaded: Any, quick: bool) -> dict[str, Any]:
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.prefix_cache import PrefixCache, prefix_coverage, shared_prefixes
    from pipetune.plugins.llm.records import GenerateConfig

    items = traffic.mixed_stream(6 if quick else 16, seed=3, max_new_cap=8 if quick else 16)
    requests = [encode_request(i, loaded.tokenizer) for i in items]
    prompts = [list(r.prompt_ids) for r in requests]
    prefixes = shared_prefixes(prompts)
    base = Engine(loaded.model, GenerateConfig())
    cache = PrefixCache(prefixes)
    cached = Engine(loaded.model, GenerateConfig(prefixes=tuple(prefixes)), prefix_cache=cache)
    base.generate(requests[0])
    before, t_before = _timed(lambda: [base.generate(r) for r in requests])
    after, t_after = _timed(lambda: [cached.generate(r) for r in requests])
    ttft_b = [g.stats["ttft_s"] * 1000 for g in before]
    ttft_a = [g.stats["ttft_s"] * 1000 for g in after]
    result = {
        "requests": len(requests),
        "prefix_lengths": [len(p) for p in prefixes],
        "coverage": prefix_coverage(prompts, prefixes),
        "ttft_ms_p50_before": statistics.median(ttft_b),
        "ttft_ms_p50_after": statistics.median(ttft_a),
        "total_s_before": t_before,
        "total_s_after": t_after,
        "speedup": t_before / t_after,
        "identical": _same(before, after),
        "cache": cache.stats(),
    }
    _table(
        f"Prefix cache: {len(requests)} requests, shared prefixes "
        f"{result['prefix_lengths']} tokens "
        f"({result['coverage']['prefill_tokens_saved']:.0%} of prompt tokens)",
        ["variant", "TTFT p50 ms", "total s"],
        [
            ["no prefix cache", _fmt(result["ttft_ms_p50_before"]), _fmt(t_before, 2)],
            ["prefix cache", _fmt(result["ttft_ms_p50_after"]), _fmt(t_after, 2)],
        ],
    )
    print(f"  speedup {result['speedup']:.2f}x, identical tokens: {result['identical']:.0%}")
    return result


def bench_batching(loaded: Any, quick: bool) -> dict[str, Any]:
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.analysis import distribution
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig
    from pipetune.plugins.llm.scheduler import serve_stream

    n = 8 if quick else 48
    items = traffic.mixed_stream(n, seed=0, max_new_cap=24 if quick else None)
    requests = [encode_request(i, loaded.tokenizer) for i in items]
    sizes = (4,) if quick else (8, 16)

    def variants(batch: int) -> list[tuple[str, GenerateConfig]]:
        return [
            ("static (padded)", GenerateConfig(batching="static", max_batch=batch)),
            (
                "static (evict finished)",
                GenerateConfig(batching="static", max_batch=batch, static_evict=True),
            ),
            ("continuous", GenerateConfig(batching="continuous", max_batch=batch)),
        ]

    Engine(loaded.model, GenerateConfig()).generate(
        requests[0].__class__(requests[0].prompt_ids, 2)
    )
    records, summary = serve_stream(Engine(loaded.model, GenerateConfig()), requests)
    reference = [r.generation for r in records]
    sequential = {**summary.to_dict(), "identical": 1.0}
    lengths = [len(g.tokens) for g in reference]
    rows = [
        [
            "one at a time",
            1,
            _fmt(summary.tokens_per_s),
            _fmt(summary.requests_per_s, 3),
            _fmt(summary.latency_ms["p99"] / 1000, 1),
            "1.00",
            "100%",
        ]
    ]
    saturated: dict[str, dict[str, Any]] = {}
    for batch in sizes:
        at = saturated.setdefault(str(batch), {})
        for name, config in variants(batch):
            records, summary = serve_stream(Engine(loaded.model, config), requests)
            outputs = [r.generation for r in records]
            at[name] = {**summary.to_dict(), "identical": _same(reference, outputs)}
            rows.append(
                [
                    name,
                    batch,
                    _fmt(summary.tokens_per_s),
                    _fmt(summary.requests_per_s, 3),
                    _fmt(summary.latency_ms["p99"] / 1000, 1),
                    _fmt(summary.mean_batch, 2),
                    f"{at[name]['identical']:.0%}",
                ]
            )
    _table(
        f"Batching, saturated: {n} requests at t=0 "
        f"(output tokens p50 {statistics.median(lengths):.0f}, "
        f"mean {statistics.mean(lengths):.0f}, max {max(lengths)})",
        ["policy", "max_batch", "tokens/s", "requests/s", "P99 s", "mean batch", "identical"],
        rows,
    )
    ratios = {}
    for batch in sizes:
        at = saturated[str(batch)]
        cont, padded, evict = at["continuous"], at["static (padded)"], at["static (evict finished)"]
        ratios[str(batch)] = {
            "continuous_vs_static_throughput": cont["tokens_per_s"] / padded["tokens_per_s"],
            "continuous_vs_static_evict_throughput": cont["tokens_per_s"] / evict["tokens_per_s"],
            # while requests were waiting (the drain of a finite stream left out)
            "continuous_vs_static_backlog_throughput": cont["backlog_tokens_per_s"]
            / padded["backlog_tokens_per_s"],
            "continuous_vs_static_evict_backlog_throughput": cont["backlog_tokens_per_s"]
            / evict["backlog_tokens_per_s"],
            "p99_static_over_continuous": padded["latency_ms"]["p99"] / cont["latency_ms"]["p99"],
            "p99_static_evict_over_continuous": evict["latency_ms"]["p99"]
            / cont["latency_ms"]["p99"],
        }
        r = ratios[str(batch)]
        print(
            f"  max_batch {batch}: continuous vs static (padded) "
            f"{r['continuous_vs_static_throughput']:.2f}x tokens/s, P99 "
            f"{r['p99_static_over_continuous']:.2f}x lower; vs static (evict) "
            f"{r['continuous_vs_static_evict_throughput']:.2f}x tokens/s, P99 "
            f"{r['p99_static_evict_over_continuous']:.2f}x lower; while requests waited "
            f"{r['continuous_vs_static_backlog_throughput']:.2f}x (padded), "
            f"{r['continuous_vs_static_evict_backlog_throughput']:.2f}x (evict)"
        )
    # open-loop Poisson arrivals at 80 % of static batching's capacity (first batch size)
    batch = sizes[0]
    rate = 0.8 * saturated[str(batch)]["static (padded)"]["requests_per_s"]
    arrivals = traffic.poisson_arrivals(n, rate, seed=1)
    poisson: dict[str, Any] = {}
    rows = []
    for name, config in variants(batch):
        records, summary = serve_stream(Engine(loaded.model, config), requests, arrivals)
        poisson[name] = {
            **summary.to_dict(),
            "identical": _same(reference, [r.generation for r in records]),
        }
        rows.append(
            [
                name,
                _fmt(summary.latency_ms["p50"] / 1000, 1),
                _fmt(summary.latency_ms["p99"] / 1000, 1),
                _fmt(summary.ttft_ms["p50"] / 1000, 2),
                _fmt(summary.ttft_ms["p99"] / 1000, 2),
            ]
        )
    _table(
        f"Batching, Poisson arrivals at {rate:.3f} requests/s "
        f"(80 % of static capacity, max_batch={batch})",
        ["policy", "latency P50 s", "latency P99 s", "TTFT P50 s", "TTFT P99 s"],
        rows,
    )
    return {
        "requests": n,
        "max_batch": list(sizes),
        "stream": traffic.describe(items),
        "prompt_tokens": distribution([len(r.prompt_ids) for r in requests]),
        "output_tokens": distribution(lengths),
        "output_lengths": lengths,
        "sequential": sequential,
        "saturated": saturated,
        "ratios": ratios,
        "poisson_rate_rps": rate,
        "poisson_max_batch": batch,
        "poisson": poisson,
    }


def bench_batching_long(loaded: Any, quick: bool) -> dict[str, Any]:
    """Static (padded) vs continuous on a stream twice as long (96 requests, same mix and
    generator), saturated, max batch 8: the drain at the end weighs half as much, so the
    whole-run ratio moves toward the ratio while requests wait."""
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.analysis import distribution
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig
    from pipetune.plugins.llm.scheduler import serve_stream

    n, batch = (16, 4) if quick else (96, 8)
    items = traffic.mixed_stream(n, seed=0, max_new_cap=24 if quick else None)
    requests = [encode_request(i, loaded.tokenizer) for i in items]
    Engine(loaded.model, GenerateConfig()).generate(
        requests[0].__class__(requests[0].prompt_ids, 2)
    )
    runs: dict[str, Any] = {}
    outputs: dict[str, list[Any]] = {}
    for name, policy in (("static (padded)", "static"), ("continuous", "continuous")):
        config = GenerateConfig(batching=policy, max_batch=batch)
        records, summary = serve_stream(Engine(loaded.model, config), requests)
        outputs[name] = [r.generation for r in records]
        runs[name] = summary.to_dict()
    static, cont = runs["static (padded)"], runs["continuous"]
    ratios = {
        "continuous_vs_static_throughput": cont["tokens_per_s"] / static["tokens_per_s"],
        "continuous_vs_static_backlog_throughput": cont["backlog_tokens_per_s"]
        / static["backlog_tokens_per_s"],
        "p99_static_over_continuous": static["latency_ms"]["p99"] / cont["latency_ms"]["p99"],
    }
    identical = _same(outputs["static (padded)"], outputs["continuous"])
    _table(
        f"Batching, saturated: {n} requests at t=0, max_batch={batch}",
        ["policy", "tokens/s", "while waiting tok/s", "P99 s", "mean batch"],
        [
            [
                name,
                _fmt(run["tokens_per_s"]),
                _fmt(run["backlog_tokens_per_s"]),
                _fmt(run["latency_ms"]["p99"] / 1000, 1),
                _fmt(run["mean_batch"], 2),
            ]
            for name, run in runs.items()
        ],
    )
    print(
        f"  continuous vs static: {ratios['continuous_vs_static_throughput']:.2f}x tokens/s, "
        f"{ratios['continuous_vs_static_backlog_throughput']:.2f}x while requests waited, "
        f"P99 {ratios['p99_static_over_continuous']:.2f}x lower; tokens identical "
        f"{identical:.0%}"
    )
    return {
        "requests": n,
        "max_batch": batch,
        "stream": traffic.describe(items),
        "output_tokens": distribution([len(g.tokens) for g in outputs["continuous"]]),
        "saturated": runs,
        "ratios": ratios,
        "identical": identical,
    }


def bench_speculative(loaded: Any, quick: bool) -> dict[str, Any]:
    import tempfile

    from pipetune import Rejected, get_plugin_manager
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Pipeline, Requirements, Workload
    from pipetune.core.kernel.results import Proposal
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.analysis import ngram_copy_rate, replay_prompt_lookup
    from pipetune.plugins.llm.blocks import encode_request, generate_stage, prompt_stage
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    n = 3 if quick else 8
    long_cap = 32 if quick else 160
    short_cap = 16 if quick else 48
    layers = loaded.model.config.num_hidden_layers
    draft_layers = max(1, layers // 3)
    # stream -> (requests, measure the self-speculative draft on it too)
    streams = {
        "input-grounded": (traffic.grounded_stream(n, seed=1, max_new_cap=long_cap), True),
        "open-ended, short answers": (traffic.open_stream(n, seed=2, max_new_cap=short_cap), True),
        "open-ended, long stories": (traffic.story_stream(n, seed=4, max_new_cap=long_cap), False),
    }
    pm = get_plugin_manager(entry_points=False)
    out: dict[str, Any] = {"draft_layers": draft_layers}
    rows = []
    proposal = Proposal(
        id="llm.speculative_prompt_lookup",
        plugin="llm",
        stage="generate",
        title="prompt lookup",
        params={"speculative": "prompt_lookup"},
    )
    for name, (items, with_draft) in streams.items():
        cap = max(int(i["max_new_tokens"]) for i in items)
        pipeline = Pipeline(
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
            context = TuneContext(pm, pipeline, workload, requirements, ArtifactStore(tmp))
            started = time.perf_counter()
            try:
                tuned = pm.call_owner(
                    "tune_proposal",
                    "llm",
                    proposal=proposal,
                    pipeline=pipeline,
                    workload=workload,
                    requirements=requirements,
                    context=context,
                )
                decision = {
                    "status": "accepted",
                    "params": dict(tuned.params),
                    "points": tuned.notes["points"],
                    "chosen": tuned.notes["chosen"],
                }
            except Rejected as exc:
                decision = {"status": "rejected", "reason": str(exc)}
            decision["tune_s"] = time.perf_counter() - started
        requests = [encode_request(i, loaded.tokenizer) for i in items]
        base = Engine(loaded.model, GenerateConfig(max_new_tokens=cap), tokenizer=loaded.tokenizer)
        reference, t_ref = _timed(lambda b=base, rs=requests: [b.generate(r) for r in rs])
        pairs = list(zip(requests, reference, strict=True))
        replay = [replay_prompt_lookup(r.prompt_ids, g.tokens, k=5) for r, g in pairs]
        out[name] = {
            "requests": len(items),
            "stream": traffic.describe(items),
            "output_tokens_mean": statistics.mean(len(g.tokens) for g in reference),
            "ngram_copy_rate": statistics.mean(
                ngram_copy_rate(r.prompt_ids, g.tokens) for r, g in pairs
            ),
            "replayed_tokens_per_pass_k5": sum(x["tokens"] for x in replay)
            / max(1, sum(x["passes"] for x in replay)),
            "plugin_decision": decision,
            "examples": [(g.text or "")[:160] for g in reference[:2]],
        }
        best = decision.get("chosen") or {}
        if "reason" in decision:
            rows.append([name, "prompt lookup", "-", "-", "rejected (below)"])
        for point in decision.get("points") or []:
            rows.append(
                [
                    name,
                    f"prompt lookup k={point['num_draft_tokens']}",
                    f"{point['acceptance_rate']:.0%}",
                    f"{point['speedup']:.2f}x",
                    decision["status"] if point is best else "",
                ]
            )
        if with_draft:
            draft = Engine(
                loaded.model,
                GenerateConfig(
                    max_new_tokens=cap,
                    speculative="draft",
                    draft_layers=draft_layers,
                    num_draft_tokens=3,
                ),
            )
            drafted, t_draft = _timed(lambda d=draft, rs=requests: [d.generate(r) for r in rs])
            d_drafted = sum(g.stats.get("drafted", 0) for g in drafted)
            d_accepted = sum(g.stats.get("accepted", 0) for g in drafted)
            self_spec = {
                "speedup": t_ref / t_draft,
                "acceptance_rate": d_accepted / d_drafted if d_drafted else 0.0,
                "identical": _same(reference, drafted),
            }
            out[name]["self_speculative"] = self_spec
            rows.append(
                [
                    name,
                    f"self-draft {draft_layers}/{layers} layers, k=3",
                    f"{self_spec['acceptance_rate']:.0%}",
                    f"{self_spec['speedup']:.2f}x",
                    f"identical {self_spec['identical']:.0%}",
                ]
            )
    _table(
        "Speculative decoding (batch 1, greedy, lossless)",
        ["stream", "drafter", "acceptance", "speedup", "plugin decision"],
        rows,
    )
    for name in streams:
        facts = out[name]
        print(
            f"  {name}: {facts['output_tokens_mean']:.0f} output tokens per request, 3-gram "
            f"copy rate {facts['ngram_copy_rate']:.0%}, prompt lookup replayed "
            f"{facts['replayed_tokens_per_pass_k5']:.2f} tokens per pass"
        )
        if facts["plugin_decision"]["status"] == "rejected":
            print(f"    rejected: {facts['plugin_decision']['reason']}")
    return out


def bench_compile(loaded: Any, quick: bool) -> dict[str, Any]:
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.cuda_graphs import StaticDecoder
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    new = 32 if quick else 256
    request = encode_request(
        {"prompt": "Tell me a long story about the sea.", "max_new_tokens": new}, loaded.tokenizer
    )
    room = len(request.prompt_ids) + new + 8
    dynamic = Engine(loaded.model, GenerateConfig(eos_token_ids=(-1,)))
    static = StaticDecoder(dynamic, max_len=room)

    def static_generate() -> Any:
        seq = dynamic.prepare(request)
        static.run(seq)
        return seq.result()

    compiled = Engine(
        loaded.model,
        GenerateConfig(eos_token_ids=(-1,), compile_step=True, static_cache_len=room),
    )
    reference, compile_s = _timed(lambda: compiled.generate(request))  # compiles here
    runner = compiled._static_runner
    variants = {
        "dynamic cache (plugin loop)": lambda: dynamic.generate(request),
        "static cache, eager step": static_generate,
        "static cache, compiled step": lambda: compiled.generate(request),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    same = True
    for _ in range(1 if quick else 3):
        for name, run in variants.items():
            out, seconds = _timed(run)
            times[name].append(seconds)
            same &= list(out.tokens) == list(reference.tokens)
    rate = {name: new / statistics.median(t) for name, t in times.items()}
    base = rate["dynamic cache (plugin loop)"]
    _table(
        f"Compiled decode step: batch 1, {new} tokens (compile {compile_s:.1f} s once)",
        ["variant", "tokens/s", "vs dynamic"],
        [[name, _fmt(r), f"{r / base:.2f}x"] for name, r in rate.items()],
    )
    return {
        "new_tokens": new,
        "tokens_per_s": rate,
        "seconds": times,
        "speedup_compiled_vs_dynamic": rate["static cache, compiled step"] / base,
        "speedup_compiled_vs_static_eager": rate["static cache, compiled step"]
        / rate["static cache, eager step"],
        "first_request_s_including_compile": compile_s,
        "compile_error": runner.compile_error if runner is not None else "no runner",
        "identical": same,
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


def bench_cuda(loaded: Any, quick: bool) -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        reason = "no CUDA device on this machine"
        print(f"\nCUDA graphs: skipped ({reason})")
        return {"skipped": reason}
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
    ids = torch.tensor([request.prompt_ids], device="cuda")

    def sync_timed(fn: Any) -> tuple[Any, float]:
        torch.cuda.synchronize()
        start = time.perf_counter()
        value = fn()
        torch.cuda.synchronize()
        return value, time.perf_counter() - start

    def hf() -> Any:
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=0,
        )

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
            "batching_long": bench_batching_long,
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
