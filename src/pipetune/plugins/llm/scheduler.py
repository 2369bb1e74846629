"""Serving a request stream: static batching and continuous (iteration-level) batching.

Both schedulers share the same code for everything but *when* requests join and leave:
a request's prompt runs alone (a batch-1 prefill that reuses a cached prefix when there is
one), its KV is merged into the running batch's left-padded cache, and the batch decodes
one token per row per step with per-row attention masks and positions.

* **static**: a batch is formed from the requests waiting when the previous batch ended
  (up to ``max_batch``) and runs until its *longest* member finishes; newcomers wait.
  Finished rows are decoded as padding, as ``generate`` on a padded batch does; with
  ``static_evict=True`` they are dropped instead (a competent static batcher).
* **continuous**: at every step, finished rows leave and waiting requests join, up to
  ``max_batch`` rows.

Requests arrive at their own times (a stream), or all at once (offline). Each request's
arrival, first token and completion are recorded, so time to first token, inter-token
latency and end-to-end latency are measured as the users of a server would see them.
A refused request (empty prompt, prompt over the context window) is recorded with its
message at once and never disturbs the batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipetune.plugins.llm import kv_cache
from pipetune.plugins.llm.records import Generation, GenerationRequest


@dataclass(frozen=True)
class StreamRecord:
    """One request's outcome in a stream, with times in seconds from the stream start."""

    index: int
    generation: Generation
    arrival_s: float
    first_token_s: float | None
    finished_s: float

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def latency_s(self) -> float:
        return self.finished_s - self.arrival_s

    @property
    def itl_s(self) -> float | None:
        n = len(self.generation.tokens)
        if self.first_token_s is None or n < 2:
            return None
        return (self.finished_s - self.first_token_s) / (n - 1)


@dataclass(frozen=True)
class StreamSummary:
    """What a stream run measured, ready for a report."""

    requests: int
    completed: int
    errors: int
    wall_s: float
    output_tokens: int
    tokens_per_s: float
    requests_per_s: float
    latency_ms: dict[str, float]
    ttft_ms: dict[str, float]
    itl_ms: dict[str, float]
    policy: str
    max_batch: int
    mean_batch: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    arr = np.asarray(values) * 1000.0
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
    }


def summarize(
    records: Sequence[StreamRecord], wall_s: float, policy: str, max_batch: int, mean_batch: float
) -> StreamSummary:
    ok = [r for r in records if r.generation.ok]
    tokens = sum(len(r.generation.tokens) for r in ok)
    return StreamSummary(
        requests=len(records),
        completed=len(ok),
        errors=len(records) - len(ok),
        wall_s=wall_s,
        output_tokens=tokens,
        tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
        requests_per_s=len(ok) / wall_s if wall_s > 0 else 0.0,
        latency_ms=_pct([r.latency_s for r in ok]),
        ttft_ms=_pct([r.ttft_s for r in ok if r.ttft_s is not None]),
        itl_ms=_pct([r.itl_s for r in ok if r.itl_s is not None]),
        policy=policy,
        max_batch=max_batch,
        mean_batch=mean_batch,
    )


class RunningBatch:
    """The rows decoding together: their left-padded KV cache and attention mask."""

    def __init__(self, engine: Any):
        self.engine = engine
        self.seqs: list[Any] = []
        self.cache: Any = None
        self.mask: Any = None  # [rows, columns], 1 where a column holds a real token

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def live(self) -> int:
        return sum(1 for s in self.seqs if not s.done)

    def add(self, seq: Any, cache: Any) -> None:
        """Merge a prefilled request (batch-1 cache over its prompt) into the batch."""
        import torch

        length = kv_cache.seq_length(cache)
        ones = torch.ones((1, length), dtype=torch.long, device=self.engine.device)
        if not self.seqs:
            self.seqs, self.cache, self.mask = [seq], cache, ones
            return
        columns = self.mask.shape[1]
        if length <= columns:
            kv_cache.pad_left(cache, columns - length)
            row = torch.cat([ones.new_zeros((1, columns - length)), ones], dim=1)
        else:
            kv_cache.pad_left(self.cache, length - columns)
            self.mask = torch.cat(
                [self.mask.new_zeros((len(self.seqs), length - columns)), self.mask], dim=1
            )
            row = ones
        kv_cache.append_rows(self.cache, cache)
        self.mask = torch.cat([self.mask, row], dim=0)
        self.seqs.append(seq)

    def step(self, now: Any) -> None:
        """One decode step for every row; finished rows (static batching) decode padding."""
        import torch

        engine = self.engine
        pad = next(iter(engine.eos), 0)
        ids = [[s.tokens[-1] if not s.done else pad] for s in self.seqs]
        positions = [[s.length - 1 if not s.done else 0] for s in self.seqs]
        mask = torch.cat([self.mask, self.mask.new_ones((len(self.seqs), 1))], dim=1)
        logits = engine.forward(
            engine._tensor(ids),
            cache=self.cache,
            attention_mask=mask,
            position_ids=engine._tensor(positions),
        )
        self.mask = mask
        chosen = logits[:, -1].argmax(-1).tolist()
        stamp = now()
        for seq, token in zip(self.seqs, chosen, strict=True):
            if not seq.done:
                seq.push(token, stamp)

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows``; drop the columns that were padding for all of them."""
        if len(rows) == len(self.seqs):
            return
        if not rows:
            self.seqs, self.cache, self.mask = [], None, None
            return
        kv_cache.select_rows(self.cache, rows)
        self.mask = self.mask[rows]
        self.seqs = [self.seqs[i] for i in rows]
        used = self.mask.any(dim=0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first:
            kv_cache.drop_left(self.cache, first)
            self.mask = self.mask[:, first:]


def run_requests(
    engine: Any,
    requests: Sequence[GenerationRequest],
    arrivals_s: Sequence[float] | None = None,
    *,
    policy: str | None = None,
    max_batch: int | None = None,
    evict: bool | None = None,
    stats: dict[str, Any] | None = None,
) -> list[StreamRecord]:
    """Serve ``requests`` arriving at ``arrivals_s`` (seconds from now; all at 0 when
    omitted) under ``policy`` (default: the engine's ``batching``). Returns one record per
    request, in input order. ``stats`` (if given) receives the mean batch size."""
    import torch

    config = engine.config
    policy = policy or config.batching
    if policy == "none":
        return run_sequential(engine, requests, arrivals_s)
    max_batch = max_batch or config.max_batch
    evict = config.static_evict if evict is None else evict
    if config.engine == "transformers" and policy == "continuous":
        return run_requests_transformers(engine, requests, arrivals_s, stats=stats)
    n = len(requests)
    arrivals = [0.0] * n if arrivals_s is None else [float(a) for a in arrivals_s]
    if len(arrivals) != n:
        raise ValueError(f"{len(arrivals)} arrival times for {n} requests")
    order = sorted(range(n), key=lambda i: arrivals[i])
    waiting: deque[int] = deque()
    future = deque(order)
    records: list[StreamRecord | None] = [None] * n
    batch = RunningBatch(engine)
    start = time.perf_counter()
    steps = rows_total = 0

    def now() -> float:
        return time.perf_counter() - start

    def finish(seq: Any) -> None:
        generation = seq.result(engine.decode_text)
        records[seq.index] = StreamRecord(
            seq.index, generation, seq.arrival, seq.first_token, seq.finished or now()
        )

    def admit(index: int) -> None:
        prepared = engine.prepare(requests[index], index)
        t = now()
        if isinstance(prepared, Generation):
            records[index] = StreamRecord(index, prepared, arrivals[index], None, t)
            return
        seq = prepared
        seq.arrival, seq.started = arrivals[index], t
        if seq.max_new == 0:
            seq.finish_reason, seq.finished = "length", t
            finish(seq)
            return
        cache = engine.prefill(seq)
        seq.first_token = now()
        if seq.done:  # EOS first, or one token wanted: never joins the batch
            seq.finished = seq.first_token
            finish(seq)
            return
        batch.add(seq, cache)

    with torch.inference_mode():
        while future or waiting or batch.live:
            t = now()
            while future and arrivals[future[0]] <= t:
                waiting.append(future.popleft())
            if policy == "continuous" or not batch.live:
                if policy == "static" and not batch.live and batch.seqs:
                    batch.keep([])
                while waiting and len(batch) < max_batch:
                    admit(waiting.popleft())
            if not batch.live:
                if future and not waiting:
                    time.sleep(max(0.0, arrivals[future[0]] - now()))
                continue
            batch.step(now)
            steps += 1
            rows_total += len(batch)
            finished = [i for i, s in enumerate(batch.seqs) if s.done]
            for i in finished:
                if records[batch.seqs[i].index] is None:
                    finish(batch.seqs[i])
            if finished and (policy == "continuous" or evict or not batch.live):
                batch.keep([i for i, s in enumerate(batch.seqs) if not s.done])
    if stats is not None:
        stats["mean_batch"] = rows_total / steps if steps else 0.0
        stats["steps"] = steps
    return [r for r in records if r is not None]


def run_sequential(
    engine: Any, requests: Sequence[GenerationRequest], arrivals_s: Sequence[float] | None = None
) -> list[StreamRecord]:
    """One request at a time, in arrival order (no batching): each runs through
    :meth:`Engine.generate`, so the KV cache, prefix cache, speculative decoding and CUDA
    graph settings all apply."""
    n = len(requests)
    arrivals = [0.0] * n if arrivals_s is None else [float(a) for a in arrivals_s]
    if len(arrivals) != n:
        raise ValueError(f"{len(arrivals)} arrival times for {n} requests")
    records: list[StreamRecord | None] = [None] * n
    start = time.perf_counter()
    for index in sorted(range(n), key=lambda i: arrivals[i]):
        delay = arrivals[index] - (time.perf_counter() - start)
        if delay > 0:
            time.sleep(delay)
        began = time.perf_counter() - start
        generation = engine.generate(requests[index], index)
        finished = time.perf_counter() - start
        ttft = generation.stats.get("ttft_s")
        first = None if ttft is None else began + ttft
        records[index] = StreamRecord(index, generation, arrivals[index], first, finished)
    return [r for r in records if r is not None]


def run_requests_transformers(
    engine: Any,
    requests: Sequence[GenerationRequest],
    arrivals_s: Sequence[float] | None = None,
    *,
    stats: dict[str, Any] | None = None,
) -> list[StreamRecord]:
    """The same stream through transformers' own continuous batching
    (``ContinuousBatchingManager``: paged KV cache, requests added as they arrive).

    Requests the plugin refuses (see :meth:`Engine.prepare`) never reach the manager.
    Only used with SDPA attention: the manager would otherwise switch the model's
    attention implementation while it runs, and the user's model is never changed.
    """
    import torch
    from transformers import GenerationConfig

    model = engine.model
    attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if attn != "sdpa":
        raise RuntimeError(
            f"transformers' continuous batching would switch this model's attention "
            f"({attn!r}) while it runs; the plugin's own scheduler is used instead"
        )
    n = len(requests)
    arrivals = [0.0] * n if arrivals_s is None else [float(a) for a in arrivals_s]
    records: list[StreamRecord | None] = [None] * n
    prepared: dict[str, Any] = {}
    eos = sorted(engine.eos)
    generation_config = GenerationConfig(
        do_sample=False,
        max_new_tokens=engine.config.max_new_tokens,
        eos_token_id=eos[0] if len(eos) == 1 else eos,
        pad_token_id=eos[0] if eos else 0,
    )
    manager = model.init_continuous_batching(generation_config=generation_config)
    start = time.perf_counter()
    manager.start()
    try:
        order = sorted(range(n), key=lambda i: arrivals[i])
        pending = 0
        for index in order:
            delay = arrivals[index] - (time.perf_counter() - start)
            if delay > 0:
                time.sleep(delay)
            seq = engine.prepare(requests[index], index)
            t = time.perf_counter() - start
            if isinstance(seq, Generation):
                records[index] = StreamRecord(index, seq, arrivals[index], None, t)
                continue
            if seq.max_new == 0:
                seq.finish_reason = "length"
                records[index] = StreamRecord(index, seq.result(), arrivals[index], None, t)
                continue
            seq.arrival = arrivals[index]
            key = f"pt_{index}"
            prepared[key] = seq
            manager.add_request(
                seq.prompt, request_id=key, max_new_tokens=seq.max_new, record_timestamps=True
            )
            pending += 1
        while pending:
            result = manager.get_result(timeout=1.0)
            if result is None:
                if not manager.is_running():
                    raise RuntimeError("transformers' continuous batching thread stopped")
                continue
            if not result.is_finished():
                continue
            pending -= 1
            seq = prepared.pop(result.request_id)
            finished = time.perf_counter() - start
            stamps = [s - start for s in (result.timestamps or [])]
            for token in result.generated_tokens:
                seq.push(int(token), finished)
            if seq.finish_reason is None:
                seq.finish_reason = seq.limit_reason
            generation = seq.result(engine.decode_text)
            if result.error:
                generation = replace(generation, error=str(result.error), finish_reason="error")
            first = stamps[0] if stamps else finished
            records[seq.index] = StreamRecord(seq.index, generation, seq.arrival, first, finished)
    finally:
        with torch.inference_mode():
            manager.stop(block=True, timeout=30)
            manager.destroy()
    if stats is not None:
        stats["mean_batch"] = float("nan")
    return [r for r in records if r is not None]


def serve_stream(
    engine: Any,
    requests: Sequence[GenerationRequest],
    arrivals_s: Sequence[float] | None = None,
    **options: Any,
) -> tuple[list[StreamRecord], StreamSummary]:
    """Run a stream and summarize it (tokens/s, latency, TTFT, inter-token latency)."""
    stats: dict[str, Any] = {}
    start = time.perf_counter()
    records = run_requests(engine, requests, arrivals_s, stats=stats, **options)
    wall = time.perf_counter() - start
    policy = options.get("policy") or engine.config.batching
    if engine.config.engine == "transformers" and policy == "continuous":
        policy = "continuous[transformers]"
    return records, summarize(
        records,
        wall,
        policy,
        options.get("max_batch") or engine.config.max_batch,
        stats.get("mean_batch", 0.0),
    )
