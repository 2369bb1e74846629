"""``pipetune capacity``: from a run, from profile files, from a TARGET; bad growth exits 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipetune.cli.render import profile_json
from pipetune.core.kernel.model import Growth, Requirements
from pipetune.core.kernel.results import (
    ConcurrencyPoint,
    LatencyStats,
    Machine,
    Profile,
    StageStats,
)
from pipetune.core.loop.store import RunStore

GROWTH = Growth(now_rps=50, peak_rps=100, in_12_months_rps=80, in_24_months_rps=160)


def make_profile(mean_ms: float, rates: dict[int, float]) -> Profile:
    service = np.random.default_rng(0).gamma(4.0, mean_ms / 4.0, 200)
    return Profile(
        pipeline="svc",
        mode="offline",
        samples=200,
        throughput_rps=rates[1],
        latency_ms=LatencyStats(1, 2, 3, 4),
        stages=(StageStats("model", "inference", 1.0, 1.0), StageStats("other", "other", 0, 0)),
        machine=Machine(cpu="test cpu", cores=4),
        stage_ms=tuple((float(v), 0.0) for v in service),
        concurrency=tuple(ConcurrencyPoint(c, r, 0.0, 0.0) for c, r in rates.items()),
    )


BEFORE = make_profile(20.0, {1: 50.0, 2: 90.0, 4: 120.0})
AFTER = make_profile(5.0, {1: 200.0, 2: 380.0, 4: 700.0})


@pytest.fixture
def store_run(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    requirements = Requirements(p99_ms=100, cost_per_hour=0.2, growth=GROWTH)
    with RunStore() as store:
        run = store.start_run("svc", machine_fingerprint="m", requirements=requirements.to_dict())
        store.add_profile(run, "baseline", BEFORE)
        store.add_profile(run, "final", AFTER)
        store.finish_run(run, "finished")
    return run


def test_from_a_run_before_and_after(invoke, store_run, tmp_path) -> None:
    out = tmp_path / "plan.json"
    result = invoke("capacity", store_run, "--json", str(out), "-q", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    before, after = plan["sides"]["before"], plan["sides"]["after"]
    assert 0 < before["rps"] < after["rps"]
    assert before["predicted_ms"]["p99"] <= 100
    rows = {h["name"]: h for h in plan["horizons"]}
    assert set(rows) == {
        "now",
        "peak",
        "12 months",
        "12 months at peak",
        "24 months",
        "24 months at peak",
    }
    assert rows["24 months at peak"]["rps"] == pytest.approx(320.0)
    assert rows["now"]["instances"]["before"] >= rows["now"]["instances"]["after"]
    assert rows["now"]["monthly_cost"]["before"] == pytest.approx(
        rows["now"]["instances"]["before"] * 0.2 * 730
    )
    assert before["scaling"]["kind"] == "sub-linear"
    assert "instances before" in result.output and "saving" in result.output
    assert "assumptions" in result.output and "M/G/" in result.output


def test_growth_flags_override_the_run(invoke, store_run, tmp_path) -> None:
    out = tmp_path / "plan.json"
    result = invoke("capacity", "latest", "--now-rps", "90", "--json", str(out), "-q")
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    assert plan["growth"]["now_rps"] == 90 and plan["growth"]["peak_rps"] == 100
    assert plan["horizons"][0]["rps"] == 90
    # the run's peak is now below the flag's current rate: inconsistent, exit 2
    result = invoke("capacity", "latest", "--now-rps", "500", "-q")
    assert result.exit_code == 2 and "peak (100 rps) is below" in result.output


def test_from_profile_files(invoke, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = tmp_path / "before.json"
    after = tmp_path / "after.json"
    before.write_text(json.dumps(profile_json(BEFORE)))
    after.write_text(json.dumps(profile_json(AFTER)))
    out = tmp_path / "plan.json"
    result = invoke(
        "capacity",
        str(before),
        "--after",
        str(after),
        "--now-rps",
        "40",
        "--p99-ms",
        "100",
        "--json",
        str(out),
        "-q",
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    assert set(plan["sides"]) == {"before", "after"}
    assert plan["cost_per_hour"] is None and "instances only" in result.output


TARGET = """
from pipetune import Growth, Pipeline, Requirements, Stage, Workload


def square(x):
    return sum(i * i for i in range(200 + x % 50))


pipeline = Pipeline("squares", (Stage("square", square),))
workload = Workload(items=tuple(range(40)), warmup=0, repeats=1, concurrency=(1, 2))
requirements = Requirements(p99_ms=50, cost_per_hour=1.0, growth=Growth(now_rps=300))
"""


@pytest.mark.slow
def test_from_a_target_profiled_and_measured_online(invoke, write_target, tmp_path) -> None:
    target = write_target(TARGET, name="capacity_target.py")
    out = tmp_path / "plan.json"
    result = invoke("capacity", str(target), "--json", str(out), "-q")
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    before = plan["sides"]["before"]
    assert before["measured"] is not None
    assert before["measured"]["attempts"][0]["requests"] >= 200
    assert before["rps"] == before["measured"]["rate_rps"]
    assert "measured online" in before["method"] or not before["measured"]["held"]
    assert plan["horizons"][0]["instances"]["before"] >= 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--now-rps", "-5"], "the rate now is -5"),
        (["--now-rps", "100", "--peak-rps", "50"], "is below the current rate"),
        (
            ["--now-rps", "1", "--in-12-months-rps", "10", "--in-24-months-rps", "5"],
            "inconsistent",
        ),
        (["--now-rps", "0"], "nothing to plan"),
        (["--now-rps", "inf"], "finite"),
    ],
)
def test_bad_growth_exits_2(invoke, tmp_path, flags, message) -> None:
    before = tmp_path / "before.json"
    before.write_text(json.dumps(profile_json(BEFORE)))
    result = invoke("capacity", str(before), *flags, "-q")
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_no_growth_at_all_exits_2(invoke, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = tmp_path / "before.json"
    before.write_text(json.dumps(profile_json(BEFORE)))
    result = invoke("capacity", str(before), "-q")
    assert result.exit_code == 2 and "no growth figures" in result.output


def test_an_unmeetable_latency_bound_exits_3(invoke, tmp_path) -> None:
    before = tmp_path / "before.json"
    before.write_text(json.dumps(profile_json(BEFORE)))
    result = invoke("capacity", str(before), "--now-rps", "10", "--p99-ms", "1", "-q")
    assert result.exit_code == 3, result.output
    assert "no rate meets" in result.output


def test_a_file_that_is_not_a_profile(invoke, tmp_path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"hello": 1}))
    result = invoke("capacity", str(bogus), "--now-rps", "10", "-q")
    assert result.exit_code == 2 and "not a pipetune profile" in result.output


def test_an_unknown_run(invoke, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "empty"))
    result = invoke("capacity", "20990101-000000-abcdef", "--now-rps", "10", "-q")
    assert result.exit_code == 2 and "no run" in result.output
