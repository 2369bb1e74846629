"""Traffic replay: `pipetune profile/optimize --trace FILE` replays recorded arrivals (and
sizes) in online mode; bad traces exit 2 with a message naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TARGET = """
from pipetune import Pipeline, Requirements, Stage, Workload


def words(text):
    return text.split()


def count(tokens):
    return len(tokens)


pipeline = Pipeline("texts", (Stage("words", words), Stage("count", count)), output_kind="any")
workload = Workload(
    items=tuple("w " * n for n in range(1, 25)), warmup=0, repeats=1, concurrency=(1, 2)
)
requirements = Requirements(p99_ms=1000)
"""


def write_trace(path: Path, pipeline: str = "texts", n: int = 40, sizes: bool = True) -> Path:
    data = {
        "arrivals_s": [i * 0.004 for i in range(n)],
        "sizes": [2 * (1 + i % 20) for i in range(n)] if sizes else None,
        "pipeline": pipeline,
    }
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def target(write_target) -> Path:
    return write_target(TARGET, name="replay_target.py")


@pytest.mark.slow
def test_profile_replays_a_trace_in_online_mode(invoke, target, tmp_path) -> None:
    trace = write_trace(tmp_path / "trace.json")
    out = tmp_path / "profile.json"
    result = invoke("profile", str(target), "--trace", str(trace), "--json", str(out), "-q")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["mode"] == "online"  # --trace implies online mode
    assert data["workload"]["trace"] == 40
    assert data["runtime"]["online"]["source"] == "trace"
    assert data["samples"] == 40


@pytest.mark.slow
def test_a_monitor_export_works_as_a_trace(invoke, target, tmp_path) -> None:
    from pipetune.cli.target import import_target_module
    from pipetune.monitor import Monitor

    module = import_target_module(str(target))
    monitored = Monitor(module.pipeline, trace_sample=1.0)
    for text in module.workload.items:
        monitored(text)
    export = monitored.export(tmp_path / "monitor.json")
    out = tmp_path / "profile.json"
    result = invoke("profile", str(target), "--trace", str(export), "--json", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["workload"]["trace"] == len(module.workload.items)


@pytest.mark.slow
def test_optimize_accepts_a_trace(invoke, target, tmp_path) -> None:
    trace = write_trace(tmp_path / "trace.json")
    out = tmp_path / "report.json"
    result = invoke(
        "optimize",
        str(target),
        "--trace",
        str(trace),
        "--max-trials",
        "0",
        "--quick",
        "--no-store",
        "-q",
        "--json",
        str(out),
    )
    assert result.exit_code in (0, 3), result.output  # 3: requirements unmet is allowed
    report = json.loads(out.read_text())
    assert report["baseline"]["mode"] == "online"
    assert report["runtime"]["trace"] == 40


def test_a_trace_from_another_pipeline_is_refused(invoke, target, tmp_path) -> None:
    trace = write_trace(tmp_path / "other.json", pipeline="image-classifier")
    result = invoke("profile", str(target), "--trace", str(trace), "-q")
    assert result.exit_code == 2
    assert "recorded on pipeline 'image-classifier', not 'texts'" in result.output
    assert str(trace) in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps([1, 2, 3]), "expected a JSON object with 'arrivals_s'"),
        (json.dumps({"arrivals_s": [0.0, 0.5, 0.2]}), "increasing order"),
        (json.dumps({"arrivals_s": []}), "at least one arrival"),
        (json.dumps({"arrivals_s": [0.0, 1.0], "sizes": [3]}), "one for one"),
        (json.dumps({"arrivals_s": ["a", "b"]}), "malformed trace"),
        (
            json.dumps({"format": "pipetune-monitor", "version": 1, "trace": None}),
            "holds no sampled trace",
        ),
    ],
)
@pytest.mark.slow
def test_a_malformed_trace_exits_2_naming_the_file(
    invoke, target, tmp_path, content, message
) -> None:
    trace = tmp_path / "bad.json"
    trace.write_text(content)
    result = invoke("profile", str(target), "--trace", str(trace), "-q")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "bad.json" in result.output


def test_a_missing_trace_file(invoke, target, tmp_path) -> None:
    result = invoke("profile", str(target), "--trace", str(tmp_path / "nope.json"), "-q")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_offline_mode_with_a_trace_is_a_usage_error(invoke, target, tmp_path) -> None:
    trace = write_trace(tmp_path / "trace.json")
    result = invoke("profile", str(target), "--trace", str(trace), "--mode", "offline", "-q")
    assert result.exit_code == 2 and "--mode online" in result.output
