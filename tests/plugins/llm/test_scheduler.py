"""Static and continuous batching: same tokens as one request at a time; join and leave."""

from __future__ import annotations

import pytest

from pipetune.plugins.llm import kv_cache
from pipetune.plugins.llm.engine import Engine
from pipetune.plugins.llm.records import GenerateConfig, Generation, GenerationRequest
from pipetune.plugins.llm.scheduler import (
    RunningBatch,
    StreamRecord,
    run_requests,
    serve_stream,
    summarize,
)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["static", "continuous"])
def test_batched_outputs_equal_one_at_a_time(model, requests_, policy):
    reference = [Engine(model, GenerateConfig()).generate(r) for r in requests_]
    engine = Engine(model, GenerateConfig(batching=policy, max_batch=3))
    records = run_requests(engine, requests_)
    assert [r.index for r in records] == list(range(len(requests_)))
    for ref, record in zip(reference, records, strict=True):
        assert record.generation.tokens == ref.tokens
        assert record.generation.finish_reason == ref.finish_reason


def test_static_evicting_finished_rows_gives_the_same_tokens(llama, requests_):
    reference = [Engine(llama, GenerateConfig()).generate(r) for r in requests_]
    engine = Engine(llama, GenerateConfig(batching="static", max_batch=4, static_evict=True))
    assert [r.generation.tokens for r in run_requests(engine, requests_)] == [
        g.tokens for g in reference
    ]


def test_requests_join_and_leave_the_running_batch(llama, tokenizer, torch):
    # one long request, then short ones that arrive while it runs: under continuous
    # batching they join the running batch and finish long before it does
    engine = Engine(llama, GenerateConfig(batching="continuous", max_batch=4, eos_token_ids=(-1,)))
    long = GenerationRequest(tuple(tokenizer.encode("long story please")), max_new_tokens=60)
    short = [
        GenerationRequest(tuple(tokenizer.encode(f"short {i}")), max_new_tokens=3) for i in range(3)
    ]
    stats: dict = {}
    records = run_requests(engine, [long, *short], [0.0, 0.01, 0.01, 0.01], stats=stats)
    assert stats["mean_batch"] > 1.0  # they really decoded together
    assert all(r.finished_s < records[0].finished_s for r in records[1:])
    reference = [
        Engine(llama, GenerateConfig(eos_token_ids=(-1,))).generate(r) for r in [long, *short]
    ]
    assert [r.generation.tokens for r in records] == [g.tokens for g in reference]


def test_static_batching_makes_newcomers_wait(llama, tokenizer):
    engine = Engine(llama, GenerateConfig(batching="static", max_batch=4, eos_token_ids=(-1,)))
    long = GenerationRequest(tuple(tokenizer.encode("long")), max_new_tokens=40)
    late = GenerationRequest(tuple(tokenizer.encode("late")), max_new_tokens=2)
    records = run_requests(engine, [long, late], [0.0, 0.005])
    # the late request could not join the running batch: it finishes after the long one
    assert records[1].finished_s >= records[0].finished_s


def test_one_bad_request_does_not_take_down_the_batch(llama, requests_):
    bad = [
        GenerationRequest((), id="empty"),
        GenerationRequest(tuple([5] * 400), id="too-long"),
        GenerationRequest((5, 6), max_new_tokens=0, id="zero"),
    ]
    mixed = [requests_[0], bad[0], requests_[1], bad[1], bad[2], requests_[2]]
    for policy in ("static", "continuous"):
        engine = Engine(llama, GenerateConfig(batching=policy, max_batch=4))
        records, summary = serve_stream(engine, mixed)
        generations = [r.generation for r in records]
        assert "empty prompt" in generations[1].error
        assert "context window" in generations[3].error
        assert generations[4].ok and generations[4].tokens == ()
        reference = Engine(llama, GenerateConfig())
        for i in (0, 2, 5):
            assert generations[i].tokens == reference.generate(mixed[i]).tokens
        assert summary.errors == 2 and summary.completed == 4


def test_stream_summary_reports_latency_and_ttft(llama, requests_):
    engine = Engine(llama, GenerateConfig(batching="continuous", max_batch=4))
    records, summary = serve_stream(engine, requests_, [0.002 * i for i in range(len(requests_))])
    assert summary.requests == len(requests_)
    assert summary.output_tokens == sum(len(r.generation.tokens) for r in records)
    assert summary.tokens_per_s > 0
    assert summary.latency_ms["p50"] <= summary.latency_ms["p99"] <= summary.latency_ms["max"]
    assert all(r.ttft_s is not None and r.ttft_s >= 0 for r in records)
    assert all(r.latency_s >= r.ttft_s for r in records)
    assert summary.backlog_s == max(r.first_token_s for r in records)
    assert 0 < summary.backlog_s <= summary.wall_s and summary.backlog_tokens_per_s > 0


def test_backlog_throughput_leaves_out_the_drain():
    """Two requests: the second starts at 1 s; tokens after that (the drain) do not count."""

    def record(index, first, finished, n):
        return StreamRecord(index, Generation(tuple(range(n)), "length"), 0.0, first, finished)

    records = [record(0, 0.5, 3.0, 4), record(1, 1.0, 4.0, 2)]
    timeline = [(0.5, 1), (0.8, 1), (1.0, 1), (1.0, 1), (2.0, 1), (4.0, 1)]
    summary = summarize(records, 4.0, "continuous", 2, 1.5, timeline)
    assert summary.backlog_s == 1.0 and summary.backlog_tokens_per_s == 4.0
    assert summary.tokens_per_s == 6 / 4.0


def test_running_batch_trims_left_padding_when_rows_leave(llama, tokenizer):
    engine = Engine(llama, GenerateConfig())
    batch = RunningBatch(engine)
    for text in ("a much longer prompt than the other", "short"):
        seq = engine.prepare(GenerationRequest(tuple(tokenizer.encode(text)), max_new_tokens=5))
        batch.add(seq, engine.prefill(seq))
    assert kv_cache.batch_size(batch.cache) == 2
    assert kv_cache.seq_length(batch.cache) == len("a much longer prompt than the other")
    batch.keep([1])
    assert kv_cache.seq_length(batch.cache) == len("short")
    assert batch.mask.all()
