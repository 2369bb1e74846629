"""Progress of a profile in work units: the profiler's passes (warm-up, timing, sweep,
probes) each own a slice of one total, so a status line moves steadily from 0 to the end
however many passes run; worker threads report too, so the count is kept monotone under
a lock."""

from __future__ import annotations

import threading
from collections.abc import Callable


class ProgressUnits:
    """Progress in work units across passes: each pass owns a slice of the total."""

    def __init__(self, callback: Callable[[int, int], None] | None, total: int):
        self.callback = callback
        self.total = max(1, total)
        self.done = 0
        self.base = 0
        self.lock = threading.Lock()  # worker threads report too: keep ``done`` monotone

    def begin(self, size: int) -> Callable[[int], None]:
        """Start a pass worth ``size`` units; returns its ``progress(count)`` callback."""
        self.base = self.done
        limit = self.base + size

        def advance(count: int) -> None:
            self.report(min(limit, self.base + count))

        return advance

    def report(self, value: int) -> None:
        value = min(self.total, value)
        with self.lock:
            if value <= self.done:
                return
            self.done = value
            if self.callback is not None:
                self.callback(value, self.total)

    def end(self, size: int) -> None:
        self.report(self.base + size)

    def finish(self) -> None:
        self.report(self.total)
