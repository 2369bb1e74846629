"""The local engine: ``pipetune run --engine local``, on the existing offline runtime.

Inputs go through :func:`pipetune.core.runtime.offline.run_offline` (threads, or spawned
processes that rebuild the pipeline from the job's TARGET and recipe) in chunks of about
:data:`CHUNK_SECONDS` of work, and each chunk's results are written before the next starts:
a crash loses at most one chunk, and Ctrl-C keeps everything finished. Errors are recorded
per input (``on_error="skip"``); when the recipe batches, the inputs of a batch that failed
are run again one at a time, so each gets its own outcome, not its batch-mate's error.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.model import Pipeline
from pipetune.scale.collect import Collector
from pipetune.scale.job import ENV_FACTORY, JOB_ENV, JobSpec
from pipetune.scale.rows import InputFile, InputRow, RowOptions, read_file

#: About how much work each chunk holds (threads); processes start a pool per chunk.
CHUNK_SECONDS = 10.0
PROCESS_CHUNK_SECONDS = 60.0
MAX_CHUNK = 50_000


def run_local(
    pipeline: Pipeline,
    files: Sequence[InputFile],
    options: RowOptions,
    collector: Collector,
    *,
    job: JobSpec | None = None,
    workers: int = 1,
    executor: str = "thread",
    batch: int = 1,
) -> bool:
    """Run every row of ``files`` through ``pipeline``; returns True when interrupted."""
    seconds = PROCESS_CHUNK_SECONDS if executor == "process" else CHUNK_SECONDS
    size = [max(batch * workers * 4, 64)]  # grows to about `seconds` of work per chunk
    runner = _ChunkRunner(pipeline, collector, workers, executor)
    with _job_environment(job if executor == "process" else None):
        for file in files:
            rows = read_file(file, options)
            collector.add((), malformed=[row for row in rows if not row.ok])
            for chunk in _chunks([row for row in rows if row.ok], size):
                started = time.perf_counter()
                stopped = runner.run(chunk, batch)
                if stopped:
                    return True
                rate = len(chunk) / max(time.perf_counter() - started, 1e-6)
                grown = max(batch * workers, min(MAX_CHUNK, int(rate * seconds)))
                size[0] = max(batch, grown // batch * batch)
    return False


def _chunks(rows: list[InputRow], size: list[int]) -> Iterator[list[InputRow]]:
    """Consecutive chunks of ``rows``, each ``size[0]`` long when it is taken."""
    start = 0
    while start < len(rows):
        count = size[0]
        yield rows[start : start + count]
        start += count


@dataclass(frozen=True)
class _ChunkRunner:
    """Runs one chunk of rows at a time through ``pipeline`` on the offline runtime
    (``workers`` threads or processes) and adds its results to ``collector``."""

    pipeline: Pipeline
    collector: Collector
    workers: int
    executor: str

    def run(self, chunk: list[InputRow], batch: int) -> bool:
        """Run ``chunk``; an input over the per-input deadline is an error row of its stage
        and the rest of the chunk runs again without it (one input per call from then on, so
        only the hung input is blamed; inputs finished before the hang run twice)."""
        from pipetune.core.kernel.errors import StageTimeout

        todo = list(chunk)
        while todo:
            try:
                return self._rows(todo, batch)
            except StageTimeout as late:
                if late.index is None or not 0 <= late.index < len(todo):
                    raise
                row = todo.pop(late.index)
                self.collector.add([], [_timeout_row(row, late)])
                batch = 1
        return False

    def _rows(self, chunk: list[InputRow], batch: int) -> bool:
        """Run ``chunk`` in batches of ``batch``; the inputs of a batch that failed run
        again one at a time, so each gets its own outcome."""
        result = self._offline([row.value for row in chunk], batch)
        failed = [error.index for error in result.errors]
        if batch > 1 and failed and not result.stopped:
            again = self._offline([chunk[i].value for i in failed], 1)
            for position, index in enumerate(failed):
                result.outputs[index] = again.outputs[position]
                result.ok[index] = again.ok[position]
            errors = [(failed[e.index], e) for e in again.errors]
        else:
            errors = [(e.index, e) for e in result.errors]
        _collect(self.collector, chunk, result, errors, batch)
        return bool(result.stopped)

    def _offline(self, items: list[Any], batch: int) -> Any:
        """``items`` through the offline runtime, errors recorded per input."""
        from pipetune.core.runtime.offline import run_offline

        process = self.executor == "process"
        return run_offline(
            self.pipeline,
            items,
            batch_size=batch,
            on_error="skip",
            workers=self.workers,
            executor="process" if process else "thread",
            factory=ENV_FACTORY if process else None,
        )


def _timeout_row(row: InputRow, late: Any) -> dict[str, Any]:
    return {
        "key": row.key,
        "source": row.source,
        "stage": late.stage,
        "exception": "TimeoutError",
        "error": f"no result after {late.timeout_s:g} s (--timeout); abandoned on its thread",
    }


def _collect(
    collector: Collector, chunk: list[InputRow], result: Any, errors: list[Any], batch: int
) -> None:
    finished = [
        (row.key, row.source, result.outputs[i]) for i, row in enumerate(chunk) if result.ok[i]
    ]
    failed = []
    for index, error in errors:
        exception, _, message = error.error.partition(": ")
        row = chunk[index]
        failed.append(
            {
                "key": row.key,
                "source": row.source,
                "stage": error.stage,
                "exception": exception,
                "error": message,
            }
        )
    totals = result.stage_s.sum(axis=0) / max(1, batch)  # a batch's rows share its time
    collector.add_stage_seconds(dict(zip(result.stage_names, totals.tolist(), strict=False)))
    collector.add(finished, failed)


@contextlib.contextmanager
def _job_environment(job: JobSpec | None) -> Iterator[None]:
    """Spawned workers read the job from the environment (they build the pipeline with
    its recipe themselves)."""
    if job is None:
        yield
        return
    previous = os.environ.get(JOB_ENV)
    os.environ[JOB_ENV] = job.to_json()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(JOB_ENV, None)
        else:
            os.environ[JOB_ENV] = previous
