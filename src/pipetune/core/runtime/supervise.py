"""Watching worker threads: where each one is, per-input deadlines, and Ctrl-C.

A worker publishes where it is in a :class:`_Progress` (its stage, its input, since when),
so a hang can be reported as a :class:`~pipetune.core.kernel.errors.StageTimeout` naming
the stage and the input (:func:`overdue`, which the offline and online runners share);
:func:`_supervise` waits for the offline runner's worker threads, enforcing that deadline
and giving the workers :data:`STOP_GRACE_S` to finish after Ctrl-C or a cancelled token.
Every runtime loop that waits on threads wakes every :data:`_POLL_S`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any

from pipetune.core.kernel import control as _control
from pipetune.core.kernel import workers as _workers
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


def _supervise(
    pool: Sequence[_workers.Handle],
    stop: threading.Event,
    states: Sequence[_Progress],
    timeout_s: float | None,
    origin: float,
) -> bool:
    """Wait for worker threads, enforcing the per-input deadline and handling Ctrl-C.

    Returns True when stopped by Ctrl-C or a cancelled token (workers were asked to finish
    their current input and given :data:`STOP_GRACE_S`, then abandoned). Raises
    :class:`StageTimeout` naming the stage and the input when one input has been in the
    pipeline longer than ``timeout_s``.
    """
    del origin
    token = _control.current().token
    try:
        while any(thread.is_alive() for thread in pool):
            if token.cancelled:
                raise KeyboardInterrupt
            if timeout_s is not None:
                late = overdue(states, timeout_s)
                if late is not None:
                    stop.set()
                    raise late
            for thread in pool:
                thread.join(_POLL_S)
                if not thread.is_alive():
                    continue
                break
    except KeyboardInterrupt:
        stop.set()
        _control.cancel("interrupted")
        grace_end = time.perf_counter() + STOP_GRACE_S
        for thread in pool:
            with contextlib.suppress(KeyboardInterrupt):
                thread.join(max(0.0, grace_end - time.perf_counter()))
        return True
    return False


def overdue(states: Sequence[_Progress], timeout_s: float) -> StageTimeout | None:
    """A :class:`StageTimeout` for the input that has been in the pipeline longer than
    ``timeout_s`` (the longest-running one), or ``None``."""
    now = time.perf_counter()
    busy = [s for s in states if s.stage and now - s.item_since >= timeout_s]
    if not busy:
        return None
    stuck = min(busy, key=lambda s: s.item_since)
    return StageTimeout(stuck.stage, stuck.index, stuck.item, timeout_s)
