"""The optimize loop: profile, propose, try the best first, keep what is proven, repeat.

::

    profile ─► plan (ranked proposals) ─► try the best: tune ─► materialize ─► validate
       ▲                                        │ rejected: try the next one
       └──────── accepted: re-profile ◄─────────┘ (the bottleneck moves)

Greedy by design: after each accepted change the pipeline is profiled again and the
plugins propose again, because the best next change depends on where the time goes *now*.
The loop stops when the requirements hold, when nothing is left worth trying, or when the
budget (``max_trials``, ``time_budget_s``) is spent; it keeps the best pipeline found
either way (every accepted change was proven faster, so the last one is the best), and
re-measures it side by side against the original. Every finished trial is written to the
run store the moment it completes; a run interrupted with Ctrl-C keeps them and still
produces its report.

This module is the public entry: :func:`optimize` checks its arguments, opens the run
store and starts one :class:`~pipetune.core.loop.run.OptimizeRun`; the budgets are
:class:`~pipetune.core.loop.settings.LoopSettings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.loop.recording import open_store
from pipetune.core.loop.run import OptimizeRun
from pipetune.core.loop.settings import LoopSettings
from pipetune.core.loop.store import RunStore
from pipetune.core.measure.timed_pass import RuntimeSpec
from pipetune.core.report.model import Report

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

__all__ = ["EXIT_REQUIREMENTS_UNMET", "LoopSettings", "Optimized", "optimize"]

#: CLI exit code when the loop finished but the requirements still do not hold.
EXIT_REQUIREMENTS_UNMET = 3


class Optimized(NamedTuple):
    """What :func:`optimize` returns: unpack as ``pipeline, report = optimize(...)``."""

    pipeline: Pipeline
    report: Report


def optimize(
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements | None = None,
    *,
    pm: PipetunePluginManager | None = None,
    settings: LoopSettings | None = None,
    max_trials: int | None = None,
    time_budget_s: float | None = None,
    store: RunStore | str | Path | bool | None = None,
    target: str | None = None,
    runtime: RuntimeSpec | None = None,
    log: Callable[[str], None] | None = None,
    baseline_outputs: Sequence[Any] | None = None,
    factory: str | None = None,
) -> Optimized:
    """Optimize ``pipeline`` on ``workload`` for ``requirements``.

    Returns ``(optimized pipeline, report)``. ``pipeline`` itself is never modified.

    Args:
        pm: the plugin manager (default: every installed plugin).
        settings: budgets and validator settings; ``max_trials``/``time_budget_s``
            override the ones in it.
        store: where to record the run: a :class:`RunStore`, a folder, ``None`` for the
            default (``.pipetune`` or ``$PIPETUNE_HOME``), or ``False`` not to record it
            (artifacts then go to a ``.pipetune/artifacts`` folder all the same).
        target: how the pipeline was named on the command line, stored with the run.
        runtime: the serving model to measure under (default: the workload's mode).
        log: progress messages.
        baseline_outputs: the original pipeline's outputs, one per workload input, when
            they are already known (a demo caches its slow baseline's outputs at set-up);
            fidelity is then measured against them instead of re-running the original.
        factory: how to build ``pipeline`` again in a new process (``package.module:attr``
            or ``path/to/file.py:attr``: a Pipeline or a function returning one). With it,
            the final side-by-side re-measurement runs in a fresh process that builds the
            pipeline and loads the recipe, as the user's own script will
            (:mod:`pipetune.core.loop.fresh_process`); without it, in this process, which
            the report says.
    """
    from pipetune.core.kernel.manager import get_plugin_manager

    if not isinstance(pipeline, Pipeline):
        raise ConfigError(f"optimize needs a pipetune Pipeline, not {type(pipeline).__name__}")
    if not isinstance(workload, Workload):
        raise ConfigError(f"optimize needs a pipetune Workload, not {type(workload).__name__}")
    requirements = requirements or Requirements()
    settings = settings or LoopSettings()
    if max_trials is not None or time_budget_s is not None:
        settings = dataclasses.replace(
            settings,
            max_trials=settings.max_trials if max_trials is None else max_trials,
            time_budget_s=settings.time_budget_s if time_budget_s is None else time_budget_s,
        )
    workload.require_items()
    if baseline_outputs is not None and len(baseline_outputs) != len(workload.items):
        raise ConfigError(
            f"{len(baseline_outputs)} baseline outputs for a workload of {len(workload.items)} "
            "inputs: give one output per input"
        )
    pm = pm or get_plugin_manager()
    run_store, owns_store = open_store(store)
    try:
        loop = OptimizeRun(
            pm=pm,
            original=pipeline,
            workload=workload,
            requirements=requirements,
            settings=settings,
            store=run_store,
            target=target,
            runtime=runtime or RuntimeSpec.from_workload(workload),
            log=log or (lambda message: None),
            baseline_outputs=baseline_outputs,
            factory=factory,
        )
        # the caller's token (or a new one); one per-input deadline for every run
        with control.scope(item_timeout_s=settings.stage_timeout_s):
            return Optimized(*loop.run())
    finally:
        if owns_store and run_store is not None:
            run_store.close()
