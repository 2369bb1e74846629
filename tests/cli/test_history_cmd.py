"""`pipetune history` and `pipetune compare` read the run store."""

from __future__ import annotations

import json

import pytest

from pipetune.core.loop.store import RunStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    with RunStore() as opened:
        yield opened


def _run(store, fingerprint, throughput, p99, status="finished"):
    run = store.start_run("docs", machine_fingerprint=fingerprint, target="app:p")
    final = {"throughput_rps": throughput, "latency_ms": {"p50": p99 / 2, "p99": p99}}
    report = {
        "final": final,
        "trials": [{"proposal": "x.y", "status": "accepted"}],
        "requirements_met": True,
    }
    if status == "finished":
        store.finish_run(run, "finished", summary={"trials": 1, "accepted": 1}, report=report)
    return run


def test_history_lists_runs_and_marks_incomplete_ones(invoke, store):
    done = _run(store, "aaa", 100.0, 20.0)
    killed = _run(store, "aaa", 0, 0, status="running")
    listed = json.loads(invoke("history", "--json").output)
    assert [r["id"] for r in listed] == [killed, done]
    assert [r["status"] for r in listed] == ["incomplete", "finished"]
    shown = invoke("history", killed)
    assert shown.exit_code == 0 and "no report" in shown.output


def test_compare_gives_ratios_only_on_the_same_machine(invoke, store):
    a = _run(store, "aaa", 100.0, 20.0)
    b = _run(store, "aaa", 150.0, 10.0)
    same = json.loads(invoke("compare", a, b, "--json").output)
    assert same["same_machine"]
    assert same["speedup_b_over_a"] == {"throughput_rps": 1.5, "p50_ms": 2.0, "p99_ms": 2.0}
    c = _run(store, "bbb", 300.0, 5.0)
    other = invoke("compare", a, c)
    assert other.exit_code == 0 and "not compared" in other.output
    assert json.loads(invoke("compare", a, c, "--json").output)["speedup_b_over_a"] == {}


def test_an_unknown_run_is_a_clear_error(invoke, store):
    result = invoke("history", "nope")
    assert result.exit_code == 2 and "no run 'nope'" in result.output
