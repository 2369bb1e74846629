"""Stream mode: generation, where requests join and leave a running batch.

A generate stage that can serve many requests at once (continuous batching) implements one
method, ``serve``, next to its per-request function. The runtime feeds it requests as they
arrive and times what it yields. The protocol, version 1 (kept deliberately small; it will
only gain optional parts):

**Declaring it.** A stage is *stream-capable* when its ``fn`` has a callable attribute
``serve`` (a method of a callable class, or an attribute set on a function)::

    class Generate:
        def __call__(self, prompt, *, model, tokenizer): ...            # one request
        def serve(self, feed, *, model, tokenizer): ...                 # many, as they come

    Stage("generate", Generate(), kind="generate", slots={"model": m, "tokenizer": t})

``serve(feed, **slots)`` receives the stage's slots exactly like ``fn`` does (only those its
signature names), so replacing a slot changes what ``serve`` runs too.

**The feed** (:class:`RequestFeed`) hands out :class:`StreamRequest` objects (``id``,
``item`` — the stage's input, after the stages before it — and ``arrival_s``):

* ``feed.poll()`` — the requests that arrived since the last call, without waiting (call it
  between decode steps to admit new requests);
* ``feed.wait(timeout=None)`` — block until at least one request arrives; returns ``[]``
  when the feed is exhausted (or after ``timeout`` seconds);
* ``feed.exhausted`` — True once every request has been handed out and no more will come
  (also when the run is stopping);
* ``feed.now()`` — seconds on the run's clock (the clock of ``arrival_s``).

**Events.** ``serve`` is a generator yielding :class:`StreamEvent` objects *as outputs are
produced* (the runtime timestamps each event when it receives it, so yield promptly, from
the thread that iterates the generator):

* ``StreamEvent(id, outputs=k)`` — ``k`` new outputs (tokens) for request ``id``; the first
  event with ``outputs > 0`` marks its time to first output;
* ``StreamEvent(id, done=True, result=value)`` — request ``id`` is finished; ``result`` is
  the stage's output for it (what ``fn`` would return for that input). A done event may carry
  its last ``outputs`` too;
* ``StreamEvent(id, error="message")`` — request ``id`` failed.

Every request taken from the feed gets exactly one ``done`` or ``error`` event. ``serve``
returns when ``feed.exhausted`` is True and nothing is in flight. If the run stops early
(Ctrl-C, a deadline, an error with ``on_error="stop"``) the runtime closes the generator
(``GeneratorExit`` at the ``yield``): release resources and return.

A minimal server (no real batching) shows the shape::

    def serve(feed, *, model):
        while not feed.exhausted:
            for request in feed.wait():
                tokens = []
                for token in model.generate_iter(request.item):
                    tokens.append(token)
                    yield StreamEvent(request.id, outputs=1)
                yield StreamEvent(request.id, done=True, result=tokens)

**What is measured.** Per request: time to first output (first output event − arrival),
per-output latency (gaps between output events, divided by the outputs they carry), and
completion latency (done − arrival, after the stages that follow the stream stage). Stages
before the stream stage run on arrival in the load-generator thread; stages after it run
when the request is done, in the thread that iterates ``serve`` (keep them light:
detokenizing, not another model).

This module runs a stream (:func:`run_stream`); the protocol's types live in
:mod:`.stream_protocol` and the figures in :mod:`.stream_stats`, both importable from here.
Its two threads (the arrivals and the server's consumer) are watched by the runtime's one
supervisor (:func:`.supervise.supervise`). The serving loop of the offline and online modes
(:mod:`.serving_loop`) does not fit here, because no worker runs a request through its stages
in one go: the stages before the stream stage run on the arrivals thread, the stream stage
inside the server, and the stages after it when the server reports the request done.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel import control as _control
from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.errors import ConfigError, PipelineError, StageError, StageTimeout
from pipetune.core.kernel.model import Pipeline, Stage, Trace
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.arrivals import schedule_requests
from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.result import ItemError, OnError, RunResult, Span
from pipetune.core.runtime.stream_protocol import (
    RequestFeed,
    StreamEvent,
    StreamRequest,
    find_stream_stage,
    stream_server,
)
from pipetune.core.runtime.stream_stats import StreamStats, _count_stats, _in_flight
from pipetune.core.runtime.supervise import _POLL_S, supervise

#: The stream protocol's version (see the module docstring).
STREAM_PROTOCOL = 1


def run_stream(
    pipeline: Pipeline,
    items: Sequence[Any],
    *,
    rate: float | None = None,
    trace: Trace | None = None,
    seed: int = 0,
    requests: int | None = None,
    on_error: OnError = "stop",
    timeout_s: float | None = None,
    spans: bool = False,
    progress: Callable[[int], None] | None = None,
    measure_cpu: bool = False,
    observe: int = 0,
    workers: int = 1,
) -> RunResult:
    """Serve ``items`` as generation requests arriving open-loop through a stream-capable
    stage (see the module docstring for the protocol).

    ``rate``/``trace``/``seed``/``requests``/``on_error``/``spans``/``progress`` as in
    :func:`~pipetune.core.runtime.online.run_online`. ``timeout_s`` is per request: the
    run stops with :class:`StageTimeout` when requests are outstanding and none of them
    made progress (an output, a completion, a stage before the stream stage returning)
    for that long. ``observe``: keep each
    stage's input and output for the first ``observe`` requests that finish every stage
    (``RunResult.observed``, what plugins read in ``profile_pipeline``). ``measure_cpu``
    and ``workers`` are accepted for a uniform call but not used: the server owns its own
    concurrency.

    Raises :class:`ConfigError` when no stage implements ``serve``.
    """
    del measure_cpu, workers
    _control.check()
    timeout_s = _control.item_timeout(timeout_s)
    items = list(items)
    if not items:
        raise ConfigError("stream run needs at least one input")
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be 'stop' or 'skip', not {on_error!r}")
    stream_stage = find_stream_stage(pipeline)
    if stream_stage is None:
        raise ConfigError(
            f"pipeline {pipeline.name!r} has no stream-capable stage: stream mode needs a "
            "stage whose fn has a serve(feed, **slots) method (see pipetune.core.runtime.stream)"
        )
    if trace is not None and trace.pipeline and trace.pipeline != pipeline.name:
        raise ConfigError(
            f"trace was recorded on pipeline {trace.pipeline!r}, not {pipeline.name!r}"
        )
    schedule, source, offered = schedule_requests(
        len(items), trace=trace, rate=rate, seed=seed, requests=requests
    )
    run = _StreamRun(pipeline, stream_stage, items, schedule, on_error, spans, progress, observe)
    run.execute(timeout_s)
    return run.result(source, offered)


class _StreamRun:
    def __init__(
        self,
        pipeline: Pipeline,
        stream_stage: Stage,
        items: list[Any],
        schedule: np.ndarray,
        on_error: OnError,
        spans: bool,
        progress: Callable[[int], None] | None,
        observe: int = 0,
    ):
        self.pipeline = pipeline
        self.position = pipeline.index(stream_stage.name)
        self.pre = pipeline.stages[: self.position]
        self.post = pipeline.stages[self.position + 1 :]
        self.stage = stream_stage
        self.items = items
        self.schedule = schedule
        self.on_error = on_error
        self.progress = progress
        n = len(schedule)
        k = len(pipeline)
        self.n = n
        self.item_index = np.arange(n) % len(items)
        self.stage_s = np.zeros((n, k + 1))
        self.first_s = np.full(n, np.nan)
        self.done_s = np.full(n, np.nan)
        self.last_output_s = np.full(n, np.nan)
        self.outputs_count = np.zeros(n, dtype=int)
        self.gaps: list[float] = []
        self.outputs: list[Any] = [None] * n
        self.ok = [False] * n
        self.attempted = np.zeros(n, dtype=bool)
        self.finished = np.zeros(n, dtype=bool)
        self.errors: list[ItemError] = []
        self.spans: list[Span] | None = [] if spans else None
        self.failure: BaseException | None = None
        self.stop = threading.Event()
        self.stopped = False
        self.settings = _threads.reapply()
        self.origin = 0.0
        self.feed: RequestFeed | None = None
        self.completed = 0
        # (stage, input, output) per observed row, committed once the row finishes
        self.observe = max(0, int(observe))
        self.observed = Observations() if self.observe else None
        self._seen: dict[int, list[list[Any]]] = {}
        self.progress_at = 0.0  # the last output, completion or request handed over
        self.pre_stage: tuple[str, int] | None = None  # the dispatcher inside a stage

    # -- threads -------------------------------------------------------------------------
    def execute(self, timeout_s: float | None) -> None:
        """Run the arrivals and the server on their threads under the shared supervisor
        (a stall past ``timeout_s``, Ctrl-C or a cancelled token stops both)."""
        self.origin = time.perf_counter()
        self.feed = RequestFeed(self.origin)
        server = stream_server(self.stage)
        assert server is not None
        dispatcher = threading.Thread(target=self._dispatch, name="pipetune-arrivals", daemon=True)
        consumer = threading.Thread(
            target=self._consume, args=(server,), name="pipetune-stream", daemon=True
        )
        self.progress_at = self.origin
        dispatcher.start()
        consumer.start()
        if supervise((dispatcher, consumer), lambda: self._check_stall(timeout_s), self._halt):
            self.stopped = True
        if self.failure is not None:
            raise self.failure

    def _halt(self) -> None:
        """Stop the run: no more arrivals, and the server sees the feed exhausted."""
        assert self.feed is not None
        self.stop.set()
        self.feed.close()

    def _check_stall(self, timeout_s: float | None) -> None:
        """The supervisor's tick: raise :class:`StageTimeout` (stopping the run) when
        requests are outstanding and nothing moved for ``timeout_s``."""
        if timeout_s is not None and self._stalled(time.perf_counter(), timeout_s):
            self._halt()
            raise self._timeout(timeout_s)

    def _stalled(self, now: float, timeout_s: float) -> bool:
        """Requests are outstanding (or a stage before the stream stage is running) and
        nothing moved for ``timeout_s``."""
        if now - self.progress_at < timeout_s:
            return False
        return self.pre_stage is not None or bool(np.any(self.attempted & ~self.finished))

    def _timeout(self, timeout_s: float) -> StageTimeout:
        if self.pre_stage is not None:
            name, row = self.pre_stage
            return StageTimeout(name, row, self.items[self.item_index[row]], timeout_s)
        waiting = np.flatnonzero(self.attempted & ~self.finished)
        if waiting.size:
            row = int(waiting[0])
            return StageTimeout(self.stage.name, row, self.items[self.item_index[row]], timeout_s)
        return StageTimeout(self.stage.name, None, None, timeout_s)

    def _dispatch(self) -> None:
        """Release requests on schedule, running the stages before the stream stage."""
        assert self.feed is not None
        try:
            for row in range(self.n):
                if not self._sleep_until(self.origin + self.schedule[row]):
                    return
                self.attempted[row] = True
                passed, value = self._before_stream(row, self.items[self.item_index[row]])
                if not passed:
                    if self.stop.is_set():
                        return
                    continue
                if row < self.observe:
                    self._seen.setdefault(row, []).append([self.stage.name, value, None])
                self.progress_at = time.perf_counter()
                self.feed.put(StreamRequest(row, value, float(self.schedule[row])))
        except KeyboardInterrupt:  # raised inside a stage: stop, keep what was measured
            self.stopped = True
            self.stop.set()
        finally:
            self.feed.close()

    def _sleep_until(self, target: float) -> bool:
        """Nap until ``target`` (a ``perf_counter`` time); False once the run is stopping."""
        perf = time.perf_counter
        while not self.stop.is_set():
            wait = target - perf()
            if wait <= 0:
                break
            time.sleep(min(wait, _POLL_S))
        return not self.stop.is_set()

    def _before_stream(self, row: int, value: Any) -> tuple[bool, Any]:
        """Run request ``row``'s input through the stages before the stream stage:
        ``(True, the stream stage's input)``, or ``(False, None)`` when one of them failed."""
        seen = self._seen.setdefault(row, []) if row < self.observe else None
        return self._run_stages(row, value, self.pre, 0, seen, arrivals=True)

    def _run_stages(
        self,
        row: int,
        value: Any,
        stages: Sequence[Stage],
        first_column: int,
        seen: list[list[Any]] | None,
        *,
        arrivals: bool,
    ) -> tuple[bool, Any]:
        """Run ``value`` through ``stages`` (columns ``first_column`` on) for request ``row``,
        timing each one, with a span on the arrivals thread (``arrivals``: also marking
        progress and the stage it is in, for the stall check) or on the server's, and what
        each stage was given and returned in ``seen`` (an observed request). ``(True, the
        last output)``, or ``(False, None)`` when a stage failed (:meth:`_fail`)."""
        perf = time.perf_counter
        worker = "arrivals" if arrivals else "server"
        for column, stage in enumerate(stages, start=first_column):
            t0 = perf()
            before = value
            if arrivals:
                self.progress_at = t0
                self.pre_stage = (stage.name, row)
            try:
                value = stage(value)
            except (Exception, SystemExit) as exc:
                if arrivals:
                    self.pre_stage = None
                self.stage_s[row, column] = perf() - t0
                self._fail(row, stage.name, exc)
                return False, None
            if arrivals:
                self.pre_stage = None
            t1 = perf()
            self.stage_s[row, column] = t1 - t0
            self._span(row, stage.name, worker, t0, t1)
            if seen is not None:
                seen.append([stage.name, before, value])
        return True, value

    def _consume(self, server: Callable[[RequestFeed], Iterable[StreamEvent]]) -> None:
        """Iterate the server's events, timestamping each as it arrives."""
        assert self.feed is not None
        perf = time.perf_counter
        events: Any = None
        try:
            events = server(self.feed)
            for event in events:
                self.progress_at = perf()
                now = self.progress_at - self.origin
                self._event(event, now)
                if self.stop.is_set():
                    break
        except KeyboardInterrupt:  # raised inside the server: stop, keep what was measured
            self.stopped = True
            self.stop.set()
        except PipelineError as exc:
            self.failure = exc
            self.stop.set()
        except (Exception, SystemExit) as exc:
            self._server_raised(exc)
        else:
            self._server_returned()
        finally:
            if events is not None and hasattr(events, "close"):
                with contextlib.suppress(Exception):
                    events.close()
            self.feed.close()

    def _server_raised(self, exc: BaseException) -> None:
        """``serve()`` raised: the run fails with it (``on_error="stop"``), or every request
        not finished yet fails with it; either way the run stops."""
        if self.on_error == "stop":
            first = next((int(r) for r in np.flatnonzero(self.attempted & ~self.finished)), None)
            item = self.items[self.item_index[first]] if first is not None else None
            self.failure = StageError(self.stage.name, first, item, exc)
            self.stop.set()
        else:
            message = f"{type(exc).__name__}: {exc}"
            for row in np.flatnonzero(self.attempted & ~self.finished):
                self._record_error(int(row), self.stage.name, message)
            self.stop.set()

    def _server_returned(self) -> None:
        """``serve()`` returned by itself: the protocol says only once the feed is exhausted
        and every request it took is finished. Anything else is a bug in the server."""
        assert self.feed is not None
        unfinished = np.flatnonzero(self.attempted & ~self.finished)
        if not self.stop.is_set() and (not self.feed.exhausted or unfinished.size):
            what = (
                f"without finishing request(s) {', '.join(map(str, unfinished[:5]))}"
                if unfinished.size
                else "before the feed was exhausted"
            )
            self.failure = PipelineError(
                f"stage {self.stage.name!r}: serve() returned {what} (stream protocol: "
                "return once feed.exhausted is True and every request is done)"
            )
            self.stop.set()

    # -- bookkeeping -----------------------------------------------------------------------
    def _event(self, event: StreamEvent, now: float) -> None:
        if not isinstance(event, StreamEvent):
            raise PipelineError(
                f"stage {self.stage.name!r}: serve() yielded {type(event).__name__}, "
                "not a StreamEvent"
            )
        row = event.id
        if not (0 <= row < self.n) or not self.attempted[row]:
            raise PipelineError(
                f"stage {self.stage.name!r}: serve() reported request {row!r}, which it was "
                "never given"
            )
        if self.finished[row]:
            raise PipelineError(
                f"stage {self.stage.name!r}: serve() reported request {row} after it finished"
            )
        if event.outputs < 0:
            raise PipelineError(f"stage {self.stage.name!r}: negative outputs for request {row}")
        if event.outputs:
            if np.isnan(self.first_s[row]):
                self.first_s[row] = now
            else:
                gap = (now - self.last_output_s[row]) / event.outputs
                self.gaps.extend([gap] * event.outputs)
            self.last_output_s[row] = now
            self.outputs_count[row] += event.outputs
        if event.error is not None:
            self._record_error(row, self.stage.name, event.error)
            if self.on_error == "stop":
                item = self.items[self.item_index[row]]
                self.failure = StageError(self.stage.name, row, item, RuntimeError(event.error))
                self.stop.set()
            return
        if event.done:
            self._complete(row, event.result, now)

    def _complete(self, row: int, value: Any, now: float) -> None:
        assert self.feed is not None
        perf = time.perf_counter
        taken = self.feed.taken_at.get(row, now)
        column = self.position
        self.stage_s[row, column] = max(0.0, now - taken)
        self._span(row, self.stage.name, "server", self.origin + taken, self.origin + now)
        seen = self._seen.get(row)
        if seen:
            seen[-1][2] = value  # the stream stage's output
        passed, value = self._run_stages(row, value, self.post, column + 1, seen, arrivals=False)
        if not passed:
            return
        if seen is not None and self.observed is not None:
            self.observed.indices.append(int(self.item_index[row]))
            for name, given, produced in seen:
                self.observed.inputs.setdefault(name, []).append(given)
                self.observed.outputs.setdefault(name, []).append(produced)
            del self._seen[row]
        end = perf() - self.origin
        self.done_s[row] = end
        if np.isnan(self.first_s[row]):
            self.first_s[row] = now  # no output events: the first output is the result
        self.finished[row] = True
        self.outputs[row] = value
        self.ok[row] = True
        self.completed += 1
        if self.progress is not None:
            self.progress(self.completed)

    def _fail(self, row: int, stage: str, exc: BaseException) -> None:
        if self.on_error == "stop":
            self.failure = StageError(stage, row, self.items[self.item_index[row]], exc)
            self.stop.set()
            if self.feed is not None:
                self.feed.close()
        self._record_error(row, stage, f"{type(exc).__name__}: {exc}")

    def _record_error(self, row: int, stage: str, message: str) -> None:
        if self.finished[row]:
            return
        self.finished[row] = True
        self.done_s[row] = time.perf_counter() - self.origin
        self.errors.append(ItemError(row, stage, message))

    def _span(self, row: int, stage: str, worker: str, t0: float, t1: float) -> None:
        if self.spans is not None:
            self.spans.append(Span(row, 1, stage, worker, t0 - self.origin, t1 - self.origin))

    # -- result ----------------------------------------------------------------------------
    def result(self, source: str, offered: float) -> RunResult:
        arrival = self.schedule.copy()
        done = np.where(np.isnan(self.done_s), arrival, self.done_s)
        latency = np.maximum(done - arrival, 0.0)
        stage_s = self.stage_s.copy()
        # Whatever is not inside a stage was waiting (generator lag, the feed): that is the
        # queue time, so each row of stage_s sums to the service time, as in online mode.
        service = np.minimum(stage_s[:, :-1].sum(axis=1), latency)
        stage_s[:, -1] = 0.0
        start = done - service
        ok = np.asarray(self.ok, dtype=bool)
        ttft = (self.first_s - arrival)[ok]
        span = float(np.nanmax(done[self.attempted]) - arrival[0]) if self.attempted.any() else 0.0
        in_flight = _in_flight(arrival[self.attempted], done[self.attempted])
        total_outputs = int(self.outputs_count.sum())
        stats = StreamStats(
            requests=self.n,
            completed=int(ok.sum()),
            offered_rps=offered,
            source=source,
            ttft_ms=percentiles_ms(ttft),
            per_output_ms=percentiles_ms(self.gaps),
            completion_ms=percentiles_ms(latency[ok]),
            outputs_per_request=_count_stats(self.outputs_count[ok]),
            outputs_per_s=total_outputs / span if span > 0 else 0.0,
            max_in_flight=int(in_flight.max()) if in_flight.size else 0,
            mean_in_flight=float(in_flight.mean()) if in_flight.size else 0.0,
        )
        return RunResult(
            outputs=list(self.outputs),
            ok=list(self.ok),
            latency_s=latency,
            stage_s=stage_s,
            wall_s=span,
            stage_names=self.pipeline.stage_names,
            errors=sorted(self.errors, key=lambda e: e.index),
            stopped=self.stopped,
            mode="stream",
            workers=1,
            executor="thread",
            attempted=int(self.attempted.sum()),
            start_s=start,
            done_s=done,
            arrival_s=arrival,
            item_index=self.item_index,
            spans=self.spans,
            threads=self.settings,
            first_output_s=self.first_s.copy(),
            output_gaps_s=np.asarray(self.gaps, dtype=float),
            stream=stats,
            observed=self.observed,
        )
