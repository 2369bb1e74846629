"""``pipetune demo llm``: serving SmolLM2-135M-Instruct the slow, classic way.

The reference pipeline tokenizes each request with the chat template and generates
greedily **without a KV cache** (``use_cache=False``: every token re-runs the whole
prefix), one request at a time, recomputing the shared system prompt for every request,
with no speculation. The request stream (:mod:`pipetune.plugins.llm.traffic`) mixes
support questions sharing one system prompt, input-grounded requests (edit, extract,
summarize: outputs copy their prompts) and open-ended writing, with arrivals from a
Poisson process.

The loop should find, in order: the KV cache, then prefix caching, continuous batching
and prompt-lookup speculation (decided from the measured copy rate), each checked for
exactly the same greedy tokens.

``quick=True`` builds the same pipeline over a tiny config-built Llama-style model with
a byte tokenizer (random weights: only the mechanics are meaningful) for tests.
"""

from __future__ import annotations

from pipetune.core.kernel.model import Pipeline, Requirements, Trace, Workload
from pipetune.core.kernel.registry import DemoSetup
from pipetune.plugins.llm import traffic
from pipetune.plugins.llm.blocks import generate_stage, prompt_stage

#: Full demo: requests and output budget cap (the no-cache baseline costs a full forward
#: pass per token), and the Poisson arrival rate (requests/s): faster than any variant
#: serves on a small CPU, so every variant is saturated and throughput measures capacity.
FULL_REQUESTS = 12
FULL_MAX_NEW = 32
ARRIVAL_RATE = 4.0
QUICK_REQUESTS = 8
QUICK_MAX_NEW = 12


def build(quick: bool = False) -> DemoSetup:
    from pipetune.plugins.llm.model_loading import (
        ByteTokenizer,
        LoadedModel,
        config_model,
        load_reference_model,
    )

    if quick:
        loaded = LoadedModel(
            config_model("llama", layers=2, hidden=64, heads=4, context=1024, seed=0),
            ByteTokenizer(),
            "config",
            "tiny-llama-config-random",
            notice="quick demo: a tiny config-built model with random weights (mechanics only)",
        )
        n, cap = QUICK_REQUESTS, QUICK_MAX_NEW
    else:
        loaded = load_reference_model()
        n, cap = FULL_REQUESTS, FULL_MAX_NEW
    items = traffic.mixed_stream(n, seed=7, max_new_cap=cap)
    arrivals = traffic.poisson_arrivals(n, ARRIVAL_RATE, seed=7)
    pipeline = Pipeline(
        "llm-serving",
        (
            prompt_stage(loaded.tokenizer),
            generate_stage(loaded.model, loaded.tokenizer, use_cache=False, max_new_tokens=cap),
        ),
        output_kind="tokens",
    )
    workload = Workload(
        items=tuple(items),
        name="mixed-requests",
        warmup=0 if not quick else 1,
        repeats=1 if not quick else 2,
        mode="stream",
        trace=Trace(tuple(arrivals)),
        seed=7,
    )
    requirements = Requirements(optimize_for="throughput", max_accuracy_drop=0.0)
    description = (
        f"{loaded.name}: greedy generation without a KV cache, one request at a time, over "
        f"{n} requests (chat with a shared system prompt, edit / extract / summarize of "
        f"documents, open-ended writing; up to {cap} new tokens each)."
    )
    notes = {
        "model": loaded.name,
        "model_source": loaded.source,
        "stream": traffic.describe(items),
        "arrival_rate_rps": ARRIVAL_RATE,
    }
    if loaded.notice:
        notes["notice"] = loaded.notice
        description += " NOTE: " + loaded.notice
    return DemoSetup(pipeline, workload, requirements, description, notes)
