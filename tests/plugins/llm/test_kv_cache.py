"""KV cache plumbing: layers that grow in place, and the helpers that reshape them."""

from __future__ import annotations

from pipetune.plugins.llm import kv_cache
from pipetune.plugins.llm.engine import Engine
from pipetune.plugins.llm.records import GenerateConfig, GenerationRequest


def _key_pointers(cache) -> list[int]:
    return [keys.data_ptr() for keys, _ in kv_cache.layer_tensors(cache)]


def test_decode_steps_write_into_the_same_buffers(llama, requests_, torch):
    engine = Engine(llama, GenerateConfig(eos_token_ids=()))
    seq = engine.prepare(GenerationRequest(requests_[0].prompt_ids, max_new_tokens=12))
    cache = engine.prefill(seq)
    layer = cache.layers[0]
    assert type(layer).__name__ == "GrowingLayer"
    before = _key_pointers(cache)
    length = kv_cache.seq_length(cache)
    steps = engine.decode_steps(seq, cache)
    for _ in range(5):
        next(steps)
    assert kv_cache.seq_length(cache) == length + 5
    assert _key_pointers(cache) == before  # no copy: the new columns went into spare room
    assert kv_cache.nbytes(cache) > sum(  # the spare columns are counted as held
        k.numel() * k.element_size() + v.numel() * v.element_size()
        for k, v in kv_cache.layer_tensors(cache)
    )


def test_growing_layers_give_the_tokens_of_transformers_own_cache(llama, requests_, torch):
    from transformers import DynamicCache

    engine = Engine(llama, GenerateConfig(eos_token_ids=(), max_new_tokens=80))
    for request in requests_[:3]:
        # 80 new tokens: past the first buffer's spare columns, so the layer reallocates
        grown = engine.generate(GenerationRequest(request.prompt_ids, max_new_tokens=80))
        ids = torch.tensor([list(request.prompt_ids)])
        cache, tokens = DynamicCache(), []
        with torch.inference_mode():
            logits = llama(ids, cache=cache, use_cache=True).logits
            for _ in range(80):
                tokens.append(int(logits[0, -1].argmax()))
                logits = llama(torch.tensor([[tokens[-1]]]), cache=cache, use_cache=True).logits
        assert list(grown.tokens) == tokens


def test_a_crop_keeps_writing_in_place_and_other_reshapes_reallocate(llama, torch):
    cache = kv_cache.new_cache(llama)
    with torch.inference_mode():
        llama(
            torch.tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]), cache=cache, use_cache=True
        )
        pointers = _key_pointers(cache)
        kv_cache.crop_right(cache, 2)  # speculative decoding drops rejected drafts
        llama(torch.tensor([[13], [14]]), cache=cache, use_cache=True)
        assert _key_pointers(cache) == pointers and kv_cache.seq_length(cache) == 5
        kept = [k[1:].clone() for k, _ in kv_cache.layer_tensors(cache)]
        kv_cache.select_rows(cache, [1])  # a row left the batch: a new tensor
        llama(torch.tensor([[15]]), cache=cache, use_cache=True)
        assert _key_pointers(cache) != pointers
        for (keys, _), before in zip(kv_cache.layer_tensors(cache), kept, strict=True):
            assert keys.shape[0] == 1 and keys.shape[-2] == 6
            assert torch.equal(keys[..., :5, :], before)  # copied over when reallocating
