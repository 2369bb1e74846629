"""Chrome trace export of stage spans."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Stage, Trace
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.online import run_online
from pipetune.core.runtime.trace import chrome_trace, write_chrome_trace


def nap(x: int) -> int:
    time.sleep(0.002)
    return x


PIPELINE = Pipeline("traced", (Stage("first", nap), Stage("second", lambda x: x)))


def test_offline_spans_become_complete_events_per_worker(tmp_path: Path) -> None:
    result = run_offline(PIPELINE, list(range(6)), workers=2, spans=True)
    path = write_chrome_trace(result, tmp_path / "sub" / "t.json", name="demo")
    data = json.loads(path.read_text())
    events = data["traceEvents"]
    stages = [e for e in events if e["ph"] == "X"]
    assert len(stages) == 12
    assert {e["name"] for e in stages} == {"first", "second"}
    assert all(e["dur"] > 0 and e["ts"] >= 0 for e in stages)
    assert sorted({e["args"]["input"] for e in stages}) == list(range(6))
    threads = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert threads <= {"worker-0", "worker-1"} and threads
    process = next(e for e in events if e["name"] == "process_name")
    assert process["args"]["name"].startswith("demo [offline, 2 worker(s)]")
    # Durations match what the run measured.
    first = next(e for e in stages if e["name"] == "first" and e["args"]["input"] == 0)
    assert first["dur"] == pytest.approx(result.stage_s[0, 0] * 1e6, rel=1e-3, abs=1)


def test_online_runs_add_request_lifetimes_and_queue_waits() -> None:
    result = run_online(PIPELINE, [1, 2, 3], trace=Trace((0, 0, 0)), spans=True)
    events = chrome_trace(result)["traceEvents"]
    begins = [e for e in events if e["ph"] == "b" and e["name"].startswith("request")]
    ends = [e for e in events if e["ph"] == "e" and e["name"].startswith("request")]
    assert len(begins) == len(ends) == 3
    queued = [e for e in events if e["name"] == "queued"]
    assert len(queued) >= 2  # the 2nd and 3rd waited behind the 1st


def test_several_runs_are_several_processes() -> None:
    runs = [run_offline(PIPELINE, [1], spans=True) for _ in range(2)]
    events = chrome_trace(runs)["traceEvents"]
    assert {e["pid"] for e in events} == {1, 2}


def test_a_run_without_spans_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="spans=True"):
        chrome_trace(run_offline(PIPELINE, [1]))


def test_spans_are_off_by_default() -> None:
    assert run_offline(PIPELINE, [1]).spans is None
