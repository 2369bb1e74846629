"""The monitor wrapper: same results, exact counts from many threads, errors by stage and
type, the sampled trace, exports."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pipetune import Pipeline, Stage, Trace
from pipetune.core.kernel.errors import ConfigError
from pipetune.core.loop.recipes import make_recipe
from pipetune.monitor import Monitor, load_export
from tests.monitor.conftest import digest


def test_results_match_the_pipeline_and_the_pipeline_is_untouched(toy, weights) -> None:
    before = digest(weights)
    monitored = Monitor(toy)
    for x in range(50):
        assert monitored(x / 7) == toy.run(x / 7)
    assert monitored.run_batch([1.0, 2.0]) == toy.run_batch([1.0, 2.0])
    assert digest(weights) == before
    assert monitored.pipeline is toy


def test_counts_and_histograms(toy) -> None:
    monitored = Monitor(toy)
    for x in range(30):
        monitored(float(x))
    monitored.run_batch([1.0, 2.0, 3.0])
    snap = monitored.snapshot()
    assert snap.ok == 33 and snap.failed == 0
    assert snap.latency.count == 33
    assert snap.stage_latency["scale"].count == 33
    assert snap.stage_latency["check"].count == 33
    # end to end covers both stages
    assert snap.latency.sum_ns >= snap.stage_latency["scale"].sum_ns
    assert snap.window_s > 0 and snap.active_s > 0
    assert snap.latency.percentiles_ms()["p50"] > 0


def test_errors_are_counted_by_stage_and_type_and_reraised(toy) -> None:
    monitored = Monitor(toy)
    with pytest.raises(ValueError, match="negative"):
        monitored(-1.0)
    with pytest.raises(OverflowError):
        monitored(2e6)
    with pytest.raises(ValueError):
        monitored(-2.0)
    monitored(1.0)
    snap = monitored.snapshot()
    assert snap.ok == 1 and snap.failed == 3
    assert snap.errors == {"check": {"OverflowError": 1, "ValueError": 2}}
    assert snap.latency.count == 1  # latency histograms hold successful requests


def test_no_increment_is_lost_across_threads() -> None:
    def work(x):
        time.sleep(0)  # let the threads interleave
        return x

    monitored = Monitor(Pipeline("threads", (Stage("a", work), Stage("b", work))))
    barrier = threading.Barrier(8)

    def client() -> None:
        barrier.wait()
        for i in range(400):
            monitored(i)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = monitored.snapshot()
    assert snap.ok == 3200
    assert snap.latency.count == 3200
    assert snap.stage_latency["a"].count == snap.stage_latency["b"].count == 3200


def test_trace_sampling_keeps_a_share_in_blocks_and_loads_as_a_trace(toy, tmp_path) -> None:
    monitored = Monitor(toy, trace_sample=0.25, trace_block=10, seed=3)
    for x in range(2000):
        monitored(float(x))
    trace = monitored.trace()
    assert trace is not None and trace.pipeline == "toy"
    assert 0.15 * 2000 <= len(trace.arrivals_s) <= 0.35 * 2000
    assert len(trace.arrivals_s) % 10 == 0  # whole blocks
    path = monitored.export(tmp_path / "monitor.json")
    # the export's trace is a Trace as Trace.load reads it
    data = json.loads(path.read_text())
    standalone = tmp_path / "trace.json"
    standalone.write_text(json.dumps(data["trace"]))
    assert Trace.load(standalone).arrivals_s == trace.arrivals_s


def test_trace_keeps_real_gaps_and_sizes() -> None:
    monitored = Monitor(Pipeline("texts", (Stage("len", len),)), trace_sample=1.0, trace_block=4)
    gaps = [0.0, 0.02, 0.0, 0.05]
    for i in range(8):
        time.sleep(gaps[i % 4])
        monitored("x" * (i + 1))
    trace = monitored.trace()
    assert trace is not None
    assert trace.sizes == tuple(range(1, 9))
    offsets = trace.arrivals_s
    assert offsets[0] == 0.0
    assert offsets[1] - offsets[0] >= 0.015  # the 20 ms gap survived
    assert offsets[3] - offsets[2] >= 0.04


def test_trace_limit_bounds_memory(toy) -> None:
    monitored = Monitor(toy, trace_sample=1.0, trace_block=2, trace_limit=10)
    for x in range(100):
        monitored(float(x))
    trace = monitored.trace()
    assert trace is not None and len(trace.arrivals_s) == 10


def test_export_round_trip(toy, tmp_path) -> None:
    monitored = Monitor(toy, trace_sample=1.0)
    for x in range(20):
        monitored(float(x))
    with pytest.raises(ValueError):
        monitored(-5.0)
    path = monitored.export(tmp_path / "sub" / "monitor.json")
    loaded = load_export(path)
    snap = monitored.snapshot()
    assert loaded.pipeline == "toy" and loaded.stages == ("scale", "check")
    assert loaded.ok == 20 and loaded.failed == 1
    assert loaded.latency.counts == snap.latency.counts
    assert loaded.errors == {"check": {"ValueError": 1}}
    assert loaded.trace is not None and len(loaded.trace.arrivals_s) == 21
    assert loaded.machine.get("fingerprint")
    data = json.loads(path.read_text())
    assert data["summary"]["latency_ms"]["p50"] == pytest.approx(
        snap.latency.percentiles_ms()["p50"]
    )


def test_periodic_export_writes_and_close_writes_a_last_one(toy, tmp_path) -> None:
    path = tmp_path / "periodic.json"
    with Monitor(toy) as monitored:
        monitored.start_export(path, every_s=0.05)
        for x in range(5):
            monitored(float(x))
        deadline = time.monotonic() + 5
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.exists()
        monitored(6.0)
    assert load_export(path).ok == 6  # close() exported the last request too
    assert monitored.last_export_error is None


def test_from_recipe_records_the_recipe(toy, tmp_path) -> None:
    recipe = make_recipe(toy, [])
    monitored = Monitor.from_recipe(toy, recipe, artifacts_dir=tmp_path)
    assert monitored(2.0) == toy.run(2.0)
    assert monitored.snapshot().recipe == {
        "pipeline": "toy",
        "changes": [],
        "created": recipe.created,
        "source": None,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trace_sample": 1.5}, "share between 0 and 1"),
        ({"trace_block": 1}, "trace_block"),
        ({"trace_limit": 0}, "trace_limit"),
    ],
)
def test_bad_options(toy, options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Monitor(toy, **options)


def test_wrapping_something_else_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="wraps a pipetune Pipeline"):
        Monitor(lambda x: x)  # type: ignore[arg-type]


def test_export_without_a_path_is_a_clear_error(toy) -> None:
    with pytest.raises(ConfigError, match="give a path"):
        Monitor(toy).export()
