"""Static cache + CUDA graphs: the GPU path skips cleanly here; the static-cache decode
itself is checked on the CPU."""

from __future__ import annotations

import pytest

from pipetune.plugins.llm.cuda_graphs import StaticDecoder, cuda_graph_available
from pipetune.plugins.llm.engine import Engine
from pipetune.plugins.llm.records import GenerateConfig


@pytest.fixture
def broken_compile(torch, monkeypatch):
    """``torch.compile`` whose compiled step raises when it runs, as inductor does on a
    model it cannot lower."""

    def compile(fn, **_):
        def run(*args, **kwargs):
            raise RuntimeError("inductor cannot lower aten.rotary on this platform")

        return run

    monkeypatch.setattr(torch, "compile", compile)


def test_cuda_graph_unavailable_without_cuda_falls_back_to_the_same_tokens(llama, requests_, torch):
    if torch.cuda.is_available():
        pytest.skip("this test checks the CPU fallback")
    assert not cuda_graph_available(llama)
    plain = Engine(llama, GenerateConfig())
    graphed = Engine(llama, GenerateConfig(cuda_graph=True))
    for request in requests_[:3]:
        assert graphed.generate(request).tokens == plain.generate(request).tokens
    assert graphed._static_runner is None  # nothing was captured


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


@pytest.mark.slow
def test_a_compiled_static_decode_step_gives_the_same_tokens(llama, requests_):
    pytest.importorskip("torch._inductor", reason="torch without inductor cannot compile")
    plain = Engine(llama, GenerateConfig())
    compiled = Engine(llama, GenerateConfig(compile_step=True, static_cache_len=128))
    for request in requests_[:3]:
        assert compiled.generate(request).tokens == plain.generate(request).tokens
    runner = compiled._static_runner
    assert runner is not None
    if runner.compile_error and "compiler" in runner.compile_error.lower():
        pytest.skip(f"inductor needs a C++ compiler here: {runner.compile_error[:200]}")
    assert runner.compile_error is None
    assert runner._compiled is not None  # the compiled step served the decode


def test_a_step_that_fails_to_compile_falls_back_to_eager_and_says_why(
    llama, requests_, broken_compile
):
    plain = Engine(llama, GenerateConfig())
    compiled = Engine(llama, GenerateConfig(compile_step=True, static_cache_len=128))
    for request in requests_[:2]:
        assert compiled.generate(request).tokens == plain.generate(request).tokens
    error = compiled._static_runner.compile_error
    assert error is not None and "inductor cannot lower" in error


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
    graph_runner = graphed_engine._static_runner
    assert graph_runner is not None and graph_runner.graph is not None
    compiled_engine = Engine(
        model, GenerateConfig(cuda_graph=True, compile_step=True, static_cache_len=128)
    )
    assert compiled_engine.generate(request).tokens == eager.tokens
    runner = compiled_engine._static_runner
    assert runner.graph is not None
    assert runner.compile_error is None, runner.compile_error


def _tune_graphs(llama, requests_):
    """The CUDA-graph tune step's selection, run on the CPU: here the "captured" variant
    decodes with the dynamic cache (no CUDA) and the compiled one with the compiled
    static step, so both variants really run and are measured."""
    from pipetune.plugins.llm.changes.cuda_graphs import _tune_cuda_graphs

    config = GenerateConfig(static_cache_len=128)
    return _tune_cuda_graphs(
        Engine(llama, config),
        config,
        list(requests_[:4]),
        lambda cfg: Engine(llama, cfg),
        floor=1.0,
        min_speedup=0.0,
    )


@pytest.mark.slow
def test_the_graph_tune_step_measures_both_captures_and_keeps_the_faster(llama, requests_):
    pytest.importorskip("torch._inductor", reason="torch without inductor cannot compile")
    tuned = _tune_graphs(llama, requests_)
    variants = tuned.notes["variants"]
    compiled = variants["compiled, then captured"]
    if "compiler" in compiled.get("left_out", "").lower():
        pytest.skip(f"inductor needs a C++ compiler here: {compiled['left_out'][:200]}")
    assert set(variants) == {"captured", "compiled, then captured"}
    speedups = {name: v["speedup"] for name, v in variants.items()}
    faster = max(speedups, key=speedups.__getitem__)
    assert tuned.params["compile_step"] == (faster == "compiled, then captured")
    assert tuned.params["cuda_graph"] is True
    assert tuned.est_stage_speedup == speedups[faster]
    assert all(v["fidelity"]["value"] == 1.0 for v in variants.values())


def test_a_compiled_capture_that_falls_back_is_left_out_with_the_reason(
    llama, requests_, broken_compile
):
    tuned = _tune_graphs(llama, requests_)
    left_out = tuned.notes["variants"]["compiled, then captured"]["left_out"]
    assert "fell back to the eager step" in left_out and "cannot lower" in left_out
    assert tuned.params["compile_step"] is False
    assert tuned.notes["variants"]["captured"]["speedup"] == tuned.est_stage_speedup
