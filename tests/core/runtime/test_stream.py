"""Stream mode: the serve() protocol, time to first output, per-output latency."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError, PipelineError, StageError
from pipetune.core.kernel.model import Pipeline, Stage, Trace
from pipetune.core.runtime.stream import (
    RequestFeed,
    StreamEvent,
    find_stream_stage,
    run_stream,
    stream_server,
)


class FakeGenerator:
    """Continuous batching in miniature: every step takes ``step_s`` for the whole batch and
    gives each active request one token; a request wants ``len(prompt)`` tokens."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, prompt: str, *, step_s: float) -> list[str]:
        return [c.upper() for c in prompt]

    def serve(self, feed: RequestFeed, *, step_s: float) -> Iterator[StreamEvent]:
        active: dict[int, tuple[str, list[str]]] = {}
        while True:
            for request in feed.poll() if active else feed.wait():
                active[request.id] = (request.item, [])
            if not active:
                if feed.exhausted:
                    return
                continue
            time.sleep(step_s)
            self.batch_sizes.append(len(active))
            for rid in list(active):
                prompt, tokens = active[rid]
                tokens.append(prompt[len(tokens)].upper())
                if len(tokens) == len(prompt):
                    del active[rid]
                    yield StreamEvent(rid, outputs=1, done=True, result=tokens)
                else:
                    yield StreamEvent(rid, outputs=1)


def generation(server: Any = None, **slots: Any) -> Pipeline:
    return Pipeline(
        "gen",
        (
            Stage("prep", str.strip, kind="tokenize"),
            Stage(
                "generate",
                server or FakeGenerator(),
                kind="generate",
                slots=slots or {"step_s": 0.002},
            ),
            Stage("join", "".join, kind="postprocess"),
        ),
    )


def test_stream_stage_is_found_and_gets_its_slots() -> None:
    p = generation()
    assert find_stream_stage(p) is p.stage("generate")
    assert stream_server(p.stage("prep")) is None
    assert find_stream_stage(Pipeline("x", (Stage("s", str),))) is None


def test_requests_join_a_running_batch_and_results_match_fn() -> None:
    server = FakeGenerator()
    prompts = [" abcd", "xy ", "hello world"] * 4
    result = run_stream(
        generation(server), prompts, trace=Trace(tuple(0.003 * i for i in range(12)))
    )
    assert result.mode == "stream" and result.completed == 12
    assert result.outputs == ["".join(c.upper() for c in p.strip()) for p in prompts]
    assert max(server.batch_sizes) > 1  # requests overlapped in the server


def test_ttft_per_output_and_completion_are_ordered() -> None:
    result = run_stream(generation(), ["abcdef", "ghij", "kl"] * 3, rate=200, seed=2)
    stats = result.stream
    ok = result.ok_mask
    ttft = (result.first_output_s - result.arrival_s)[ok]
    assert (ttft > 0).all()
    assert (ttft <= result.latency_s[ok] + 1e-9).all()
    assert stats.completed == 9
    assert stats.outputs_per_request["max"] == 6
    assert stats.per_output_ms["p50"] > 0
    assert stats.ttft_ms["p50"] <= stats.completion_ms["p50"]
    assert stats.max_in_flight >= 1
    # Each row of stage_s is the service time; the rest of the latency was waiting.
    assert np.allclose(result.queue_s + result.stage_s.sum(axis=1), result.latency_s)


def test_server_without_output_events_counts_completion_as_first_output() -> None:
    class Quiet:
        def __call__(self, x: str) -> str:
            return x

        def serve(self, feed: RequestFeed) -> Iterator[StreamEvent]:
            while not feed.exhausted:
                for request in feed.wait():
                    yield StreamEvent(request.id, done=True, result=request.item)

    result = run_stream(Pipeline("q", (Stage("q", Quiet()),)), ["a", "b"], rate=100)
    assert result.outputs == ["a", "b"]
    # The done event is the first output; completion adds only the bookkeeping after it.
    assert (result.first_output_s <= result.done_s).all()
    assert result.stream.outputs_per_request["max"] == 0


def test_error_events_stop_or_skip() -> None:
    class Fussy:
        def __call__(self, x: str) -> str:
            return x

        def serve(self, feed: RequestFeed) -> Iterator[StreamEvent]:
            while not feed.exhausted:
                for request in feed.wait():
                    if request.item == "bad":
                        yield StreamEvent(request.id, error="cannot generate from 'bad'")
                    else:
                        yield StreamEvent(request.id, done=True, result=request.item)

    p = Pipeline("f", (Stage("gen", Fussy()),))
    with pytest.raises(StageError, match="'gen' raised RuntimeError on input #1"):
        run_stream(p, ["ok", "bad", "ok"], rate=200)
    result = run_stream(p, ["ok", "bad", "ok"], rate=200, on_error="skip")
    assert result.ok == [True, False, True]
    assert result.errors[0].error == "cannot generate from 'bad'"


def test_protocol_violations_are_pipeline_errors() -> None:
    class Liar:
        def __call__(self, x: str) -> str:
            return x

        def serve(self, feed: RequestFeed) -> Iterator[StreamEvent]:
            feed.wait()
            yield StreamEvent(99, done=True)

    with pytest.raises(PipelineError, match="never given"):
        run_stream(Pipeline("l", (Stage("gen", Liar()),)), ["a"], rate=100)

    class Quitter:
        def __call__(self, x: str) -> str:
            return x

        def serve(self, feed: RequestFeed) -> Iterator[StreamEvent]:
            feed.wait()
            return
            yield  # a generator that takes a request and never answers

    with pytest.raises(PipelineError, match="without finishing"):
        run_stream(Pipeline("q", (Stage("gen", Quitter()),)), ["a"], rate=100)


def test_server_exception_names_the_stage() -> None:
    class Crash:
        def __call__(self, x: str) -> str:
            return x

        def serve(self, feed: RequestFeed) -> Iterator[StreamEvent]:
            feed.wait()
            raise MemoryError("KV cache full")
            yield

    with pytest.raises(StageError, match="'gen' raised MemoryError"):
        run_stream(Pipeline("c", (Stage("gen", Crash()),)), ["a"], rate=100)


def test_no_stream_stage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="serve"):
        run_stream(Pipeline("x", (Stage("s", str),)), ["a"], rate=10)


def test_function_with_serve_attribute_is_stream_capable() -> None:
    def generate(x: str) -> str:
        return x

    def serve(feed: RequestFeed) -> Iterator[StreamEvent]:
        while not feed.exhausted:
            for request in feed.wait():
                yield StreamEvent(request.id, outputs=2, done=True, result=request.item * 2)

    generate.serve = serve  # type: ignore[attr-defined]
    result = run_stream(Pipeline("f", (Stage("g", generate),)), ["a", "b"], rate=100)
    assert result.outputs == ["aa", "bb"]
    assert result.stream.outputs_per_request["max"] == 2


def test_interrupt_inside_the_server_keeps_what_was_measured() -> None:
    class Interrupted:
        def __call__(self, x: str) -> str:
            return x

        def serve(self, feed: RequestFeed) -> Iterator[StreamEvent]:
            served = 0
            while not feed.exhausted:
                for request in feed.wait():
                    if served == 2:
                        raise KeyboardInterrupt
                    served += 1
                    yield StreamEvent(request.id, done=True, result=request.item)

    result = run_stream(Pipeline("i", (Stage("gen", Interrupted()),)), list("abcde"), rate=500)
    assert result.stopped is True
    assert result.ok[:2] == [True, True] and result.completed == 2
