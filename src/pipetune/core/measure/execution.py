"""The execution context of a measurement: which thread ran the timed passes and under
which thread settings (torch, the native BLAS/OpenMP pools, the plugins' pools, and a
per-stage thread plan).

The same change measures very differently under another calling thread or thread count
(a two-stage ranker: 170x in a worker thread, 80x from a plain script's main thread with
one torch thread, 34x with torch's defaults). The validator therefore times offline passes
in the thread that calls it, as a plain script calls ``pipeline.run``, under the process's
own thread settings (or the ``--threads`` pin); :func:`capture` records that context, the
recipe carries it (:class:`~pipetune.core.kernel.results.ExecutionContext`), and
:func:`reconcile` — called by ``load_recipe`` — applies a pinned context to the loading
process, or warns, naming both settings, when the process differs.

A kept thread plan (``hardware.threads``) is recorded in the context's ``stages`` and
applied two ways, as each library allows:

* **around each call** (:func:`apply_stages`, through
  :func:`pipetune.core.runtime.threads.with_stage_threads`): torch's intra-op pool, the
  native BLAS/OpenMP pools threadpoolctl sees, and plugin pools marked ``per_call``
  (faiss) are set to the stage's count when the stage is called and restored after;
* **per session** (by the change's own materialize): ONNX Runtime's intra-op pool and
  spinning, OpenVINO's ``INFERENCE_NUM_THREADS``, fixed when the session is built;
* **process-wide** (:func:`apply`): a pinned count (``--threads N``), torch's inter-op
  pool (once per process), and the thread environment variables that libraries loaded
  later read at load.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.results import ExecutionContext
from pipetune.core.runtime.threads import (
    THREAD_ENV_VARS,
    stage_plan,
    thread_pools,
    thread_settings,
    with_stage_threads,
)

if TYPE_CHECKING:
    from pipetune.core.kernel.model import Pipeline

Policy = Literal["apply", "warn", "ignore"]


class ExecutionContextWarning(UserWarning):
    """A recipe's figures were measured under other thread settings than this process's."""


def calling_thread() -> str:
    """``main`` in the process's main thread, else ``caller``."""
    return "main" if threading.current_thread() is threading.main_thread() else "caller"


def native_pools() -> dict[str, int]:
    """Thread counts of the loaded native pools (OpenBLAS, MKL, OpenMP...), by library,
    from threadpoolctl when it is installed (empty otherwise)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    pools: dict[str, int] = {}
    with contextlib.suppress(Exception):
        for entry in threadpool_info():
            name = str(entry.get("internal_api") or entry.get("prefix") or "?")
            pools[name] = max(pools.get(name, 0), int(entry.get("num_threads") or 0))
    return pools


def capture(
    *,
    calling: str | None = None,
    mode: str = "offline",
    requested: int | None = None,
    stages: Mapping[str, Mapping[str, Any]] | None = None,
) -> ExecutionContext:
    """The context in force now. ``calling``: where the timed passes run (default: this
    thread); ``requested``: the pinned count, if any."""
    settings = thread_settings()
    return ExecutionContext(
        calling_thread=calling or calling_thread(),
        mode=mode,
        threads_requested=requested,
        torch_intra_op=settings.get("torch_intra_op"),
        torch_inter_op=settings.get("torch_inter_op"),
        blas=native_pools(),
        env=dict(settings.get("env") or {}),
        cpu_affinity=settings.get("cpu_affinity"),
        stages={k: dict(v) for k, v in (stages or {}).items()},
        notes=tuple(settings.get("notes") or ()),
        pools=dict(settings.get("pools") or {}),
    )


def stage_plans(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """The thread plan in force on ``pipeline``, by stage (stages without one are left
    out): what a recipe records in ``ExecutionContext.stages``."""
    plans = {}
    for stage in pipeline.stages:
        settings = stage_plan(stage)
        if settings is not None:
            plans[stage.name] = settings
    return plans


def differences(recorded: ExecutionContext, current: ExecutionContext) -> list[str]:
    """Settings that differ, each naming both: ``torch intra-op threads: 1 measured, 2
    here``. Libraries not loaded on one side are not compared."""
    out = []
    for label, name in (
        ("torch intra-op threads", "torch_intra_op"),
        ("torch inter-op threads", "torch_inter_op"),
    ):
        then, now = getattr(recorded, name), getattr(current, name)
        if then is not None and now is not None and then != now:
            out.append(f"{label}: {then} measured, {now} here")
    pools_now = current.all_pools()
    for pool, then in sorted(recorded.all_pools().items()):
        now = pools_now.get(pool)
        if now is not None and then != now:
            out.append(f"{pool} threads: {then} measured, {now} here")
    for pool, then in sorted(recorded.blas.items()):
        now = current.blas.get(pool)
        if now is not None and then != now:
            out.append(f"{pool} threads: {then} measured, {now} here")
    return out


def apply(recorded: ExecutionContext) -> list[str]:
    """Set this process's thread counts to a pinned context's; returns what could not be
    set. Libraries loaded later read the environment variables, which are set too."""
    count = recorded.threads_requested
    if count is None:
        return []
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(count)
    return [
        *_apply_torch(count, recorded.torch_inter_op),
        *_apply_plugin_pools(count),
        *_apply_native_pools(count),
    ]


def _apply_torch(count: int, inter: int | None) -> list[str]:
    """Set torch's intra-op pool, and its inter-op pool where torch still allows it (once
    per process), when torch is loaded; returns what could not be set."""
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    problems: list[str] = []
    try:
        torch.set_num_threads(count)
    except Exception as exc:
        problems.append(f"torch intra-op threads not set: {exc}")
    if inter is not None and torch.get_num_interop_threads() != inter:
        try:
            torch.set_num_interop_threads(inter)
        except Exception:
            problems.append(
                f"torch inter-op threads stay at {torch.get_num_interop_threads()} "
                f"(measured with {inter}): torch sizes that pool once per process"
            )
    return problems


def _apply_plugin_pools(count: int) -> list[str]:
    """Set every loaded plugin thread pool but torch's (set apart); returns the failures."""
    problems: list[str] = []
    for pool in thread_pools():
        if pool.name != "torch" and pool.loaded():
            try:
                pool.set(count)
            except Exception as exc:
                problems.append(f"{pool.name} threads not set: {exc}")
    return problems


def _apply_native_pools(count: int) -> list[str]:
    """Limit the native BLAS/OpenMP pools process-wide through threadpoolctl; without it,
    numpy's pool keeps its import-time size, which is reported."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=count)  # process-wide from here on, not a context
    except ImportError:
        if "numpy" in sys.modules:
            return [
                "numpy's BLAS pool is sized at import: without threadpoolctl it keeps its "
                f"count (set OPENBLAS_NUM_THREADS={count} before starting the process)"
            ]
    except Exception as exc:
        return [f"native thread pools not limited: {exc}"]
    return []


def plan_differences(recorded: ExecutionContext, pipeline: Pipeline) -> list[str]:
    """Stages whose recorded thread plan is not in force on ``pipeline``, each naming both:
    ``stage 'classify': 1 threads measured, the process's settings here``."""
    out = []
    for name, settings in sorted(recorded.stages.items()):
        if name not in pipeline.stage_names:
            continue
        now = stage_plan(pipeline.stage(name))
        if now is None or now.get("threads") != settings.get("threads"):
            here = "the process's settings" if now is None else f"{now.get('threads')} threads"
            out.append(f"stage {name!r}: {settings.get('threads')} threads measured, {here} here")
    return out


def apply_stages(recorded: ExecutionContext | None, pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with the recorded thread plan in force on every stage it names: a
    stage whose plan is missing or differs is wrapped to run its calls under the recorded
    settings (:func:`~pipetune.core.runtime.threads.with_stage_threads`). Stages the
    pipeline lacks are skipped; ``pipeline`` itself is untouched."""
    if recorded is None:
        return pipeline
    for name, settings in recorded.stages.items():
        if name not in pipeline.stage_names or not isinstance(settings.get("threads"), int):
            continue
        stage = pipeline.stage(name)
        now = stage_plan(stage)
        if now is not None and now.get("threads") == settings.get("threads"):
            continue
        pipeline = pipeline.replace(name, with_stage_threads(stage, settings))
    return pipeline


def reconcile(
    recorded: ExecutionContext | None,
    policy: Policy = "apply",
    *,
    what: str = "recipe",
    pipeline: Pipeline | None = None,
) -> list[str]:
    """Bring this process in line with ``recorded`` as ``policy`` says, and warn (an
    :class:`ExecutionContextWarning` naming both settings) where it differs.

    ``apply``: a context measured under a pin (``--threads N``) is applied; one measured
    under the measuring process's own defaults is compared only (pinning this process to
    another host's defaults would be a guess). ``warn``: compare only. ``ignore``: nothing.
    With ``pipeline``, stages whose recorded thread plan is not in force on it are named
    too (:func:`plan_differences`). Returns the warnings issued.
    """
    if policy not in ("apply", "warn", "ignore"):
        raise ConfigError(f"execution policy must be apply, warn or ignore, not {policy!r}")
    if recorded is None or policy == "ignore":
        return []
    current = capture(mode=recorded.mode)
    differ = differences(recorded, current)
    if pipeline is not None:
        differ += plan_differences(recorded, pipeline)
    if not differ:
        return []
    said = []
    if policy == "apply" and recorded.threads_requested is not None:
        problems = apply(recorded)
        message = (
            f"{what} was measured with threads pinned to {recorded.threads_requested} "
            f"({'; '.join(differ)}): applied to this process"
        )
        if problems:
            message += f", except: {'; '.join(problems)}"
    else:
        message = (
            f"{what} was measured under other thread settings than this process's "
            f"({'; '.join(differ)}): its figures may not hold here; measured with "
            f"[{recorded.describe()}], this process [{current.describe()}]"
        )
    warnings.warn(ExecutionContextWarning(message), stacklevel=3)
    said.append(message)
    return said
