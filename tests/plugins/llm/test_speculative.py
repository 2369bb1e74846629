"""Speculative decoding: lossless, with acceptance accounting, and a rejection path."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.plugins.llm.engine import Engine
from pipetune.plugins.llm.records import GenerateConfig, GenerationRequest
from pipetune.plugins.llm.speculative import PromptLookupProposer, truncated_draft


def test_prompt_lookup_proposes_what_followed_the_last_ngram():
    proposer = PromptLookupProposer(num_tokens=3, ngram_max=2)
    tokens = [1, 2, 3, 4, 5, 9, 9, 1, 2]
    assert proposer.propose(tokens, 3) == [3, 4, 5]
    assert proposer.propose(tokens, 2) == [3, 4]
    assert proposer.propose([1, 2, 3], 3) == []  # the tail n-gram occurs nowhere earlier
    assert proposer.propose(tokens, 0) == []


def test_prompt_lookup_prefers_the_longest_ngram():
    proposer = PromptLookupProposer(num_tokens=2, ngram_max=3)
    # the 3-gram "1 2 3" beats the more recent 2-gram "2 3"
    tokens = [1, 2, 3, 7, 7, 5, 2, 3, 8, 8, 1, 2, 3]
    assert proposer.propose(tokens, 2) == [7, 7]
    # no earlier "9 2 3": the latest "2 3" decides
    tokens = [1, 2, 3, 7, 7, 5, 2, 3, 8, 8, 0, 9, 2, 3]
    assert proposer.propose(tokens, 2) == [8, 8]


def _copying_requests(tokenizer):
    text = "the quick brown fox jumps over the lazy dog and runs away to the forest"
    return [
        GenerationRequest(
            tuple(tokenizer.encode(f"repeat: {text} | {text[:i]}")), max_new_tokens=20
        )
        for i in (5, 17, 30)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["prompt_lookup", "draft"])
def test_speculative_decoding_is_lossless_and_counts_acceptance(model, tokenizer, kind):
    requests = _copying_requests(tokenizer)
    base = Engine(model, GenerateConfig())
    spec = Engine(model, GenerateConfig(speculative=kind, num_draft_tokens=4, draft_layers=1))
    for request in requests:
        expected = base.generate(request)
        result = spec.generate(request)
        assert result.tokens == expected.tokens
        stats = result.stats
        if "drafted" in stats:
            assert 0 <= stats["accepted"] <= stats["drafted"]
            assert stats["verify_steps"] >= 1
            # every verify pass yields its accepted drafts plus one token of its own
            assert stats["accepted"] + stats["verify_steps"] <= len(result.tokens)


def test_draft_model_with_same_tokenizer(llama, gpt2, tokenizer):
    # a different model as the draft: acceptance is poor, tokens are still the target's
    requests = _copying_requests(tokenizer)
    base = Engine(llama, GenerateConfig())
    spec = Engine(llama, GenerateConfig(speculative="draft", num_draft_tokens=3), draft_model=gpt2)
    for request in requests:
        assert spec.generate(request).tokens == base.generate(request).tokens


def test_truncated_draft_shares_weights_and_leaves_target_unchanged(llama, torch):
    from tests.plugins.llm.conftest import state_digest

    before = state_digest(llama)
    draft = truncated_draft(llama, 1)
    assert len(draft.model.layers) == 1 and len(llama.model.layers) == 2
    assert draft.model.embed_tokens.weight is llama.model.embed_tokens.weight
    assert draft.config.num_hidden_layers == 1 and llama.config.num_hidden_layers == 2
    with torch.inference_mode():
        draft(torch.tensor([[5, 6, 7]]))
    assert state_digest(llama) == before
    with pytest.raises(ConfigError, match="draft_layers must be between 1 and 1"):
        truncated_draft(llama, 2)


def test_draft_without_model_or_layers_is_a_clear_error(llama, tokenizer):
    engine = Engine(llama, GenerateConfig(speculative="draft"))
    with pytest.raises(ConfigError, match="needs a draft model"):
        engine.generate(GenerationRequest((5, 6, 7), max_new_tokens=4))
