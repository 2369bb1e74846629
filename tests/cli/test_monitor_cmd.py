"""``pipetune monitor show|trace|compare`` and ``pipetune compare`` with monitor exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipetune import Pipeline, Stage
from pipetune.core.kernel.results import LatencyStats, Machine, Profile, StageStats
from pipetune.core.loop.store import RunStore
from pipetune.monitor import Monitor
from pipetune.monitor.export import MonitorExport, write_json_atomic
from pipetune.monitor.histogram import Histogram


def write_export(path: Path, median_ms: float, n: int = 3000, seed: int = 0, **extra) -> Path:
    values = np.random.default_rng(seed).lognormal(np.log(median_ms), 0.4, n)
    histogram = Histogram.from_ms(values)
    export = MonitorExport(
        pipeline=extra.pop("pipeline", "svc"),
        stages=("model",),
        latency=histogram,
        stage_latency={"model": histogram},
        ok=histogram.count,
        failed=extra.pop("failed", 0),
        window_s=60.0,
        active_s=59.0,
        **extra,
    )
    write_json_atomic(path, export.to_dict())
    return path


def test_show_prints_percentiles_errors_and_the_trace(invoke, tmp_path) -> None:
    pipeline = Pipeline("texts", (Stage("upper", str.upper), Stage("length", len)))
    monitored = Monitor(pipeline, trace_sample=1.0)
    for text in ("a", "bb", "ccc"):
        monitored(text)
    with pytest.raises(TypeError):
        monitored(7)
    path = monitored.export(tmp_path / "m.json")
    result = invoke("monitor", "show", str(path))
    assert result.exit_code == 0, result.output
    assert "texts" in result.output and "3 requests served, 1 failed" in result.output
    assert "upper" in result.output and "P99" in result.output
    assert "errors in upper: TypeError x1" in result.output
    assert "trace: 4 sampled arrivals" in result.output  # failed requests arrived too
    as_json = invoke("monitor", "show", str(path), "--json")
    data = json.loads(as_json.output)
    assert data["requests"] == {"ok": 3, "failed": 1}
    assert set(data["stages"]) == {"upper", "length"}


def test_trace_extracts_a_replayable_trace(invoke, tmp_path) -> None:
    monitored = Monitor(Pipeline("texts", (Stage("length", len),)), trace_sample=1.0)
    for text in ("a", "bb", "ccc", "dddd"):
        monitored(text)
    export = monitored.export(tmp_path / "m.json")
    out = tmp_path / "trace.json"
    result = invoke("monitor", "trace", str(export), "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["pipeline"] == "texts" and data["sizes"] == [1, 2, 3, 4]
    result = invoke("monitor", "trace", str(export), "-o", str(out), "--first", "2")
    assert result.exit_code == 0 and "2 arrivals" in result.output
    assert json.loads(out.read_text())["sizes"] == [1, 2]
    no_trace = Monitor(Pipeline("texts", (Stage("length", len),)))
    no_trace("x")
    bare = no_trace.export(tmp_path / "bare.json")
    result = invoke("monitor", "trace", str(bare), "-o", str(out))
    assert result.exit_code == 2 and "holds no trace" in result.output


@pytest.mark.slow
def test_compare_two_exports_exit_codes(invoke, tmp_path) -> None:
    before = write_export(tmp_path / "before.json", 10.0, seed=1)
    same = write_export(tmp_path / "same.json", 10.0, seed=2)
    slower = write_export(tmp_path / "slower.json", 14.0, seed=3)
    faster = write_export(tmp_path / "faster.json", 6.0, seed=4)

    result = invoke("compare", str(before), str(same))
    assert result.exit_code == 0, result.output
    assert "no regression beyond noise" in result.output
    assert "P50" in result.output and "P99" in result.output

    result = invoke("compare", str(before), str(slower))
    assert result.exit_code == 1, result.output
    assert "regression beyond noise" in result.output and "slower" in result.output

    result = invoke("compare", str(before), str(faster), "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["quantiles"]["p50"]["verdict"] == "faster"
    assert data["quantiles"]["p50"]["ratio_b_over_a"] == pytest.approx(0.6, rel=0.06)
    assert "bootstrap" in data["method"]["ci"]

    result = invoke("monitor", "compare", str(before), str(slower), "--min-change", "0.5")
    assert result.exit_code == 0  # a 40 % change is below a 50 % minimum


@pytest.mark.slow
def test_compare_a_bench_run_with_a_monitor_export(invoke, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    rows = np.random.default_rng(5).lognormal(np.log(10.0), 0.4, 400)
    profile = Profile(
        pipeline="svc",
        mode="offline",
        samples=400,
        throughput_rps=90.0,
        latency_ms=LatencyStats(10, 15, 18, 25),
        stages=(StageStats("model", "inference", 1.0, 10.0), StageStats("other", "other", 0, 0)),
        machine=Machine(cpu="test", cores=2, fingerprint="bench"),
        stage_ms=tuple((float(v), 0.0) for v in rows),
    )
    with RunStore() as store:
        run = store.start_run("svc", machine_fingerprint="bench")
        store.add_profile(run, "baseline", profile)
    production = write_export(tmp_path / "prod.json", 10.0, seed=6)
    result = invoke("compare", run, str(production))
    assert result.exit_code == 0, result.output
    assert f"{run}@baseline" in result.output and "bench run" in result.output
    assert "a bench run and production traffic differ" in result.output
    slow = write_export(tmp_path / "slow.json", 20.0, seed=7)
    assert invoke("compare", run, str(slow)).exit_code == 1


def test_bad_inputs_exit_2_with_a_message(invoke, tmp_path) -> None:
    good = write_export(tmp_path / "good.json", 10.0)
    empty = MonitorExport(
        pipeline="svc",
        stages=(),
        latency=Histogram.empty(),
        stage_latency={},
        ok=0,
        failed=5,
        started="2025-01-01T00:00:00",
        exported="2025-01-01T01:00:00",
    )
    empty_path = write_json_atomic(tmp_path / "empty.json", empty.to_dict())
    result = invoke("compare", str(good), str(empty_path))
    assert result.exit_code == 2
    assert "has no samples" in result.output and "5 failed" in result.output

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    result = invoke("compare", str(good), str(garbage))
    assert result.exit_code == 2 and "not valid JSON" in result.output

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"arrivals_s": [0, 1]}))
    result = invoke("monitor", "show", str(other))
    assert result.exit_code == 2 and "not a pipetune monitor export" in result.output

    damaged = json.loads(good.read_text())
    damaged["latency"]["count"] = 1
    bad = tmp_path / "damaged.json"
    bad.write_text(json.dumps(damaged))
    result = invoke("monitor", "show", str(bad))
    assert result.exit_code == 2 and "damaged" in result.output

    result = invoke("monitor", "show", str(tmp_path / "missing.json"))
    assert result.exit_code == 2 and "does not exist" in result.output
