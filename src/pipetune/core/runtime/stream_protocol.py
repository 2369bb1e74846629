"""The vocabulary of the stream protocol (version 1), which :mod:`.stream` documents.

A stream-capable stage's ``serve(feed, **slots)`` takes :class:`StreamRequest` objects from a
:class:`RequestFeed` and yields :class:`StreamEvent` objects; :func:`stream_server` finds that
method on a stage (slots applied) and :func:`find_stream_stage` the stage of a pipeline
that has one. These are the pieces a server (a plugin) and the stream runner share; running
a stream, and measuring it, is :mod:`.stream`'s job.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime.supervise import _POLL_S


@dataclass(frozen=True)
class StreamRequest:
    """A request handed to a stream server: ``item`` is the stream stage's input."""

    id: int
    item: Any
    arrival_s: float


@dataclass(frozen=True)
class StreamEvent:
    """Something a stream server reports about request ``id`` (see the module docstring)."""

    id: int
    outputs: int = 0
    done: bool = False
    result: Any = None
    error: str | None = None


class RequestFeed:
    """The requests of a stream run, handed to the server as they arrive."""

    def __init__(self, origin: float):
        self._origin = origin
        self._ready: list[StreamRequest] = []
        self._cond = threading.Condition()
        self._closed = False
        self.taken_at: dict[int, float] = {}

    def now(self) -> float:
        """Seconds on the run's clock (the clock of ``StreamRequest.arrival_s``)."""
        return time.perf_counter() - self._origin

    @property
    def exhausted(self) -> bool:
        """True once every request has been handed out and none will come."""
        with self._cond:
            return self._closed and not self._ready

    def poll(self) -> list[StreamRequest]:
        """The requests that arrived since the last call, without waiting."""
        with self._cond:
            return self._take()

    def wait(self, timeout: float | None = None) -> list[StreamRequest]:
        """Block until a request arrives (``[]`` when exhausted or after ``timeout``)."""
        end = None if timeout is None else time.perf_counter() + timeout
        with self._cond:
            while not self._ready and not self._closed:
                remaining = None if end is None else end - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining if remaining is not None else _POLL_S)
            return self._take()

    # -- the runtime's side ------------------------------------------------------------
    def put(self, request: StreamRequest) -> None:
        with self._cond:
            self._ready.append(request)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _take(self) -> list[StreamRequest]:
        taken, self._ready = self._ready, []
        now = self.now()
        for request in taken:
            self.taken_at[request.id] = now
        return taken


def stream_server(stage: Stage) -> Callable[..., Iterable[StreamEvent]] | None:
    """The bound ``serve`` of a stream-capable stage (slots applied), or ``None``."""
    serve = getattr(stage.fn, "serve", None)
    if not callable(serve):
        return None
    try:
        params: Iterable[inspect.Parameter] = inspect.signature(serve).parameters.values()
    except (TypeError, ValueError):
        params = ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        names = tuple(stage.slots)
    else:
        accepted = {p.name for p in params}
        names = tuple(name for name in stage.slots if name in accepted)
    slots = {name: stage.slots[name] for name in names}

    def bound(feed: RequestFeed) -> Iterable[StreamEvent]:
        return serve(feed, **slots)

    return bound


def find_stream_stage(pipeline: Pipeline) -> Stage | None:
    """The first stream-capable stage of ``pipeline``, if any."""
    for stage in pipeline.stages:
        if stream_server(stage) is not None:
            return stage
    return None
