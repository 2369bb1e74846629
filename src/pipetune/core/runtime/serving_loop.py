"""The serving loop every recorded mode shares: workers running inputs through the stages.

Offline runs (inline or on worker threads) and online runs (one request or one batch at a
time) differ only in where a worker's next work comes from: a counter over the items, an
arrival queue, a batcher. Everything around that is :class:`ServingLoop`'s: each worker's
progress (for the per-input deadline), the stop and interrupted events, the failure that
ends the run, the progress count, running one chunk of inputs through the
:class:`~pipetune.core.runtime.recorder._Recorder`, supervising the worker threads
(:func:`~pipetune.core.runtime.supervise.supervise`) and assembling the
:class:`~pipetune.core.runtime.result.RunResult`, so Ctrl-C, deadlines and errors behave
the same in every mode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel import control as _control
from pipetune.core.runtime.recorder import _Recorder
from pipetune.core.runtime.result import RunResult
from pipetune.core.runtime.supervise import Joinable, _Progress, halt, overdue, supervise


class ServingLoop:
    """The worker side of a run: ``worker_names`` workers (one progress state each)
    running chunks through ``recorder``, and what stops, supervises and reports them.

    ``progress`` is called with the number of inputs served so far (from the workers).
    The cancellation token is the calling thread's control scope's
    (:mod:`pipetune.core.kernel.control`).
    """

    def __init__(
        self,
        recorder: _Recorder,
        worker_names: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ):
        self.recorder = recorder
        self.names = tuple(worker_names)
        self.states = [_Progress() for _ in self.names]
        self.stop = threading.Event()
        self.interrupted = threading.Event()
        self.failures: list[BaseException] = []
        self.lock = threading.Lock()
        self.shared = len(self.names) > 1  # several workers: counts are taken under the lock
        self.progress = progress
        self.done = 0
        self.token = _control.current().token

    # -- the workers' side -----------------------------------------------------------------
    def serve(self, rows: Sequence[int], chunk: Sequence[Any], worker: int, batched: bool) -> bool:
        """Run ``chunk`` (inputs ``rows``) through the stages on ``worker`` and count it.

        Returns False when the run must end: a ``KeyboardInterrupt`` raised inside a stage
        (the run stops and keeps what was measured) or a failure (a :class:`StageError`
        with ``on_error="stop"``, or a bug), kept to be raised in the caller's thread.
        """
        state = self.states[worker]
        try:
            self.recorder.process(rows, chunk, state, self.names[worker], batched)
        except KeyboardInterrupt:  # raised inside a stage: stop, keep what was measured
            self.interrupted.set()
            self.stop.set()
            return False
        except BaseException as exc:  # StageError with on_error="stop", or a bug: end the run
            self.failures.append(exc)
            self.stop.set()
            return False
        state.stage = ""
        if self.progress is not None:
            self.progress(self._count(len(rows)))
        return True

    def _count(self, served: int) -> int:
        """Add ``served`` inputs to the count of inputs served so far, and return it (one
        worker needs no lock: this is the hot path of every timing pass)."""
        if not self.shared:
            self.done += served
            return self.done
        with self.lock:
            self.done += served
            return self.done

    # -- the supervisor's side -------------------------------------------------------------
    def check_deadline(self, timeout_s: float | None) -> None:
        """Raise :class:`StageTimeout` (stopping the workers) when an input has been in the
        pipeline longer than ``timeout_s``."""
        if timeout_s is None:
            return
        late = overdue(self.states, timeout_s)
        if late is not None:
            self.stop.set()
            raise late

    def watch(self, timeout_s: float | None) -> None:
        """What a thread waiting beside the workers checks (the online load generator
        between arrivals): ``KeyboardInterrupt`` once the token is cancelled, then the
        deadline (:meth:`check_deadline`)."""
        if self.token.cancelled:
            raise KeyboardInterrupt
        self.check_deadline(timeout_s)

    def supervise(
        self,
        threads: Sequence[Joinable],
        timeout_s: float | None,
        wake: Callable[[], None] | None = None,
    ) -> bool:
        """Wait for the worker ``threads`` under the per-input deadline; True when stopped
        by Ctrl-C or a cancelled token (see :meth:`halt`)."""
        return supervise(threads, lambda: self.check_deadline(timeout_s), self._stopper(wake))

    def halt(self, threads: Sequence[Joinable], wake: Callable[[], None] | None = None) -> None:
        """Ctrl-C: stop the workers (``wake`` unblocks those waiting for work), cancel the
        token, and give them the grace period to finish their current input."""
        halt(threads, self._stopper(wake))

    def _stopper(self, wake: Callable[[], None] | None) -> Callable[[], None]:
        def stop() -> None:
            self.stop.set()
            if wake is not None:
                wake()

        return stop

    # -- the result ------------------------------------------------------------------------
    def result(
        self,
        *,
        wall_s: float,
        stopped: bool,
        mode: str,
        executor: str,
        settings: dict[str, Any],
        arrival_s: np.ndarray | None = None,
        item_index: np.ndarray | None = None,
    ) -> RunResult:
        """The recorder's result (``stopped`` too when a stage raised ``KeyboardInterrupt``);
        raises the failure that ended the run instead, if any."""
        if self.failures:
            raise self.failures[0]
        return self.recorder.result(
            wall_s=wall_s,
            stopped=stopped or self.interrupted.is_set(),
            mode=mode,
            workers=len(self.names),
            executor=executor,
            settings=settings,
            arrival_s=arrival_s,
            item_index=item_index,
        )
