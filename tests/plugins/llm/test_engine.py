"""The decode engine: KV cache equivalence and per-request bad input."""

from __future__ import annotations

import pytest

from pipetune.plugins.llm.engine import Engine
from pipetune.plugins.llm.records import GenerateConfig, GenerationRequest


@pytest.mark.slow
def test_kv_cache_gives_identical_greedy_tokens(model, requests_):
    without = Engine(model, GenerateConfig(use_cache=False))
    with_cache = Engine(model, GenerateConfig(use_cache=True))
    for request in requests_:
        slow, fast = without.generate(request), with_cache.generate(request)
        assert slow.tokens == fast.tokens
        assert len(fast.tokens) == request.max_new_tokens or fast.finish_reason == "eos"


def test_results_match_transformers_generate(llama, requests_, torch):
    engine = Engine(llama, GenerateConfig())
    for request in requests_[:3]:
        ours = engine.generate(request)
        ids = torch.tensor([request.prompt_ids])
        out = llama.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=request.max_new_tokens,
            do_sample=False,
            eos_token_id=2,
            pad_token_id=0,
        )
        assert list(ours.tokens) == out[0, ids.shape[1] :].tolist()


def test_bad_requests_are_refused_one_by_one_with_a_message(llama):
    engine = Engine(llama, GenerateConfig(max_new_tokens=4))
    too_long = GenerationRequest(tuple([5] * 300), id="long")
    empty = GenerationRequest((), id="empty")
    zero = GenerationRequest((5, 6, 7), max_new_tokens=0)
    outside = GenerationRequest((5, 9999))
    negative = GenerationRequest((5, 6), max_new_tokens=-3)
    results = engine.generate_many([too_long, empty, zero, outside, negative])
    assert results[0].error and "context window is 256" in results[0].error
    assert "long" in results[0].error and "shorten it by at least 45" in results[0].error
    assert results[1].error and "empty prompt" in results[1].error
    assert results[2].ok and results[2].tokens == () and results[2].finish_reason == "length"
    assert "max_new_tokens=0" in results[2].stats["note"]
    assert results[3].error and "outside the model's vocabulary" in results[3].error
    assert results[4].error and "max_new_tokens must be an integer" in results[4].error


def test_budget_is_capped_by_the_context_window(llama):
    engine = Engine(llama, GenerateConfig(eos_token_ids=(-1,)))  # never stops early
    result = engine.generate(GenerationRequest(tuple([5] * 250), max_new_tokens=20))
    assert len(result.tokens) == 6
    assert result.finish_reason == "context"


def test_immediate_eos_ends_the_request(llama):
    # make whatever the model emits first the end-of-sequence token
    request = GenerationRequest((5, 6, 7, 8), max_new_tokens=10)
    first = Engine(llama, GenerateConfig(max_new_tokens=1)).generate(request).tokens[0]
    result = Engine(llama, GenerateConfig(eos_token_ids=(first,))).generate(request)
    assert result.tokens == (first,)
    assert result.finish_reason == "eos"
