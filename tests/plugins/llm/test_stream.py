"""The generate block through the runtime's stream mode (pipetune.core.runtime.stream)."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.model import Pipeline, Trace, Workload
from pipetune.core.runtime.stream import find_stream_stage, run_stream
from pipetune.plugins.llm.blocks import generate_stage, prompt_stage
from pipetune.plugins.llm.records import GenerateConfig

ITEMS = [
    {"prompt": "hello there", "max_new_tokens": 6},
    {"prompt": "", "max_new_tokens": 4},  # empty user turn: the template still has tokens
    {"prompt_ids": [], "max_new_tokens": 4},  # really empty: refused
    {"prompt": "a longer question about the weather in the mountains", "max_new_tokens": 12},
    {"prompt": "zero please", "max_new_tokens": 0},
    {"prompt": "last one", "max_new_tokens": 3},
]


@pytest.mark.parametrize("batching", ["none", "static", "continuous"])
def test_stream_mode_serves_every_request_like_one_at_a_time(llama, tokenizer, batching):
    config = GenerateConfig(batching=batching, max_batch=3, max_new_tokens=8)
    pipeline = Pipeline(
        "chat",
        [prompt_stage(tokenizer), generate_stage(llama, tokenizer, config=config)],
        output_kind="tokens",
    )
    assert find_stream_stage(pipeline) is pipeline.stage("generate")
    result = run_stream(pipeline, ITEMS, trace=Trace((0.0, 0.0, 0.01, 0.01, 0.02, 0.02)), observe=8)
    assert result.ok == [True] * len(ITEMS)
    expected = [pipeline.run(item) for item in ITEMS]
    assert result.outputs == expected
    assert "empty prompt" in result.outputs[2].error
    assert result.outputs[4].tokens == ()
    stats = result.stream
    assert stats.completed == len(ITEMS)
    # every generated token was reported as an output
    assert sum(len(g.tokens) for g in result.outputs) == stats.outputs_per_request["mean"] * len(
        ITEMS
    )
    assert stats.ttft_ms["p50"] >= 0
    # the runtime kept what each stage saw, for the plugins' profile facts
    assert len(result.observed.outputs_of("generate")) == len(ITEMS)
    assert len(result.observed.inputs_of("prompt")) == len(ITEMS)


@pytest.mark.slow
def test_profile_in_stream_mode_has_the_llm_facts(llama, tokenizer):
    from pipetune import get_plugin_manager
    from pipetune.core.measure.profiler import profile

    pipeline = Pipeline(
        "chat",
        [prompt_stage(tokenizer), generate_stage(llama, tokenizer, max_new_tokens=6)],
        output_kind="tokens",
    )
    items = [{"prompt": f"question number {i}"} for i in range(6)]
    workload = Workload(
        items=tuple(items),
        mode="stream",
        trace=Trace(tuple(0.01 * i for i in range(6))),
        warmup=0,
        repeats=1,
    )
    prof = profile(pipeline, workload, pm=get_plugin_manager(entry_points=False))
    assert prof.mode == "stream"
    facts = prof.facts["llm"]["stages"]["generate"]
    assert facts["traffic"]["output_tokens"]["n"] == 6
    assert facts["kv_cache"] is True
