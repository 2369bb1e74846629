"""Watching worker threads: where each one is, per-input deadlines, and Ctrl-C.

A worker publishes where it is in a :class:`_Progress` (its stage, its input, since when),
so a hang can be reported as a :class:`~pipetune.core.kernel.errors.StageTimeout` naming
the stage and the input (:func:`overdue`). :func:`supervise` is the one supervisor of every
mode that runs threads (the serving loop of offline and online runs,
:mod:`.serving_loop`, and the stream runner): it waits for the threads, ticks the mode's
own deadline check, and on Ctrl-C or a cancelled token gives the workers
:data:`STOP_GRACE_S` to finish (:func:`halt`). Every runtime loop that waits on threads
wakes every :data:`_POLL_S`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from pipetune.core.kernel import control as _control
from pipetune.core.kernel.errors import StageTimeout

#: After Ctrl-C, how long worker threads get to finish the input they are on before they
#: are abandoned (the whole command must end within 2 s of the signal).
STOP_GRACE_S = 1.0
#: How often the supervising thread wakes up to check the deadline.
_POLL_S = 0.05


class _Progress:
    """Where a worker is, so a hang can be reported with its stage and input:
    ``item_since`` is when the current input (or batch) started, ``since`` when its
    current stage did."""

    __slots__ = ("index", "item", "item_since", "since", "stage")

    def __init__(self) -> None:
        self.stage = ""
        self.index: int | None = None
        self.item: Any = None
        self.since = 0.0
        self.item_since = 0.0


class Joinable(Protocol):
    """A worker to wait for: a :class:`threading.Thread` or a kernel worker's handle."""

    def is_alive(self) -> bool: ...

    def join(self, timeout: float | None = None) -> None: ...


def supervise(
    threads: Sequence[Joinable],
    tick: Callable[[], None],
    on_stop: Callable[[], None],
) -> bool:
    """Wait for ``threads``, calling ``tick`` every :data:`_POLL_S` and handling Ctrl-C.

    ``tick`` ends the run by raising (a :class:`StageTimeout` for an input over its
    deadline, after telling the workers to stop). Returns True when stopped by Ctrl-C or a
    cancelled token (:func:`halt`, with ``on_stop`` telling the workers to finish).
    """
    token = _control.current().token
    try:
        while any(thread.is_alive() for thread in threads):
            if token.cancelled:
                raise KeyboardInterrupt
            tick()
            for thread in threads:
                if thread.is_alive():
                    thread.join(_POLL_S)
                    break
    except KeyboardInterrupt:
        halt(threads, on_stop)
        return True
    return False


def halt(threads: Sequence[Joinable], on_stop: Callable[[], None]) -> None:
    """Ctrl-C or a cancelled token: ``on_stop`` asks the workers to finish their current
    input, the token is cancelled, and the workers get :data:`STOP_GRACE_S` before they
    are abandoned (a second Ctrl-C abandons them at once)."""
    on_stop()
    _control.cancel("interrupted")
    grace_end = time.perf_counter() + STOP_GRACE_S
    for thread in threads:
        with contextlib.suppress(KeyboardInterrupt):
            thread.join(max(0.0, grace_end - time.perf_counter()))


def overdue(states: Sequence[_Progress], timeout_s: float) -> StageTimeout | None:
    """A :class:`StageTimeout` for the input that has been in the pipeline longer than
    ``timeout_s`` (the longest-running one), or ``None``."""
    now = time.perf_counter()
    busy = [s for s in states if s.stage and now - s.item_since >= timeout_s]
    if not busy:
        return None
    stuck = min(busy, key=lambda s: s.item_since)
    return StageTimeout(stuck.stage, stuck.index, stuck.item, timeout_s)
