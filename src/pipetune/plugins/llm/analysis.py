"""Traffic analysis from observed requests and outputs (no model runs).

What the plugin decides from: prompt and output length distributions, the shared prompt
prefixes, how much the outputs copy their prompts (n-gram overlap, and a replay of
prompt-lookup drafting over the actual outputs), and on a GPU how close decoding runs to
the memory-bandwidth bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.plugins.llm.speculative import PromptLookupProposer

#: Peak memory bandwidth (bytes/s) of common GPUs, by a substring of the device name.
#: Batch-1 decoding reads every weight once per token, so weight bytes x tokens/s over
#: this peak is how much of the bound a decode loop reaches.
GPU_PEAK_BANDWIDTH: tuple[tuple[str, float], ...] = (
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("GH200", 4.0e12),
    ("B200", 8.0e12),
    ("A100-SXM4-80GB", 2.04e12),
    ("A100 80GB", 1.94e12),
    ("A100", 1.555e12),
    ("L40S", 864e9),
    ("L40", 864e9),
    ("L4", 300e9),
    ("A10G", 600e9),
    ("A10", 600e9),
    ("T4", 320e9),
    ("V100", 900e9),
    ("RTX 4090", 1008e9),
    ("RTX 3090", 936e9),
)


def peak_bandwidth(device_name: str | None) -> float | None:
    if not device_name:
        return None
    for key, value in GPU_PEAK_BANDWIDTH:
        if key.lower() in device_name.lower():
            return value
    return None


def distribution(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values, dtype=float)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "n": int(arr.size),
        "min": float(arr.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
        "cv": float(arr.std() / arr.mean()) if arr.mean() > 0 else 0.0,
    }


def ngram_copy_rate(prompt: Sequence[int], output: Sequence[int], n: int = 3) -> float:
    """Share of output tokens that end an n-gram also present in the prompt."""
    if len(output) < n:
        return 0.0
    grams = {tuple(prompt[i : i + n]) for i in range(len(prompt) - n + 1)}
    hits = sum(1 for i in range(n - 1, len(output)) if tuple(output[i - n + 1 : i + 1]) in grams)
    return hits / (len(output) - n + 1)


def replay_prompt_lookup(
    prompt: Sequence[int], output: Sequence[int], k: int = 4, ngram_max: int = 3
) -> dict[str, int]:
    """Replay greedy prompt-lookup speculation over a known output: how many verify
    passes it would take, and how many drafted tokens would be accepted. Exact for greedy
    decoding (the target's tokens are the output)."""
    proposer = PromptLookupProposer(k, ngram_max, 1)
    context = list(prompt)
    i = passes = drafted = accepted = 0
    # the first token comes from the prefill pass, as in the engine
    if output:
        context.append(output[0])
        i = 1
    while i < len(output):
        draft = (
            proposer.propose(context, min(k, len(output) - i - 1)) if len(output) - i > 1 else []
        )
        n = 0
        while n < len(draft) and draft[n] == output[i + n]:
            n += 1
        passes += 1
        drafted += len(draft)
        accepted += n
        step = n + 1
        context.extend(output[i : i + step])
        i += step
    return {
        "passes": passes,
        "drafted": drafted,
        "accepted": accepted,
        "tokens": max(0, len(output) - 1),
    }


def traffic_facts(
    prompts: Sequence[Sequence[int]],
    outputs: Sequence[Sequence[int]],
    *,
    k: int = 4,
) -> dict[str, Any]:
    """Length distributions, copy rates and the replayed prompt-lookup acceptance."""
    from pipetune.plugins.llm.prefix_cache import prefix_coverage, shared_prefixes

    facts: dict[str, Any] = {
        "prompt_tokens": distribution([len(p) for p in prompts]),
        "output_tokens": distribution([len(o) for o in outputs]),
    }
    pairs = [(p, o) for p, o in zip(prompts, outputs, strict=False) if o]
    if pairs:
        rates = [ngram_copy_rate(p, o) for p, o in pairs]
        weights = [len(o) for _, o in pairs]
        facts["ngram_copy_rate"] = float(np.average(rates, weights=weights))
        replay = [replay_prompt_lookup(p, o, k) for p, o in pairs]
        passes = sum(r["passes"] for r in replay)
        tokens = sum(r["tokens"] for r in replay)
        drafted = sum(r["drafted"] for r in replay)
        accepted = sum(r["accepted"] for r in replay)
        facts["prompt_lookup"] = {
            "draft_tokens": k,
            "acceptance_rate": accepted / drafted if drafted else 0.0,
            "tokens_per_pass": tokens / passes if passes else 1.0,
            "drafted": drafted,
            "accepted": accepted,
        }
    prefixes = shared_prefixes(prompts)
    if prefixes:
        facts["shared_prefixes"] = {
            "lengths": [len(p) for p in prefixes],
            **prefix_coverage(prompts, prefixes),
        }
    else:
        facts["shared_prefixes"] = None
    return facts


def bandwidth_utilization(
    weight_bytes: int | None, tokens_per_s: float | None, device_name: str | None
) -> dict[str, Any] | None:
    """Weight bytes x tokens/s against the device's peak (batch-1 decoding is bound by
    reading every weight once per token)."""
    peak = peak_bandwidth(device_name)
    if not weight_bytes or not tokens_per_s or peak is None:
        return None
    used = weight_bytes * tokens_per_s
    return {
        "device": device_name,
        "peak_bytes_per_s": peak,
        "weight_bytes_per_s": used,
        "utilization": used / peak,
        "bound_tokens_per_s": peak / weight_bytes,
    }
