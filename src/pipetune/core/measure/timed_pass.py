"""One timed pass of a pipeline, and the serving model it runs under.

:class:`RuntimeSpec` says how a pass is served (offline, online arrivals at a rate or from
a trace, or stream; the pinned thread count; which thread times offline passes), and
:func:`run_pass` runs one pass of inputs that way, serving the pipeline as its
``meta["serving"]`` asks, refusing a pass cut short. The comparison times its ABBA rounds
with it; the validator's fidelity pass and plugins that measure a batch size use it too.
:func:`stage_seconds` totals a pass's stage time, counting each batch once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Trace, Workload
from pipetune.core.runtime.offline import RunResult, run_offline
from pipetune.core.runtime.serving import ServingOptions


@dataclass(frozen=True)
class RuntimeSpec:
    """The serving model both sides of a comparison run under (the same for both).

    ``mode``: ``offline`` (inputs back to back: throughput), ``online`` (open-loop
    arrivals at ``rate`` or from ``trace``, through the runtime's queue and batcher) or
    ``stream``. ``threads``: the thread count pinned for both sides (torch intra-op,
    OpenMP/BLAS, faiss; :func:`pipetune.core.runtime.threads.pin_threads`); ``None`` freezes the
    count in force, so a library a candidate loads mid-run gets the same count too.
    ``calling_thread``: ``caller`` times offline passes in the thread that calls (as a
    plain script calls ``pipeline.run``); ``worker`` on a runtime worker thread.
    """

    mode: str = "offline"
    rate: float | None = None
    trace: Trace | None = None
    threads: int | None = None
    seed: int = 0
    calling_thread: str = "caller"

    @classmethod
    def from_workload(cls, workload: Workload, **overrides: Any) -> RuntimeSpec:
        values: dict[str, Any] = {
            "mode": workload.mode,
            "rate": workload.rate,
            "trace": workload.trace,
            "seed": workload.seed,
        }
        values.update(overrides)
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "rate": self.rate,
            "trace": None if self.trace is None else len(self.trace.arrivals_s),
            "threads": self.threads,
            "seed": self.seed,
            "calling_thread": self.calling_thread,
        }


def run_pass(
    pipeline: Pipeline,
    items: Sequence[Any],
    runtime: RuntimeSpec,
    *,
    timeout_s: float | None = None,
    spans: bool = False,
    inline: bool = False,
) -> RunResult:
    """One pass of ``items`` through ``pipeline`` under ``runtime``, serving the pipeline
    as its ``meta["serving"]`` says (batch size, batching delay). Raises
    :class:`~pipetune.core.kernel.errors.StageError` (or ``StageTimeout``) naming the stage.

    ``inline``: offline, run in the calling thread (no deadline: ``timeout_s`` is not
    enforced) rather than on a worker thread under it.

    Online, both sides of a comparison get the same arrival process: the same rate (or
    trace) and the same seed, so the same requests arrive at the same offsets. A pass cut
    short (Ctrl-C, a cancelled token) raises
    :class:`~pipetune.core.kernel.control.Cancelled`: a partial pass is never measured.
    """
    return control.complete(
        _run_pass(pipeline, items, runtime, timeout_s=timeout_s, spans=spans, inline=inline)
    )


def _run_pass(
    pipeline: Pipeline,
    items: Sequence[Any],
    runtime: RuntimeSpec,
    *,
    timeout_s: float | None,
    spans: bool,
    inline: bool,
) -> RunResult:
    serving = ServingOptions.of(pipeline)
    if runtime.mode == "offline":
        return run_offline(
            pipeline,
            items,
            batch_size=serving.batch_size,
            on_error="stop",
            timeout_s=None if inline else timeout_s,
            spans=spans,
        )
    if runtime.mode in ("online", "stream"):
        run = _open_loop_runner(runtime, serving)
        return run(
            pipeline,
            items,
            rate=runtime.rate,
            trace=runtime.trace,
            seed=runtime.seed,
            on_error="stop",
            timeout_s=timeout_s,
            spans=spans,
        )
    raise ConfigError(f"runtime mode must be offline, online or stream, not {runtime.mode!r}")


def _open_loop_runner(runtime: RuntimeSpec, serving: ServingOptions) -> Callable[..., RunResult]:
    """The runtime of an online or stream pass (online with the pipeline's batching), once
    the runtime has arrivals to replay: a rate or a trace."""
    if runtime.rate is None and runtime.trace is None:
        raise ConfigError(f"{runtime.mode} mode needs an arrival rate or a trace")
    if runtime.mode == "stream":
        from pipetune.core.runtime.stream import run_stream

        return run_stream
    from pipetune.core.runtime.online import run_online

    return partial(run_online, max_batch=serving.batch_size, max_wait_ms=serving.max_delay_ms)


def stage_seconds(result: RunResult, batch_size: int) -> dict[str, float]:
    """Total seconds each stage spent on a pass. Inputs run in one batch share one stage
    time (the runtime writes it on every input of the batch), so count it once.

    A batch is recognized by its inputs' shared service start and end; only without those
    times does it fall back to consecutive runs of ``batch_size`` rows (an online batcher
    forms batches of varying size from whatever has arrived, so rows are not in step)."""
    if result.stage_s.size == 0:
        return {name: 0.0 for name in result.stage_names}
    rows = result.stage_s
    start, done = result.start_s, result.done_s
    if start is not None and done is not None and len(start) == len(done) == len(rows):
        _, first = np.unique(np.stack([start, done], axis=1), axis=0, return_index=True)
        rows = rows[np.sort(first)]
    elif batch_size > 1:
        rows = rows[::batch_size]
    totals = rows.sum(axis=0)
    return {name: float(totals[i]) for i, name in enumerate(result.stage_names)}
