"""Running inputs through a pipeline's stages in the calling thread, and recording it.

:class:`_Recorder` is the hot path of every offline and online timing pass: it calls each
stage on one input (or one batch), and records per input the time spent in each stage and
between stages, when it started and finished, the errors, optionally CPU time per stage,
spans and the stages' inputs and outputs, from any number of worker threads at once. It
then turns what it recorded into a :class:`~pipetune.core.runtime.result.RunResult`. The
serving loop (:mod:`.serving_loop`) calls it on every worker; the modes (:mod:`.offline`,
:mod:`.online`) decide which thread takes which input and when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel import isolation as _isolation
from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.errors import StageError
from pipetune.core.kernel.model import Pipeline
from pipetune.core.runtime.result import ItemError, OnError, RunResult, Span, StageInstrument
from pipetune.core.runtime.supervise import _Progress


class _Recorder:
    """Runs inputs through the stages and records what happened, from any worker thread.

    Per-input figures go into plain Python lists (a list store costs a fraction of a numpy
    scalar store, and this is the hot path of every timing pass); each row is written by
    one worker only, so rows need no lock. They become arrays in :meth:`result`.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        n: int,
        *,
        on_error: OnError,
        observe: int = 0,
        measure_cpu: bool = False,
        cpu_clock: str = "process",
        spans: bool = False,
        instrument: StageInstrument | None = None,
        origin: float | None = None,
    ):
        self.pipeline = pipeline
        self.stages = pipeline.stages
        self.k = len(self.stages)
        self.n = n
        self.on_error = on_error
        self.rows: list[list[float] | None] = [None] * n  # stage times, then other
        self.cpu_rows: list[list[float] | None] | None = [None] * n if measure_cpu else None
        self.start = [0.0] * n
        self.done = [0.0] * n
        self.cpu_fn = time.thread_time if cpu_clock == "thread" else time.process_time
        self.cpu_clock = cpu_clock
        self.outputs: list[Any] = [None] * n
        self.ok = [False] * n
        self.attempted = np.zeros(n, dtype=bool)
        self.errors: list[ItemError] = []
        self.observe = observe
        self.observed = Observations() if observe else None
        self.spans: list[tuple[int, int, int, str, float, float]] | None = [] if spans else None
        self.instrument = instrument
        self.lock = threading.Lock()
        self.origin = time.perf_counter() if origin is None else origin
        self.busy_s = 0.0
        self.batch_sizes: list[int] = []
        self.mark = _isolation.marker()  # --isolate: where the process is, for a crash

    def process(
        self,
        rows: Sequence[int],
        chunk: Sequence[Any],
        state: _Progress,
        worker: str = "main",
        batched: bool = False,
    ) -> None:
        """Run ``chunk`` (inputs ``rows``) through every stage, recording times and errors.

        Raises :class:`StageError` with ``on_error="stop"`` (``sys.exit()`` inside a stage
        is such an error too, never the end of the process); a ``KeyboardInterrupt``
        inside a stage propagates (the caller keeps what was recorded).
        """
        perf = time.perf_counter
        cpu_fn = self.cpu_fn if self.cpu_rows is not None else None
        instrument = self.instrument
        spans = self.spans
        origin = self.origin
        first = rows[0]
        count = len(rows)
        times = [0.0] * (self.k + 1)
        cpus = [0.0] * self.k if cpu_fn is not None else None
        watching = self._begin(rows, chunk, state)
        seen: list[tuple[str, list[Any], list[Any]]] = []
        values: list[Any] = list(chunk)
        # CPU clocks are syscalls (~1-3 us): read one per stage boundary, not two per stage.
        c0 = cpu_fn() if cpu_fn is not None else 0.0
        t_item = perf()
        state.item_since = t_item
        mark = self.mark
        for column, stage in enumerate(self.stages):
            state.stage = stage.name
            if mark is not None:
                mark(f"stage {stage.name!r}", first)
            if instrument is not None:
                instrument.before(column)
            t0 = perf()
            state.since = t0
            try:
                new_values = stage.call_batch(values) if batched else [stage(values[0])]
            except (Exception, SystemExit) as exc:
                times[column] = perf() - t0
                self._fail(rows, chunk, stage.name, exc)  # raises with on_error="stop"
                self._record_times(rows, times, cpus, t_item, perf(), batched)
                return
            if instrument is not None:
                instrument.after(column)
            t1 = perf()
            times[column] = t1 - t0
            if cpus is not None and cpu_fn is not None:
                c1 = cpu_fn()
                cpus[column] = (c1 - c0) / count
                c0 = c1
            if spans is not None:
                spans.append((first, count, column, worker, t0 - origin, t1 - origin))
            if watching:
                seen.append((stage.name, values, new_values))
            values = new_values
        if instrument is not None:
            instrument.finish(first if count == 1 else np.asarray(rows))
        end = perf()
        self._record_times(rows, times, cpus, t_item, end, batched)
        self._record_outputs(rows, values, seen if watching else None)

    def _begin(self, rows: Sequence[int], chunk: Sequence[Any], state: _Progress) -> bool:
        """Publish the call's first input on the worker's ``state`` (for the deadline) and
        mark every input of the call attempted; returns whether the call is observed."""
        state.index = rows[0]
        state.item = chunk[0]
        for row in rows:
            self.attempted[row] = True
        return self.observed is not None and rows[0] < self.observe

    def _fail(
        self, rows: Sequence[int], chunk: Sequence[Any], stage: str, exc: BaseException
    ) -> None:
        """A stage raised ``exc``: with ``on_error="stop"`` raise :class:`StageError` naming
        the stage and the call's first input; with ``"skip"`` note the error for every input
        of the call."""
        if self.on_error == "stop":
            raise StageError(stage, rows[0], chunk[0], exc) from exc
        message = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self.errors.extend(ItemError(row, stage, message) for row in rows)

    def _record_times(
        self,
        rows: Sequence[int],
        times: list[float],
        cpus: list[float] | None,
        t_item: float,
        end: float,
        batched: bool,
    ) -> None:
        """Store the stage times of one call (the glue between stages in the last column),
        its start and end, and its CPU times, for every input of the call."""
        origin = self.origin
        glue = (end - t_item) - sum(times)
        times[-1] = glue if glue > 0 else 0.0
        for row in rows:
            self.rows[row] = times
            self.start[row] = t_item - origin
            self.done[row] = end - origin
            if cpus is not None and self.cpu_rows is not None:
                self.cpu_rows[row] = cpus
        with self.lock:
            self.busy_s += end - t_item
            if batched:
                self.batch_sizes.append(len(rows))

    def _record_outputs(
        self,
        rows: Sequence[int],
        values: list[Any],
        seen: list[tuple[str, list[Any], list[Any]]] | None,
    ) -> None:
        """Keep the outputs of a call that went through every stage, and what each stage
        was given and returned when this call is observed (``seen``)."""
        for row, value in zip(rows, values, strict=True):
            self.outputs[row] = value
            self.ok[row] = True
        if seen is not None and self.observed is not None:  # only inputs that finished every stage
            with self.lock:
                self.observed.indices.extend(rows)
                for name, inputs, outputs in seen:
                    self.observed.inputs.setdefault(name, []).extend(inputs)
                    self.observed.outputs.setdefault(name, []).extend(outputs)

    def result(
        self,
        *,
        wall_s: float,
        stopped: bool,
        mode: str,
        workers: int,
        executor: str,
        settings: dict[str, Any],
        arrival_s: np.ndarray | None = None,
        item_index: np.ndarray | None = None,
    ) -> RunResult:
        # Snapshots: a worker abandoned after a deadline or Ctrl-C may still write its row.
        empty = [0.0] * (self.k + 1)
        stage_s = np.array([row or empty for row in list(self.rows)], dtype=float)
        stage_s = stage_s.reshape(self.n, self.k + 1)
        start_s = np.array(self.start, dtype=float)
        done_s = np.array(self.done, dtype=float)
        latency = done_s - (start_s if arrival_s is None else arrival_s)
        cpu = None
        if self.cpu_rows is not None:
            no_cpu = [0.0] * self.k
            per_row = np.array([row or no_cpu for row in list(self.cpu_rows)], dtype=float)
            cpu = per_row.reshape(self.n, self.k).sum(axis=0)
        spans = None
        if self.spans is not None:
            names = self.pipeline.stage_names
            spans = [
                Span(index, count, names[column], worker, t0, t1)
                for index, count, column, worker, t0, t1 in list(self.spans)
            ]
        return RunResult(
            outputs=list(self.outputs),
            ok=list(self.ok),
            latency_s=np.maximum(latency, 0.0),
            stage_s=stage_s,
            wall_s=wall_s,
            stage_names=self.pipeline.stage_names,
            errors=sorted(self.errors, key=lambda e: e.index),
            cpu_s=cpu,
            observed=self.observed,
            stopped=stopped,
            mode=mode,
            workers=workers,
            executor=executor,
            attempted=int(self.attempted.sum()),
            start_s=start_s,
            done_s=done_s,
            arrival_s=arrival_s,
            item_index=item_index,
            cpu_clock=self.cpu_clock,
            spans=spans,
            threads=settings,
            batch_sizes=list(self.batch_sizes),
            busy_s=self.busy_s,
            gpu_stage_s=self.instrument.result() if self.instrument is not None else None,
        )
