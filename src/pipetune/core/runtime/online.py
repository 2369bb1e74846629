"""Online mode: open-loop arrivals through a queue, worker threads, an optional batcher.

Requests arrive on a schedule that does not wait for the system (open loop): Poisson
arrivals at ``rate`` requests per second (exponential gaps drawn with ``seed``), or the
offsets of a recorded :class:`~pipetune.core.kernel.model.Trace`. Each request joins one FIFO queue
served by ``workers`` threads. With ``max_batch > 1`` a max-delay batcher sits in front of
the workers: when a worker is free it opens a batch with the oldest waiting request and
closes it when it holds ``max_batch`` requests or when that first request has waited
``max_wait_ms`` since it *arrived* (a request that already waited longer is not held
further), then the batch runs through each stage's ``batch_fn``.

The latency users see is completion minus the *scheduled* arrival: queueing, batching delay
and any lag of the load generator are included, so a slow system cannot hide its backlog
(no coordinated omission). The run reports the offered rate, the rate the generator achieved
and the completion rate, and says when the run was overloaded (the queue kept growing):
those figures are :mod:`.online_stats`'s. The workers serve through the shared
:class:`~pipetune.core.runtime.serving_loop.ServingLoop`; this module owns only where their
work comes from (the queue, fed on the schedule :mod:`.arrivals` draws, and the batcher).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune.core.kernel import control as _control
from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Trace
from pipetune.core.runtime import threads as _threads
from pipetune.core.runtime.arrivals import match_sizes, schedule_requests
from pipetune.core.runtime.online_stats import analyse
from pipetune.core.runtime.recorder import _Recorder
from pipetune.core.runtime.result import OnError, RunResult, StageInstrument
from pipetune.core.runtime.serving_loop import ServingLoop
from pipetune.core.runtime.supervise import _POLL_S


def run_online(
    pipeline: Pipeline,
    items: Sequence[Any],
    *,
    rate: float | None = None,
    trace: Trace | None = None,
    seed: int = 0,
    requests: int | None = None,
    workers: int = 1,
    max_batch: int = 1,
    max_wait_ms: float = 0.0,
    on_error: OnError = "stop",
    timeout_s: float | None = None,
    observe: int = 0,
    measure_cpu: bool = False,
    spans: bool = False,
    progress: Callable[[int], None] | None = None,
    instrument: StageInstrument | None = None,
) -> RunResult:
    """Serve ``items`` as requests arriving open-loop; latency counts from arrival.

    Args:
        rate: Poisson arrival rate in requests per second (drawn with ``seed``).
        trace: replay these arrival offsets instead (wins over ``rate``). A trace recorded
            on another pipeline (``trace.pipeline``) is refused.
        requests: how many requests (default: one per item, or the trace's length); items
            are reused in order when there are more requests than items. A trace that
            records input sizes is replayed with production's mix: each request serves an
            item of about its recorded size (:func:`~.arrivals.match_sizes`).
        workers: threads serving the queue.
        max_batch: > 1 puts a max-delay batcher in front of the workers (uses each stage's
            ``batch_fn``).
        max_wait_ms: how long the batcher may hold the oldest request, from its arrival.
        on_error, timeout_s, observe, measure_cpu, spans, progress, instrument: as in
            :func:`~pipetune.core.runtime.offline.run_offline`; ``timeout_s`` bounds the
            time one request (or batch) spends in the pipeline once a worker takes it.

    Returns a :class:`RunResult` with ``mode="online"``, ``arrival_s`` and ``online``
    (:class:`~pipetune.core.runtime.online_stats.OnlineStats`). Ctrl-C stops arrivals,
    lets workers finish their current request, and returns what was measured with
    ``stopped=True``.
    """
    _control.check()
    timeout_s = _control.item_timeout(timeout_s)
    items = list(items)
    _check_arguments(pipeline, items, trace, workers, max_batch, max_wait_ms, on_error, instrument)
    plan = _plan_requests(items, trace=trace, rate=rate, seed=seed, requests=requests)
    settings = _threads.reapply()
    recorder = _Recorder(
        pipeline,
        len(plan.schedule),
        on_error=on_error,
        observe=observe,
        measure_cpu=measure_cpu,
        cpu_clock="process" if workers == 1 else "thread",
        spans=spans,
        instrument=instrument,
    )
    loop = ServingLoop(recorder, [f"worker-{w}" for w in range(workers)], progress)
    server = _Server(loop, items, plan.item_index, plan.schedule, max_batch, max_wait_ms)
    submit, stopped, wall = _serve(server, timeout_s)
    return _online_result(
        loop,
        plan,
        submit,
        wall_s=wall,
        stopped=stopped,
        settings=settings,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
    )


def _check_arguments(
    pipeline: Pipeline,
    items: list[Any],
    trace: Trace | None,
    workers: int,
    max_batch: int,
    max_wait_ms: float,
    on_error: OnError,
    instrument: StageInstrument | None,
) -> None:
    """Refuse an online run that cannot be served as asked, before any thread starts."""
    if not items:
        raise ConfigError("online run needs at least one input")
    if workers < 1 or max_batch < 1:
        raise ConfigError("workers and max_batch must be >= 1")
    if max_wait_ms < 0:
        raise ConfigError("max_wait_ms must be >= 0")
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be 'stop' or 'skip', not {on_error!r}")
    if instrument is not None and workers > 1:
        raise ConfigError("a stage instrument (CUDA events) needs workers=1")
    if trace is not None and trace.pipeline and trace.pipeline != pipeline.name:
        raise ConfigError(
            f"trace was recorded on pipeline {trace.pipeline!r}, not {pipeline.name!r}: "
            "replaying it would model the wrong traffic"
        )


@dataclass(frozen=True)
class _Plan:
    """When each request arrives and which item it serves."""

    schedule: np.ndarray  # arrival offsets in seconds
    source: str  # "poisson" or "trace"
    offered_rps: float
    item_index: np.ndarray  # request -> index into the items


def _plan_requests(
    items: list[Any],
    *,
    trace: Trace | None,
    rate: float | None,
    seed: int,
    requests: int | None,
) -> _Plan:
    """The arrival schedule and, per request, an item: in order, or by the trace's sizes."""
    schedule, source, offered = schedule_requests(
        len(items), trace=trace, rate=rate, seed=seed, requests=requests
    )
    n = len(schedule)
    item_index = np.arange(n) % len(items)
    if trace is not None and trace.sizes is not None:
        matched = match_sizes(items, trace.sizes[:n])
        if matched is not None:  # replay production's mix of sizes, not the items' order
            item_index = matched
    return _Plan(schedule, source, offered, item_index)


def _serve(server: _Server, timeout_s: float | None) -> tuple[np.ndarray, bool, float]:
    """Submit every request on schedule and wait for the queue to drain (or a Ctrl-C).

    Returns ``(submit offsets, stopped, wall seconds)``; a request never submitted has NaN.
    """
    submit = np.full(len(server.schedule), np.nan)
    stopped = False
    perf = time.perf_counter
    server.start()  # threads up before the clock starts
    origin = perf()
    server.loop.recorder.origin = origin
    try:
        server.feed(origin, submit, timeout_s)
        server.close()
        stopped = server.loop.supervise(server.threads, timeout_s, wake=server.close)
    except KeyboardInterrupt:
        stopped = True
        server.loop.halt(server.threads, wake=server.close)
    wall = perf() - origin
    return submit, stopped, wall


def _online_result(
    loop: ServingLoop,
    plan: _Plan,
    submit: np.ndarray,
    *,
    wall_s: float,
    stopped: bool,
    settings: dict[str, Any],
    max_batch: int,
    max_wait_ms: float,
) -> RunResult:
    """The loop's result (or the failure that ended the run), its wall time up to the last
    completion, and its online stats."""
    recorder = loop.recorder
    result = loop.result(
        wall_s=wall_s,
        stopped=stopped,
        mode="online",
        executor="thread",
        settings=settings,
        arrival_s=plan.schedule.copy(),
        item_index=plan.item_index,
    )
    if result.done_s is not None and result.attempted:
        result.wall_s = float(np.max(result.done_s[recorder.attempted]))
    result.online = analyse(
        result,
        submit,
        source=plan.source,
        offered_rps=plan.offered_rps,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        attempted=recorder.attempted.copy(),
    )
    return result


class _Server:
    """Where an online run's work comes from: the arrival queue fed on schedule and, with
    ``max_batch > 1``, the batcher; the workers serve it through the :class:`ServingLoop`."""

    def __init__(
        self,
        loop: ServingLoop,
        items: list[Any],
        item_index: np.ndarray,
        schedule: np.ndarray,
        max_batch: int,
        max_wait_ms: float,
    ):
        self.loop = loop
        self.items = items
        self.item_index = item_index
        self.schedule = schedule
        self.workers = len(loop.names)
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.batches: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self.free = threading.Semaphore(self.workers)
        self.stop = loop.stop
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        batching = self.max_batch > 1
        for w in range(self.workers):
            target = self._batch_worker if batching else self._worker
            self.threads.append(
                threading.Thread(target=target, args=(w,), name=f"pipetune-online-{w}", daemon=True)
            )
        if batching:
            self.threads.append(
                threading.Thread(target=self._batcher, name="pipetune-batcher", daemon=True)
            )
        for thread in self.threads:
            thread.start()

    def feed(self, origin: float, submit: np.ndarray, timeout_s: float | None) -> None:
        """Put each request on the queue at its scheduled time, recording when it went in."""
        perf = time.perf_counter
        for i in range(len(self.schedule)):
            self._wait_until(origin + self.schedule[i], timeout_s)
            if self.stop.is_set():
                break
            submit[i] = perf() - origin
            self.requests.put(i)

    def _wait_until(self, target: float, timeout_s: float | None) -> None:
        """Sleep until ``target`` in short naps, noticing a stop, a cancel or an overdue input."""
        perf = time.perf_counter
        while True:
            now = perf()
            if self.stop.is_set():
                return
            self.loop.watch(timeout_s)
            wait = target - now
            if wait <= 0:
                return
            time.sleep(min(wait, _POLL_S))  # short naps: notice a failed worker soon

    def close(self) -> None:
        """No more arrivals: tell the batcher or each worker to finish."""
        if self.max_batch > 1:
            self.requests.put(None)
        else:
            for _ in range(self.workers):
                self.requests.put(None)

    def _run(self, rows: list[int], w: int, batched: bool) -> bool:
        chunk = [self.items[self.item_index[row]] for row in rows]
        return self.loop.serve(rows, chunk, w, batched)

    def _worker(self, w: int) -> None:
        while True:
            row = self.requests.get()
            if row is None or self.stop.is_set() or not self._run([row], w, False):
                return

    def _batch_worker(self, w: int) -> None:
        while True:
            batch = self.batches.get()
            if batch is None or self.stop.is_set():
                return
            ok = self._run(batch, w, True)
            self.free.release()
            if not ok:
                return

    def _batcher(self) -> None:
        perf = time.perf_counter
        origin = self.loop.recorder.origin
        ended = False
        try:
            while not ended and not self.stop.is_set():
                if not self.free.acquire(timeout=_POLL_S):  # wait for a free worker
                    continue
                first = self._get(None)
                if first is None:
                    self.free.release()
                    break
                batch = [first]
                closes = origin + self.schedule[first] + self.max_wait_s
                while len(batch) < self.max_batch:
                    row = self._get(closes - perf())
                    if row is _EMPTY:
                        break
                    if row is None:
                        ended = True
                        break
                    batch.append(row)
                self.batches.put(batch)
        finally:
            for _ in range(self.workers):
                self.batches.put(None)

    def _get(self, timeout: float | None) -> Any:
        """The next request, ``None`` at the end, ``_EMPTY`` if none came in ``timeout``
        (a timeout <= 0 takes only what is already waiting)."""
        try:
            if timeout is None:
                while True:  # block, but keep noticing a stop
                    with contextlib.suppress(queue.Empty):
                        return self.requests.get(timeout=_POLL_S)
                    if self.stop.is_set():
                        return None
            if timeout <= 0:
                return self.requests.get_nowait()
            return self.requests.get(timeout=timeout)
        except queue.Empty:
            return _EMPTY


_EMPTY = object()
