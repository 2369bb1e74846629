"""The serving runtime shared by the profiler, the validator and production start-up.

This module holds the *offline* mode (a batch job: throughput) with per-stage timing,
error policy and a hang guard. Online (open-loop arrivals through a queue and an optional
batcher) and stream modes build on the same :class:`RunResult`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pipetune.core.context import Observations
from pipetune.core.errors import ConfigError, StageError, StageTimeout, short_repr
from pipetune.core.model import Pipeline

OnError = Literal["stop", "skip"]


@dataclass(frozen=True)
class ItemError:
    index: int
    stage: str
    error: str


@dataclass
class RunResult:
    """Outputs and timings of one pass over a list of inputs.

    ``outputs[i]`` is ``None`` for an input that failed (``ok[i]`` is False). ``stage_s``
    has one row per input and one column per stage, then a last ``other`` column for glue
    time (end-to-end minus the stages), so each row sums to ``latency_s``.
    """

    outputs: list[Any]
    ok: list[bool]
    latency_s: np.ndarray
    stage_s: np.ndarray
    wall_s: float
    stage_names: tuple[str, ...]
    errors: list[ItemError] = field(default_factory=list)
    cpu_s: np.ndarray | None = None  # per stage, summed over inputs (process CPU time)
    observed: Observations | None = None
    stopped: bool = False  # interrupted (Ctrl-C): what was measured is kept

    @property
    def completed(self) -> int:
        return int(sum(self.ok))

    @property
    def throughput_rps(self) -> float:
        return self.completed / self.wall_s if self.wall_s > 0 else 0.0


class _Progress:
    """Where the worker is, so a hang can be reported with its stage and input."""

    __slots__ = ("index", "item", "stage")

    def __init__(self) -> None:
        self.stage = ""
        self.index: int | None = None
        self.item: Any = None


def run_offline(
    pipeline: Pipeline,
    items: Sequence[Any],
    *,
    batch_size: int = 1,
    on_error: OnError = "stop",
    timeout_s: float | None = None,
    observe: int = 0,
    measure_cpu: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``items`` through ``pipeline`` one input (or one batch) at a time.

    Args:
        batch_size: inputs per call; > 1 uses each stage's ``batch_fn`` (stages without one
            map ``fn``). Per-input times within a batch are the batch's time.
        on_error: ``stop`` raises :class:`StageError` naming the stage, the input and the
            exception; ``skip`` records the error and goes on.
        timeout_s: a deadline for the whole pass; a stage still running then raises
            :class:`StageTimeout` naming it (the stuck worker thread is abandoned).
        observe: keep the inputs and outputs of each stage for the first ``observe`` inputs.
        measure_cpu: also record process CPU time per stage (for GIL detection).
        progress: called with the number of inputs done after each input or batch.
    """
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be 'stop' or 'skip', not {on_error!r}")
    if batch_size < 1:
        raise ConfigError("batch_size must be >= 1")
    items = list(items)
    if timeout_s is None:
        return _run(
            pipeline, items, batch_size, on_error, observe, measure_cpu, progress, _Progress()
        )

    state = _Progress()
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["result"] = _run(
                pipeline, items, batch_size, on_error, observe, measure_cpu, progress, state
            )
        except BaseException as exc:  # re-raised in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=worker, name=f"pipetune-run-{pipeline.name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise StageTimeout(state.stage or "<start>", state.index, state.item, timeout_s)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _run(
    pipeline: Pipeline,
    items: list[Any],
    batch_size: int,
    on_error: OnError,
    observe: int,
    measure_cpu: bool,
    progress: Callable[[int], None] | None,
    state: _Progress,
) -> RunResult:
    n = len(items)
    stages = pipeline.stages
    n_stages = len(stages)
    stage_s = np.zeros((n, n_stages + 1))
    latency_s = np.zeros(n)
    cpu_s = np.zeros(n_stages) if measure_cpu else None
    outputs: list[Any] = [None] * n
    ok = [False] * n
    errors: list[ItemError] = []
    observed = Observations() if observe else None
    perf = time.perf_counter
    cpu = time.process_time
    stopped = False

    wall_start = perf()
    try:
        for start in range(0, n, batch_size):
            chunk = items[start : start + batch_size]
            values: list[Any] = chunk
            failed = False
            watching = observed is not None and start < observe
            seen_in: dict[str, list[Any]] = {}
            seen_out: dict[str, list[Any]] = {}
            t_item = perf()
            for column, stage in enumerate(stages):
                state.stage = stage.name
                state.index = start
                state.item = chunk[0]
                c0 = cpu() if cpu_s is not None else 0.0
                t0 = perf()
                try:
                    new_values = [stage(values[0])] if batch_size == 1 else stage.call_batch(values)
                except Exception as exc:
                    if on_error == "stop":
                        raise StageError(stage.name, start, chunk[0], exc) from exc
                    for offset in range(len(chunk)):
                        errors.append(
                            ItemError(start + offset, stage.name, f"{type(exc).__name__}: {exc}")
                        )
                    failed = True
                    break
                t1 = perf()
                if cpu_s is not None:
                    cpu_s[column] += cpu() - c0
                stage_s[start : start + len(chunk), column] = t1 - t0
                if watching:
                    seen_in[stage.name] = list(values)
                    seen_out[stage.name] = list(new_values)
                values = new_values
            end = perf()
            latency_s[start : start + len(chunk)] = end - t_item
            if not failed:
                for offset, value in enumerate(values):
                    outputs[start + offset] = value
                    ok[start + offset] = True
                if watching and observed is not None:  # only inputs that finished every stage
                    observed.indices.extend(range(start, start + len(chunk)))
                    for name in seen_in:
                        observed.inputs.setdefault(name, []).extend(seen_in[name])
                        observed.outputs.setdefault(name, []).extend(seen_out[name])
            if progress is not None:
                progress(min(n, start + batch_size))
    except KeyboardInterrupt:
        stopped = True
    wall_s = perf() - wall_start

    stage_s[:, n_stages] = np.maximum(latency_s - stage_s[:, :n_stages].sum(axis=1), 0.0)
    return RunResult(
        outputs=outputs,
        ok=ok,
        latency_s=latency_s,
        stage_s=stage_s,
        wall_s=wall_s,
        stage_names=pipeline.stage_names,
        errors=errors,
        cpu_s=cpu_s,
        observed=observed,
        stopped=stopped,
    )


def describe_item(item: Any) -> str:
    return short_repr(item)
