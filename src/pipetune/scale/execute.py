"""Run a group of stages over a batch of inputs inside a worker, one outcome per input.

A batch call that raises does not fail the whole batch: that stage is retried one input
at a time (through its ``fn``, as the local runtime does), so only the inputs that really
fail are reported (with the stage and the exception) and the others go on. Used by the
Ray Data workers; the local engine gets the same per-input isolation from the runtime
(:mod:`pipetune.scale.local`).

``batch_size`` is the recipe's batching (inputs per ``batch_fn`` call, 1: the stage's
``fn`` per input), never a transport detail: the same stages see the same batches on
every engine. ``threads`` > 1 runs the calls of an I/O-bound group concurrently.
``timeout_s`` is the per-input deadline (``pipetune run --timeout``): a call over it is
abandoned on its thread and its input reported as a ``TimeoutError`` of that stage; a
batch call gets the deadline times its size and, over it, is retried one input at a time,
so only a hung input is blamed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipetune.core.kernel.model import Stage


@dataclass
class GroupResult:
    """Outputs (``None`` where the input failed), failures by input position as
    ``(stage, exception type, message)``, and seconds spent per stage."""

    outputs: list[Any]
    failures: dict[int, tuple[str, str, str]] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pipetune-io")
    return pool


def run_group(
    stages: Sequence[Stage],
    items: Sequence[Any],
    *,
    batch_size: int = 1,
    threads: int = 1,
    timeout_s: float | None = None,
) -> GroupResult:
    """``items`` through ``stages`` in order; see the module docstring."""
    result = GroupResult(outputs=list(items))
    alive = list(range(len(items)))
    for stage in stages:
        if not alive:
            break
        started = time.perf_counter()
        chunks = [alive[i : i + batch_size] for i in range(0, len(alive), batch_size)]
        work = [
            _call(stage, [result.outputs[i] for i in chunk], batch_size, timeout_s)
            for chunk in chunks
        ]
        if threads > 1 and len(work) > 1:
            outcomes = list(_pool(threads).map(lambda call: call(), work))
        else:
            outcomes = [call() for call in work]
        for chunk, (values, errors) in zip(chunks, outcomes, strict=True):
            for position, value, error in zip(chunk, values, errors, strict=True):
                if error is None:
                    result.outputs[position] = value
                else:
                    result.outputs[position] = None
                    result.failures[position] = (stage.name, *error)
        alive = [i for i in alive if i not in result.failures]
        result.stage_s[stage.name] = time.perf_counter() - started
    return result


Outcome = tuple[list[Any], list[tuple[str, str] | None]]


def _call(
    stage: Stage, values: list[Any], batch_size: int, timeout_s: float | None
) -> Callable[[], Outcome]:
    def call() -> Outcome:
        if batch_size > 1:
            try:
                limit = None if timeout_s is None else timeout_s * len(values)
                return _bounded(lambda: stage.call_batch(values), limit, stage), [None] * len(
                    values
                )
            except Exception:
                pass  # one at a time below: only the inputs that fail are reported
        outputs: list[Any] = []
        errors: list[tuple[str, str] | None] = []
        for value in values:
            try:
                out = _bounded(functools.partial(stage, value), timeout_s, stage)
            except Exception as exc:
                outputs.append(None)
                errors.append((type(exc).__name__, str(exc)))
            else:
                outputs.append(out)
                errors.append(None)
        return outputs, errors

    return call


def _bounded(fn: Callable[[], Any], timeout_s: float | None, stage: Stage) -> Any:
    """``fn()``, in this thread without a deadline, else on a worker thread bounded by it."""
    if timeout_s is None:
        return fn()
    from pipetune.core.kernel import workers

    return workers.call(fn, timeout_s=timeout_s, what=f"stage {stage.name!r}")


def failing_stage(exc: BaseException) -> str | None:
    """The stage an exception came out of (the innermost :class:`Stage` call in its
    traceback), or ``None``: for callers that ran the whole pipeline and must say where it
    failed."""
    codes = {Stage.__call__.__code__, Stage.call_batch.__code__}
    found = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            stage = tb.tb_frame.f_locals.get("self")
            if isinstance(stage, Stage):
                found = stage.name
        tb = tb.tb_next
    return found
