"""The final re-measurement in a fresh Python process, where the user will run the recipe.

The loop's own process is not where a recipe runs: by the end of a run its heap is large
and warm, its caches hold what tuning touched, and a pipeline that maps and unmaps big
temporaries on every call (a full-catalog ranker: tens of MB per request) can run there
markedly faster than in a plain script or a new service, where glibc hands those pages
back and faults them in again each call. The speedup reported would then not be the one
the user measures.

So when the loop knows how to build the pipeline again (``factory``: the TARGET's
``package.module:attr`` or ``path/file.py:attr``, a demo's factory), the final side-by-side
comparison runs in a new interpreter: it builds the original from the factory, applies
the recipe with :func:`~pipetune.core.loop.recipes.load_recipe` (its recorded thread
settings included), and runs :func:`~pipetune.core.measure.comparison.compare` on the
held-out inputs with the loop's settings. The held-out inputs travel pickled, so both
processes time the same inputs. Anything that keeps it from running (inputs that cannot
be pickled, a factory that fails, a plugin missing there) is a
:class:`FreshProcessError` saying why; the caller then measures in its own process and
says so.

Run as ``python -m pipetune.core.loop.fresh_process JOB``: the job file holds a pickled
:class:`FreshJob` and the inputs; the result (a pickled comparison or an error) goes to
``JOB.out``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel import control
from pipetune.core.kernel.errors import PipetuneError
from pipetune.core.measure.comparison import CompareSettings, compare
from pipetune.core.measure.comparison_result import Comparison
from pipetune.core.measure.timed_pass import RuntimeSpec

#: Seconds a child gets to stop after SIGTERM before it is killed.
STOP_GRACE_S = 2.0
#: Lines of the child's output quoted when it fails.
TAIL_LINES = 12


class FreshProcessError(PipetuneError):
    """The fresh process could not measure; the message says why."""


@dataclass(frozen=True)
class FreshJob:
    """What the fresh process needs besides the inputs: how to build the original, the
    recipe to apply to it, and how to compare them."""

    factory: str
    recipe: str
    artifacts: str
    metric: str
    runtime: RuntimeSpec
    settings: CompareSettings
    sys_path: tuple[str, ...] = ()
    item_timeout_s: float | None = None  # the run's per-input deadline, kept in the child


@dataclass(frozen=True)
class FreshResult:
    """The fresh process's comparison, and how long the process took in all."""

    comparison: Comparison
    seconds: float


def compare_in_fresh_process(
    job: FreshJob,
    items: Sequence[Any],
    *,
    folder: Path,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> FreshResult:
    """Run ``job`` on ``items`` in a new interpreter and return its comparison.

    ``folder``: where the job, its output and the child's log go (the caller removes
    it). ``env``: the child's environment (default: this process's). Ctrl-C or a
    cancelled control scope stops the child and propagates; any other failure raises
    :class:`FreshProcessError` with the reason and the end of the child's output.
    """
    folder.mkdir(parents=True, exist_ok=True)
    job_path = folder / "fresh-process.job"
    out_path = job_path.with_suffix(".out")
    log_path = job_path.with_suffix(".log")
    try:  # the inputs apart: the child unpickles them once the factory's imports are done
        inputs = pickle.dumps(list(items), protocol=pickle.HIGHEST_PROTOCOL)
        payload = pickle.dumps((job, inputs), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # any object may refuse pickling, in any way
        raise FreshProcessError(
            f"the held-out inputs cannot be sent to a new process ({type(exc).__name__}: {exc})"
        ) from None
    job_path.write_bytes(payload)
    out_path.unlink(missing_ok=True)
    started = time.perf_counter()
    with log_path.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, "-m", __name__, str(job_path)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # Ctrl-C reaches this process, which stops the child
        )
        log(f"measuring in a fresh process (pid {child.pid}): {job.factory} with the recipe")
        _wait(child)
    seconds = time.perf_counter() - started
    result = _read(out_path, log_path, child.returncode)
    job_path.unlink(missing_ok=True)
    return FreshResult(result["comparison"], seconds)


def _wait(child: subprocess.Popen[bytes]) -> None:
    """Wait for ``child``; on Ctrl-C or a cancelled control scope, stop it and re-raise.
    (A stage that hangs in the child is stopped there, by the run's per-input deadline.)"""
    try:
        while child.poll() is None:
            control.check()
            time.sleep(0.1)
    except BaseException:
        _stop(child)
        raise


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _read(out_path: Path, log_path: Path, returncode: int | None) -> dict[str, Any]:
    """The child's result, or :class:`FreshProcessError` with its reason and output."""
    result: dict[str, Any] | None = None
    if out_path.exists():
        try:
            result = pickle.loads(out_path.read_bytes())
        except Exception as exc:  # a truncated or foreign file
            raise FreshProcessError(f"its result {out_path} is unreadable: {exc}") from None
        out_path.unlink(missing_ok=True)
    if result is not None and "comparison" in result:
        return result
    why = (result or {}).get("error") or f"it exited with code {returncode} and no result"
    tail = _tail(log_path)
    raise FreshProcessError(why + (f"; its output ended:\n{tail}" if tail else ""))


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-TAIL_LINES:])


# -- the child --------------------------------------------------------------------------------


def _child(job_path: Path) -> int:
    """Build, apply the recipe, compare; write the result (or the error) next to the job."""
    out_path = job_path.with_suffix(".out")
    try:
        job, inputs = pickle.loads(job_path.read_bytes())
        result = _measure(job, inputs)
    except PipetuneError as exc:
        _write(out_path, {"error": str(exc)})
        return 1
    except Exception as exc:  # the user's factory or pipeline: say what, keep the traceback
        import traceback

        traceback.print_exc()
        _write(out_path, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _write(out_path, result)
    return 0


def _measure(job: FreshJob, inputs: bytes) -> dict[str, Any]:
    from pipetune.core.loop.recipes import load_recipe
    from pipetune.core.runtime.processes import resolve_factory

    sys.path[:0] = [entry for entry in job.sys_path if entry not in sys.path]
    original = resolve_factory(job.factory)
    items = pickle.loads(inputs)
    final = load_recipe(original, job.recipe, artifacts_dir=job.artifacts)
    with control.scope(item_timeout_s=job.item_timeout_s):  # the same deadline as the run's
        comparison = compare(
            original, final, items, metric=job.metric, runtime=job.runtime, settings=job.settings
        )
    return {"comparison": comparison}


def _write(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
