"""Static cache + CUDA graphs: the GPU path skips cleanly here; the static-cache decode
itself is checked on the CPU."""

from __future__ import annotations

import pytest

from pipetune.plugins.llm.cuda_graphs import StaticDecoder, cuda_graph_available
from pipetune.plugins.llm.engine import Engine
from pipetune.plugins.llm.records import GenerateConfig


def test_cuda_graph_unavailable_without_cuda_falls_back_to_the_same_tokens(llama, requests_, torch):
    if torch.cuda.is_available():
        pytest.skip("this test checks the CPU fallback")
    assert not cuda_graph_available(llama)
    plain = Engine(llama, GenerateConfig())
    graphed = Engine(llama, GenerateConfig(cuda_graph=True))
    for request in requests_[:3]:
        assert graphed.generate(request).tokens == plain.generate(request).tokens
    assert graphed._graph_runner is None  # nothing was captured


def test_static_cache_decode_matches_dynamic_cache(llama, requests_):
    engine = Engine(llama, GenerateConfig())
    decoder = StaticDecoder(engine, max_len=128)
    for request in requests_[:4]:
        seq = engine.prepare(request)
        decoder.run(seq)
        assert tuple(seq.tokens) == engine.generate(request).tokens
    assert decoder.fallbacks == 0


def test_requests_too_long_for_the_static_cache_fall_back(llama, requests_):
    engine = Engine(llama, GenerateConfig())
    decoder = StaticDecoder(engine, max_len=16)
    seq = engine.prepare(requests_[0])
    decoder.run(seq)
    assert decoder.fallbacks == 1
    assert tuple(seq.tokens) == engine.generate(requests_[0]).tokens


@pytest.mark.gpu
def test_cuda_graph_decode_matches_eager_on_gpu(torch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from pipetune.plugins.llm.model_loading import ByteTokenizer, config_model
    from pipetune.plugins.llm.records import GenerationRequest

    model = config_model("llama", layers=2, hidden=64, heads=4, context=256).to("cuda")
    tokenizer = ByteTokenizer()
    request = GenerationRequest(tuple(tokenizer.encode("hello graphs")), max_new_tokens=16)
    eager = Engine(model, GenerateConfig()).generate(request)
    graphed_engine = Engine(model, GenerateConfig(cuda_graph=True, static_cache_len=128))
    assert graphed_engine.generate(request).tokens == eager.tokens
    assert (
        graphed_engine._graph_runner is not None and graphed_engine._graph_runner.graph is not None
    )
