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

The runtime's serving loop (:mod:`pipetune.core.runtime.serving_loop`) does not fit here: a
scheduler is a stream stage's own ``serve`` generator, one thread deciding at every decode
step which requests join and leave a batch of model rows, which the runtime's stream mode
times from outside; what the schedulers share is here (waiting for arrivals, admitting a
request, the events of a step).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.stream import StreamEvent, StreamRequest
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
    #: Throughput until the last request produced its first token: under saturation, the
    #: time there was a backlog. It leaves out the drain at the end of a finite stream,
    #: when rows finish and no request is left to take their place (a server under
    #: sustained load never drains, so this is its capacity).
    backlog_s: float = 0.0
    backlog_tokens_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(
    records: Sequence[StreamRecord],
    wall_s: float,
    policy: str,
    max_batch: int,
    mean_batch: float,
    timeline: Sequence[tuple[float, int]] = (),
) -> StreamSummary:
    """Summarize a stream; ``timeline`` holds ``(seconds from the start, tokens)`` for every
    event that produced tokens (for the backlog throughput)."""
    ok = [r for r in records if r.generation.ok]
    tokens = sum(len(r.generation.tokens) for r in ok)
    starts = [r.first_token_s for r in ok if r.first_token_s is not None]
    backlog_s = max(starts) if starts else 0.0
    backlog_tokens = sum(n for t, n in timeline if t <= backlog_s)
    return StreamSummary(
        requests=len(records),
        completed=len(ok),
        errors=len(records) - len(ok),
        wall_s=wall_s,
        output_tokens=tokens,
        tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
        requests_per_s=len(ok) / wall_s if wall_s > 0 else 0.0,
        latency_ms=percentiles_ms([r.latency_s for r in ok]),
        ttft_ms=percentiles_ms([r.ttft_s for r in ok if r.ttft_s is not None]),
        itl_ms=percentiles_ms([r.itl_s for r in ok if r.itl_s is not None]),
        policy=policy,
        max_batch=max_batch,
        mean_batch=mean_batch,
        backlog_s=backlog_s,
        backlog_tokens_per_s=backlog_tokens / backlog_s if backlog_s > 0 else 0.0,
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


class ListFeed:
    """A request feed over a list with arrival offsets, on the real clock: the same
    interface as the runtime's :class:`pipetune.core.runtime.stream.RequestFeed` (``poll``,
    ``wait``, ``exhausted``, ``now``), so the plugin measures streams with the very code
    the runtime drives."""

    def __init__(self, items: Sequence[Any], arrivals_s: Sequence[float] | None = None):
        n = len(items)
        self.items = list(items)
        self.arrivals = [0.0] * n if arrivals_s is None else [float(a) for a in arrivals_s]
        if len(self.arrivals) != n:
            raise ValueError(f"{len(self.arrivals)} arrival times for {n} requests")
        self._order = sorted(range(n), key=lambda i: self.arrivals[i])
        self._next = 0
        self._start = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._start

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self._order)

    def poll(self) -> list[StreamRequest]:
        out = []
        t = self.now()
        while self._next < len(self._order) and self.arrivals[self._order[self._next]] <= t:
            index = self._order[self._next]
            out.append(StreamRequest(index, self.items[index], self.arrivals[index]))
            self._next += 1
        return out

    def wait(self, timeout: float | None = None) -> list[StreamRequest]:
        if self.exhausted:
            return []
        delay = self.arrivals[self._order[self._next]] - self.now()
        if timeout is not None:
            delay = min(delay, timeout)
        if delay > 0:
            time.sleep(delay)
        return self.poll()


def _prepare(engine: Any, request: StreamRequest) -> Any:
    """An :class:`Active` for a feed request, or the refusal (a :class:`Generation`)."""
    from pipetune.core.kernel.errors import PipetuneError
    from pipetune.plugins.llm.blocks import encode_request
    from pipetune.plugins.llm.engine import refuse

    try:
        encoded = encode_request(request.item, engine.tokenizer)
    except (PipetuneError, TypeError, ValueError) as exc:
        return refuse(GenerationRequest(()), str(exc), request.id)
    prepared = engine.prepare(encoded, request.id)
    if not isinstance(prepared, Generation):
        prepared.arrival = request.arrival_s
    return prepared


def _done(engine: Any, seq: Any) -> StreamEvent:
    return StreamEvent(seq.index, done=True, result=seq.result(engine.decode_text))


def serve_requests(
    engine: Any,
    feed: Any,
    *,
    policy: str | None = None,
    max_batch: int | None = None,
    evict: bool | None = None,
    stats: dict[str, Any] | None = None,
) -> Iterator[StreamEvent]:
    """Serve the requests of ``feed`` as they arrive, yielding a
    :class:`~pipetune.core.runtime.stream.StreamEvent` for every token (``outputs``) and one
    ``done`` event per request whose ``result`` is its :class:`Generation` (a refused
    request is done at once, its Generation carrying the message).

    ``policy`` (default: the engine's ``batching``): ``none`` (one request at a time,
    with the KV cache, prefix cache, speculation or CUDA graph the engine is configured
    for), ``static`` or ``continuous``.
    """
    config = engine.config
    policy = policy or config.batching
    if policy == "none":
        if stats is not None:
            stats["mean_batch"] = 1.0
        yield from _serve_sequential(engine, feed)
    elif config.engine == "transformers" and policy == "continuous":
        yield from _serve_transformers(engine, feed, stats)
    else:
        yield from _serve_batched(
            engine,
            feed,
            policy,
            max_batch or config.max_batch,
            config.static_evict if evict is None else evict,
            stats,
        )


def _serve_sequential(engine: Any, feed: Any) -> Iterator[StreamEvent]:
    waiting: deque[StreamRequest] = deque()
    while True:
        waiting.extend(feed.poll())
        if not waiting:
            if not _await_requests(feed, waiting):
                return
            continue
        request = waiting.popleft()
        seq = _prepare(engine, request)
        if isinstance(seq, Generation):
            yield StreamEvent(request.id, done=True, result=seq)
            continue
        seq.started = time.perf_counter()
        for produced in engine.steps(seq):
            yield StreamEvent(seq.index, outputs=produced)
            waiting.extend(feed.poll())
        yield _done(engine, seq)


def _await_requests(feed: Any, waiting: deque[StreamRequest], timeout: float | None = None) -> bool:
    """Block until requests arrive (at most ``timeout``) and queue them in ``waiting``;
    False, without waiting, once the feed is exhausted."""
    if feed.exhausted:
        return False
    waiting.extend(feed.wait() if timeout is None else feed.wait(timeout=timeout))
    return True


def _serve_batched(
    engine: Any,
    feed: Any,
    policy: str,
    max_batch: int,
    evict: bool,
    stats: dict[str, Any] | None,
) -> Iterator[StreamEvent]:
    waiting: deque[StreamRequest] = deque()
    batch = RunningBatch(engine)
    steps = rows_total = 0
    try:
        while True:
            waiting.extend(feed.poll())
            if policy == "continuous" or not batch.live:
                yield from _refill(engine, batch, waiting, max_batch)
            if not batch.live:
                if not waiting and not _await_requests(feed, waiting):
                    return
                continue
            live = [not s.done for s in batch.seqs]
            batch.step(time.perf_counter)
            steps += 1
            rows_total += len(batch)
            yield from _step_events(engine, batch.seqs, live)
            _drop_finished(batch, policy, evict)
    finally:
        if stats is not None:
            stats["mean_batch"] = rows_total / steps if steps else 0.0
            stats["steps"] = steps


def _refill(
    engine: Any, batch: RunningBatch, waiting: deque[StreamRequest], max_batch: int
) -> Iterator[StreamEvent]:
    """Clear a batch whose rows all finished, then admit waiting requests up to
    ``max_batch`` rows."""
    if not batch.live and batch.seqs:
        batch.keep([])
    while waiting and len(batch) < max_batch:
        yield from _admit(engine, batch, waiting.popleft())


def _admit(engine: Any, batch: RunningBatch, request: StreamRequest) -> Iterator[StreamEvent]:
    """Prefill ``request`` and merge it into the running batch, or finish it at once: a
    refused request, one that wants no token, or one whose first token ends it."""
    seq = _prepare(engine, request)
    if isinstance(seq, Generation):
        yield StreamEvent(request.id, done=True, result=seq)
        return
    seq.started = time.perf_counter()
    if seq.max_new == 0:
        seq.finish_reason, seq.finished = "length", seq.started
        yield _done(engine, seq)
        return
    cache = engine.prefill(seq)
    yield StreamEvent(seq.index, outputs=1)
    if seq.done:  # EOS first, or one token wanted: never joins the batch
        yield _done(engine, seq)
        return
    batch.add(seq, cache)


def _step_events(engine: Any, seqs: list[Any], live: list[bool]) -> Iterator[StreamEvent]:
    """After a decode step: a token for every row that was live before it, and the done
    event of each row that finished with it."""
    for seq, was_live in zip(seqs, live, strict=True):
        if was_live:
            yield StreamEvent(seq.index, outputs=1)
            if seq.done:
                yield _done(engine, seq)


def _drop_finished(batch: RunningBatch, policy: str, evict: bool) -> None:
    """Finished rows leave the batch: at once under continuous batching or eviction,
    otherwise (static batching) once every row of the batch is done."""
    if any(s.done for s in batch.seqs) and (policy == "continuous" or evict or not batch.live):
        batch.keep([i for i, s in enumerate(batch.seqs) if not s.done])


def run_requests(
    engine: Any,
    requests: Sequence[GenerationRequest],
    arrivals_s: Sequence[float] | None = None,
    *,
    policy: str | None = None,
    max_batch: int | None = None,
    evict: bool | None = None,
    stats: dict[str, Any] | None = None,
    timeline: list[tuple[float, int]] | None = None,
) -> list[StreamRecord]:
    """Serve ``requests`` arriving at ``arrivals_s`` (seconds from now; all at 0 when
    omitted) through :func:`serve_requests`. Returns one record per request, in input
    order, timed as its events were produced. ``stats`` receives the mean batch size,
    ``timeline`` a ``(seconds, tokens)`` entry for every event that produced tokens."""
    feed = ListFeed(requests, arrivals_s)
    first: dict[int, float] = {}
    records: list[StreamRecord | None] = [None] * len(requests)
    for event in serve_requests(
        engine, feed, policy=policy, max_batch=max_batch, evict=evict, stats=stats
    ):
        now = feed.now()
        if event.outputs and timeline is not None:
            timeline.append((now, event.outputs))
        if event.outputs and event.id not in first:
            first[event.id] = now
        if event.done:
            records[event.id] = StreamRecord(
                event.id, event.result, feed.arrivals[event.id], first.get(event.id), now
            )
    missing = [i for i, r in enumerate(records) if r is None]
    if missing:
        raise RuntimeError(f"the scheduler lost request(s) {missing[:5]}")
    return [r for r in records if r is not None]


def _serve_transformers(
    engine: Any, feed: Any, stats: dict[str, Any] | None
) -> Iterator[StreamEvent]:
    """The stream through transformers' own continuous batching
    (``ContinuousBatchingManager``: paged KV cache, requests added as they arrive).

    Requests the plugin refuses never reach the manager. Only used with SDPA attention:
    the manager would otherwise switch the model's attention implementation while it
    runs, and the user's model is never changed. Outputs are reported when a request
    finishes (the manager is not asked to stream tokens).
    """
    import torch

    manager = _start_manager(engine)
    pending: dict[str, Any] = {}
    arrived: deque[StreamRequest] = deque()
    try:
        while True:
            arrived.extend(feed.poll())
            yield from _hand_over(engine, manager, arrived, pending)
            if not pending:
                if not _await_requests(feed, arrived, timeout=0.05):
                    return
                continue
            finished = _next_finished(engine, manager, pending)
            if finished is not None:
                yield finished
    finally:
        with torch.inference_mode():
            manager.stop(block=True, timeout=30)
            manager.destroy()
        if stats is not None:
            stats["mean_batch"] = float("nan")


def _start_manager(engine: Any) -> Any:
    """transformers' continuous batching manager for the engine's model, started (greedy,
    the engine's token budget and end-of-sequence tokens); refused unless the model
    already uses SDPA attention."""
    from transformers import GenerationConfig

    model = engine.model
    attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if attn != "sdpa":
        raise RuntimeError(
            f"transformers' continuous batching would switch this model's attention "
            f"({attn!r}) while it runs; use engine='pipetune'"
        )
    eos = sorted(engine.eos)
    generation_config = GenerationConfig(
        do_sample=False,
        max_new_tokens=engine.config.max_new_tokens,
        eos_token_id=eos[0] if len(eos) == 1 else eos,
        pad_token_id=eos[0] if eos else 0,
    )
    manager = model.init_continuous_batching(generation_config=generation_config)
    manager.start()
    return manager


def _hand_over(
    engine: Any, manager: Any, arrived: deque[StreamRequest], pending: dict[str, Any]
) -> Iterator[StreamEvent]:
    """Add every arrived request to the manager (``pending`` by its key there), or finish
    it at once: a refused request, or one that wants no token."""
    while arrived:
        request = arrived.popleft()
        seq = _prepare(engine, request)
        if isinstance(seq, Generation):
            yield StreamEvent(request.id, done=True, result=seq)
            continue
        if seq.max_new == 0:
            seq.finish_reason = "length"
            yield _done(engine, seq)
            continue
        key = f"pt_{request.id}"
        pending[key] = seq
        manager.add_request(seq.prompt, request_id=key, max_new_tokens=seq.max_new)


def _next_finished(engine: Any, manager: Any, pending: dict[str, Any]) -> StreamEvent | None:
    """The done event (with all its tokens) of a request the manager finished, or ``None``
    when none finished within 10 ms; raises when the manager's thread stopped."""
    result = manager.get_result(timeout=0.01)
    if result is None:
        if not manager.is_running():
            raise RuntimeError("transformers' continuous batching thread stopped")
        return None
    if not result.is_finished():
        return None
    seq = pending.pop(result.request_id)
    for token in result.generated_tokens:
        seq.push(int(token))
    if seq.finish_reason is None:
        seq.finish_reason = seq.limit_reason
    generation = seq.result(engine.decode_text)
    if result.error:
        generation = replace(generation, error=str(result.error), finish_reason="error")
    return StreamEvent(seq.index, outputs=len(generation.tokens), done=True, result=generation)


def serve_stream(
    engine: Any,
    requests: Sequence[GenerationRequest],
    arrivals_s: Sequence[float] | None = None,
    **options: Any,
) -> tuple[list[StreamRecord], StreamSummary]:
    """Run a stream and summarize it (tokens/s, latency, TTFT, inter-token latency)."""
    stats: dict[str, Any] = {}
    timeline: list[tuple[float, int]] = []
    start = time.perf_counter()
    records = run_requests(engine, requests, arrivals_s, stats=stats, timeline=timeline, **options)
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
        timeline,
    )
