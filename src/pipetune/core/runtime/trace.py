"""Export a run's stage spans as a Chrome trace (opens in Perfetto and chrome://tracing).

Record spans by running with ``spans=True`` (``run_offline``, ``run_online``,
``run_stream``, or ``profile(..., chrome_trace=path)``); recording costs one tuple per stage
call and is off by default. Then::

    from pipetune.core.runtime.trace import write_chrome_trace
    write_chrome_trace(result, "run.trace.json")   # open it at https://ui.perfetto.dev

Layout: one process per run, one track (thread) per worker, one complete event (``"X"``)
per stage call, named after the stage, with the input index (and batch size) in ``args``.
Online and stream runs add a ``requests`` track of asynchronous events: each request from
its arrival to its completion, with its queue wait (and, in stream mode, its first output)
marked, so queueing is visible next to the work.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.runtime.result import RunResult


def chrome_trace(
    results: RunResult | Sequence[RunResult], *, name: str = "pipetune"
) -> dict[str, Any]:
    """The Chrome trace-event JSON object for one run or several (one process each)."""
    runs = [results] if isinstance(results, RunResult) else list(results)
    events: list[dict[str, Any]] = []
    for pid, run in enumerate(runs, start=1):
        if run.spans is None:
            raise ConfigError(
                "this run recorded no spans: run it with spans=True to export a trace"
            )
        label = f"{name} [{run.mode}, {run.workers} worker(s)]"
        events.append(_meta("process_name", pid, 0, label))
        tids: dict[str, int] = {}
        for span in run.spans:
            tid = tids.get(span.worker)
            if tid is None:
                tid = tids[span.worker] = len(tids) + 1
                events.append(_meta("thread_name", pid, tid, span.worker))
            args: dict[str, Any] = {"input": span.index}
            if span.count > 1:
                args["batch"] = span.count
            events.append(
                {
                    "name": span.stage,
                    "cat": "stage",
                    "ph": "X",
                    "ts": _us(span.start_s),
                    "dur": max(_us(span.end_s) - _us(span.start_s), 0.001),
                    "pid": pid,
                    "tid": tid,
                    "args": args,
                }
            )
        if run.arrival_s is not None and run.done_s is not None:
            events.extend(_requests(run, pid))
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"source": "pipetune"}}


def write_chrome_trace(
    results: RunResult | Sequence[RunResult], path: str | Path, *, name: str = "pipetune"
) -> Path:
    """Write :func:`chrome_trace` to ``path`` (JSON) and return the path."""
    path = Path(path)
    data = chrome_trace(results, name=name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, separators=(",", ":")))
    except OSError as exc:
        raise ConfigError(f"cannot write trace {path}: {exc.strerror}") from None
    return path


def _requests(run: RunResult, pid: int) -> list[dict[str, Any]]:
    """Async events on a 'requests' track: arrival -> completion, with the queue wait."""
    assert run.arrival_s is not None and run.done_s is not None
    events: list[dict[str, Any]] = [_meta("thread_name", pid, 0, "requests")]
    queue = run.queue_s
    first_output = run.first_output_s
    for row, ok in enumerate(run.ok):
        if row >= len(run.arrival_s):
            break
        arrival = float(run.arrival_s[row])
        done = float(run.done_s[row])
        if not math.isfinite(done) or done < arrival:
            continue
        common = {"cat": "request", "id": row, "pid": pid, "tid": 0}
        name = f"request {row}" + ("" if ok else " (failed)")
        events.append({**common, "name": name, "ph": "b", "ts": _us(arrival)})
        wait = float(queue[row])
        if wait > 0:
            events.append({**common, "name": "queued", "ph": "b", "ts": _us(arrival)})
            events.append({**common, "name": "queued", "ph": "e", "ts": _us(arrival + wait)})
        if first_output is not None and math.isfinite(first_output[row]):
            events.append(
                {**common, "name": "first output", "ph": "n", "ts": _us(first_output[row])}
            )
        events.append({**common, "name": name, "ph": "e", "ts": _us(done)})
    return events


def _meta(kind: str, pid: int, tid: int, name: str) -> dict[str, Any]:
    return {"name": kind, "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}}


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)
