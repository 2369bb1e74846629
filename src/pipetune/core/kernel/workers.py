"""Long-lived worker threads for the runtime's offline passes.

A fresh thread per pass starts cold: on glibc it gets a malloc arena of its own, so the
buffers a stage allocates page-fault in anew, and libraries rebuild their thread-local
state. Measured on the recsys demo (two-stage pipeline, one request a pass, interleaved
with the full-ranking original): 7.1 ms a request on a fresh thread against 4.8 ms in the
calling thread. The validator and the final comparison run one-input passes when the
original takes most of a second an input, so that cost fell on the fast side alone and
understated its speedup by a third. Threads are therefore kept and handed out again; a
thread still inside a stage that hung past its deadline is not handed out until it
returns.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_idle: list[_Worker] = []
_lock = threading.Lock()
_count = 0


class Handle:
    """What :func:`start` returns: ``is_alive()`` and ``join(timeout)`` as a thread has."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.error: BaseException | None = None

    def is_alive(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)


_Job = tuple[Callable[..., Any], tuple[Any, ...], str, Handle, contextvars.Context]


class _Worker:
    def __init__(self, number: int) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._loop, name=f"pipetune-worker-{number}", daemon=True
        )
        self.thread.start()

    def _loop(self) -> None:
        while True:
            target, args, name, handle, context = self.jobs.get()
            threading.current_thread().name = name
            try:
                context.run(target, *args)
            except BaseException as exc:  # kept on the handle: the worker must survive
                handle.error = exc
            finally:
                # idle again before the caller hears it is done, so that a pass started
                # right after this one gets this thread, not a new one
                with _lock:
                    _idle.append(self)
                handle._done.set()


def busy() -> int:
    """Worker threads still inside a job: after a run, the stages that hung past their
    deadline and never returned."""
    with _lock:
        return _count - len(_idle)


def start(target: Callable[..., Any], args: tuple[Any, ...] = (), name: str = "") -> Handle:
    """Run ``target(*args)`` on an idle long-lived worker thread (a new one when none is
    idle), in a copy of the caller's context (so it sees the caller's cancellation token
    and deadline, :mod:`pipetune.core.kernel.control`); returns a handle to wait on."""
    global _count
    with _lock:
        if _idle:
            worker = _idle.pop()
        else:
            _count += 1
            worker = _Worker(_count)
    handle = Handle()
    context = contextvars.copy_context()
    worker.jobs.put((target, args, name or worker.thread.name, handle, context))
    return handle


def call(
    fn: Callable[[], Any],
    *,
    timeout_s: float | None = None,
    what: str = "a call",
    poll_s: float = 0.05,
) -> Any:
    """``fn()`` on a worker thread, waited for in a way that a cancelled token (or
    Ctrl-C) and ``timeout_s`` can end: a long tune step or a hung plugin hook then stops
    the wait at once, and the call is abandoned on its thread (see :func:`busy`).

    Raises what ``fn`` raised, :class:`~pipetune.core.kernel.control.Cancelled`, or
    :class:`TimeoutError` naming ``what``.
    """
    from pipetune.core.kernel import control

    box: dict[str, Any] = {}

    def job() -> None:
        box["value"] = fn()

    token = control.current().token
    token.check()
    handle = start(job, name=f"pipetune-{what}"[:60])
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while handle.is_alive():
        if token.cancelled:
            raise control.Cancelled(token.reason or "interrupted")
        wait = poll_s
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} did not finish within {timeout_s:g} s")
            wait = min(wait, remaining)
        handle.join(wait)
    if handle.error is not None:
        raise handle.error
    return box.get("value")
