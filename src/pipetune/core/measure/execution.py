"""The execution context of a measurement: which thread ran the timed passes and under
which torch / BLAS / OpenMP / faiss thread settings.

The same change measures very differently under another calling thread or thread count
(a two-stage ranker: 170x in a worker thread, 80x from a plain script's main thread with
one torch thread, 34x with torch's defaults). The validator therefore times offline passes
in the thread that calls it, as a plain script calls ``pipeline.run``, under the process's
own thread settings (or the ``--threads`` pin); :func:`capture` records that context, the
recipe carries it (:class:`~pipetune.core.kernel.results.ExecutionContext`), and
:func:`reconcile` — called by ``load_recipe`` — applies a pinned context to the loading
process, or warns, naming both settings, when the process differs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from typing import Any, Literal

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.results import ExecutionContext
from pipetune.core.runtime.threads import THREAD_ENV_VARS, thread_settings

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
        from threadpoolctl import threadpool_info  # type: ignore[import-not-found]
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
        faiss_omp=settings.get("faiss_omp"),
        blas=native_pools(),
        env=dict(settings.get("env") or {}),
        cpu_affinity=settings.get("cpu_affinity"),
        stages={k: dict(v) for k, v in (stages or {}).items()},
        notes=tuple(settings.get("notes") or ()),
    )


def differences(recorded: ExecutionContext, current: ExecutionContext) -> list[str]:
    """Settings that differ, each naming both: ``torch intra-op threads: 1 measured, 2
    here``. Libraries not loaded on one side are not compared."""
    out = []
    for label, name in (
        ("torch intra-op threads", "torch_intra_op"),
        ("torch inter-op threads", "torch_inter_op"),
        ("faiss OpenMP threads", "faiss_omp"),
    ):
        then, now = getattr(recorded, name), getattr(current, name)
        if then is not None and now is not None and then != now:
            out.append(f"{label}: {then} measured, {now} here")
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
    problems: list[str] = []
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(count)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(count)
        except Exception as exc:
            problems.append(f"torch intra-op threads not set: {exc}")
        inter = recorded.torch_inter_op
        if inter is not None and torch.get_num_interop_threads() != inter:
            try:
                torch.set_num_interop_threads(inter)
            except Exception:
                problems.append(
                    f"torch inter-op threads stay at {torch.get_num_interop_threads()} "
                    f"(measured with {inter}): torch sizes that pool once per process"
                )
    faiss = sys.modules.get("faiss")
    if faiss is not None and hasattr(faiss, "omp_set_num_threads"):
        with contextlib.suppress(Exception):
            faiss.omp_set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=count)  # process-wide from here on, not a context
    except ImportError:
        if "numpy" in sys.modules:
            problems.append(
                "numpy's BLAS pool is sized at import: without threadpoolctl it keeps its "
                f"count (set OPENBLAS_NUM_THREADS={count} before starting the process)"
            )
    except Exception as exc:
        problems.append(f"native thread pools not limited: {exc}")
    return problems


def reconcile(
    recorded: ExecutionContext | None, policy: Policy = "apply", *, what: str = "recipe"
) -> list[str]:
    """Bring this process in line with ``recorded`` as ``policy`` says, and warn (an
    :class:`ExecutionContextWarning` naming both settings) where it differs.

    ``apply``: a context measured under a pin (``--threads N``) is applied; one measured
    under the measuring process's own defaults is compared only (pinning this process to
    another host's defaults would be a guess). ``warn``: compare only. ``ignore``: nothing.
    Returns the warnings issued.
    """
    if policy not in ("apply", "warn", "ignore"):
        raise ConfigError(f"execution policy must be apply, warn or ignore, not {policy!r}")
    if recorded is None or policy == "ignore":
        return []
    current = capture(mode=recorded.mode)
    differ = differences(recorded, current)
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
