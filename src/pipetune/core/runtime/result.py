"""What a run returns, whatever its mode: :class:`RunResult` and its parts.

Offline, online and stream runs all report through one result type, so the profiler, the
validator and the reports read every mode the same way. This module owns that type, the
per-input records it carries (:class:`ItemError`, :class:`Span`), the error policy a run
is given (:data:`OnError`) and the optional per-stage timing hooks a run calls
(:class:`StageInstrument`); it runs nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from pipetune.core.kernel.context import Observations

OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class ItemError:
    index: int
    stage: str
    error: str


@dataclass(frozen=True)
class Span:
    """One stage call: input ``index`` (and the ``count - 1`` inputs batched with it) in
    ``stage`` on ``worker``, from ``start_s`` to ``end_s`` (seconds since the run started)."""

    index: int
    count: int
    stage: str
    worker: str
    start_s: float
    end_s: float


@dataclass
class RunResult:
    """Outputs and timings of one run over a list of inputs (any mode).

    ``outputs[i]`` is ``None`` for an input that failed or was never run (``ok[i]`` is
    False). ``stage_s`` has one row per input and one column per stage, then a last
    ``other`` column for glue time, so each row sums to the *service* time of the input:
    in offline mode that is ``latency_s``; in online and stream modes
    ``latency_s = queue_s + stage_s.sum(axis=1)`` (latency counts from arrival).
    Times within a batch are the batch's. ``start_s``, ``done_s`` and ``arrival_s`` are
    seconds since the run started.
    """

    outputs: list[Any]
    ok: list[bool]
    latency_s: np.ndarray
    stage_s: np.ndarray
    wall_s: float
    stage_names: tuple[str, ...]
    errors: list[ItemError] = field(default_factory=list)
    cpu_s: np.ndarray | None = None  # per stage, summed over inputs (see cpu_clock)
    observed: Observations | None = None
    stopped: bool = False  # interrupted (Ctrl-C): what was measured is kept
    # -- added with the online and stream modes (all optional) --------------------------
    mode: str = "offline"
    workers: int = 1
    executor: str = "inline"  # inline (calling thread), thread, process
    attempted: int = 0  # inputs whose processing started
    start_s: np.ndarray | None = None  # service start per input
    done_s: np.ndarray | None = None  # completion per input
    arrival_s: np.ndarray | None = None  # scheduled arrival per request (online, stream)
    item_index: np.ndarray | None = None  # which workload item each row is (online cycles)
    cpu_clock: str = "process"  # process CPU (one worker) or the calling thread's CPU
    spans: list[Span] | None = None
    threads: dict[str, Any] = field(default_factory=dict)  # thread settings in force
    batch_sizes: list[int] = field(default_factory=list)  # online batcher: each batch's size
    busy_s: float = 0.0  # worker-seconds spent serving (online utilization)
    startup_s: float = 0.0  # process executor: spawning workers and building pipelines
    gpu_stage_s: np.ndarray | None = None  # per input and stage, CUDA-event time
    first_output_s: np.ndarray | None = None  # stream: first output per request
    output_gaps_s: np.ndarray | None = None  # stream: time per output between output events
    online: Any = None  # pipetune.core.runtime.online_stats.OnlineStats
    stream: Any = None  # pipetune.core.runtime.stream_stats.StreamStats
    # one offline worker: seconds its thread was runnable but waiting for a CPU (the
    # host's contention, Linux only)
    runqueue_wait_s: float | None = None

    @property
    def completed(self) -> int:
        return int(sum(self.ok))

    @property
    def throughput_rps(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def queue_s(self) -> np.ndarray:
        """Time each input waited before service (zeros offline)."""
        return np.maximum(self.latency_s - self.stage_s.sum(axis=1), 0.0)

    @property
    def ok_mask(self) -> np.ndarray:
        return np.asarray(self.ok, dtype=bool)


class StageInstrument(Protocol):
    """Optional per-stage hooks (CUDA event timing). Single worker only.

    ``before(column)`` runs just before the stage's start timestamp, ``after(column)``
    after it returns and before its end timestamp (a device synchronize belongs there, so
    the wall time covers the GPU work), ``finish(rows)`` after the last stage of an input
    or batch, and ``result()`` at the end of the run (per-row, per-stage seconds or None).
    """

    def before(self, column: int) -> None: ...

    def after(self, column: int) -> None: ...

    def finish(self, rows: Any) -> None: ...

    def result(self) -> np.ndarray | None: ...
