"""The tokenizer, demo-time, profiler-overhead and monitor-overhead rows say what their
figures rest on (distinct inputs, samples per side, the host's load), and read "pending a
quiet run" with the command to run where the results do not hold it yet."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.nlp import demo_time
from benchmarks.nlp import run as nlp_run
from benchmarks.render.documents import render_all
from benchmarks.render.registry import EFFECTS, Results

LOAD = {"run_queue_wait": 0.02, "other_cpu": 0.1, "cores": 2, "busy": False}


def _row(speedup: float, inputs: int, samples: int) -> dict:
    """A comparison row as ``benchmarks.common.comparison_row`` writes it."""
    return {
        "speedup": speedup,
        "ci": [speedup * 0.9, speedup * 1.1],
        "inputs_timed": inputs,
        "inputs_total": inputs,
        "samples_per_side": samples,
        "throughput_rps": {"a": 100.0, "b": 100.0 * speedup},
        "ms_per_item": {"a": 10.0, "b": 10.0 / speedup},
        "p99_speedup": speedup,
        "p99_note": None,
        "host_load": dict(LOAD),
    }


def _render(tmp_path: Path, **areas: dict) -> dict[str, str]:
    folder = tmp_path / "results"
    folder.mkdir(parents=True)
    for area, data in areas.items():
        (folder / f"{area}.json").write_text(json.dumps(data))
    return render_all(Results(folder))


TOKENIZER = {
    "command": "python -m benchmarks.nlp.tokenizer",
    "documents": 310,
    "sections": 1596,
    "distinct_sections": 597,
    "characters": 561665,
    "ids_identical": True,
    "ids_checked": {"documents": 310, "sections": 1596},
    "headline": "one document a call",
    "comparisons": {
        "one document a call": _row(11.0, 310, 4096),
        "32 documents a call": _row(14.0, 310, 4000),
    },
}


def test_the_tokenizer_row_rests_on_compare(tmp_path):
    rendered = _render(tmp_path, nlp={"tokenizer_side_by_side": TOKENIZER})
    row = rendered["nlp.summary.tokenizer"]
    assert "**11.00x** [9.90, 12.10] one document a call" in row and "— met" in row
    assert "through `compare`" in row and "library default" in row
    assert "32 documents a call: 14.00x" in row
    assert "timed on 310 of 310 documents, 4,096 samples per side" in row
    assert "run-queue wait 2 %" in row and "pending" not in row
    assert "ids identical on 310 documents" in row
    assert "**11.00x**" in EFFECTS["PT-NLP001"].render(Results(tmp_path / "results"))
    assert "4,096 samples per side" in rendered["nlp.tokenizer"]


def test_the_new_nlp_rows_are_pending_with_their_command(tmp_path):
    smoke = {**TOKENIZER, "command": "python -m benchmarks.nlp.tokenizer --quick"}
    rendered = _render(tmp_path, nlp={"tokenizer_side_by_side_quick": smoke})
    row = rendered["nlp.summary.tokenizer"]
    assert "only a smoke run recorded" in row and "`python -m benchmarks.nlp.tokenizer`" in row
    assert "11.00x" not in row
    assert (
        "pending a quiet run (`python -m benchmarks.nlp.demo_time`)"
        in (rendered["nlp.summary.demo_time"])
    )


DEMO_TIME = {
    "command": "python -m benchmarks.nlp.demo_time",
    "ran": "pipetune demo",
    "target_s": 300.0,
    "wall_s": 252.0,
    "exit_code": 3,
    "setup_ran": False,
    "host_load": {
        "load_average_before": 0.4,
        "load_average_after": 1.9,
        "other_cpu": 0.05,
        "cores": 2,
        "demo_run_queue_wait": 0.03,
        "priority": "normal",
    },
    "headline": {
        "line": "throughput 1.1/s 20.6/s 18.70x [17.30, 20.10]",
        "speedup": 18.7,
        "ci": [17.3, 20.1],
        "coverage": "timed on 186 of 186 inputs, 1024 latency samples per side",
        "requirements": "requirements met",
    },
}


def test_the_demo_time_row_shows_the_run_and_its_load(tmp_path):
    row = _render(tmp_path, nlp={"demo_time": DEMO_TIME})["nlp.summary.demo_time"]
    assert "**4.2 min (252 s)** for `pipetune demo` (exit 3) — met" in row
    assert "requirements met" in row and "18.70x [17.30, 20.10]" in row and "was cached" in row
    assert "load average 0.4→1.9, other processes 0.1 of 2 cores" in row
    assert "the demo's run-queue wait 3 %" in row and "pending" not in row
    slow = {**DEMO_TIME, "wall_s": 900.0}
    row = _render(tmp_path / "slow", nlp={"demo_time": slow})["nlp.summary.demo_time"]
    assert "**15.0 min (900 s)**" in row and "— not met" in row


def test_the_demo_headline_is_read_from_what_it_printed():
    printed = (
        "Original → optimized\n"
        "  throughput               1.1/s             44.8/s   42.08x [34.12, 58.12]  \n"
        "  P50 latency             836 ms           25.73 ms   32.49x [28.65, 55.42]  \n"
        "timed on 3 of 3 inputs, 24 latency samples per side\n"
        "host load while measuring: run-queue wait 4%, other processes 0.1 of 2 cores\n"
        "requirements met\n"
    )
    found = demo_time.headline(printed)
    assert found["speedup"] == 42.08 and found["ci"] == [34.12, 58.12]
    assert found["line"] == "throughput 1.1/s 44.8/s 42.08x [34.12, 58.12]"
    assert found["coverage"].startswith("timed on 3 of 3 inputs")
    assert found["host_load"].startswith("host load while measuring")
    assert found["requirements"] == "requirements met"
    assert demo_time.headline("Traceback ...\n")["speedup"] is None


def test_the_nlp_run_keeps_the_other_scripts_keys(tmp_path):
    path = tmp_path / "nlp.json"
    path.write_text(json.dumps({"tokenizer": {}, "demo_time": {"wall_s": 1.0},
                                "tokenizer_side_by_side": {"documents": 3}}))  # fmt: skip
    nlp_run.write_results(path, {"command": "python -m benchmarks.nlp.run"})
    data = json.loads(path.read_text())
    assert data["demo_time"] == {"wall_s": 1.0} and data["tokenizer_side_by_side"]
    assert "tokenizer" not in data


def _overhead_entry(with_compare: bool) -> dict:
    if not with_compare:
        return {
            "inputs_per_pass": 200,
            "rounds": 21,
            "bare_ms_per_input": 1.0,
            "profiled": {"overhead_pct_median": 1.0},
            "traced": {"overhead_pct_median": 1.2},
        }
    side = {"overhead_pct": 1.0, "overhead_pct_ci": [0.5, 1.5]}
    return {
        "bare_ms_per_input": 1.0,
        "inputs_per_chunk": 50,
        "chunks": 120,
        "profiled": {**side, "distinct_inputs": 6000, "compare": _row(0.99, 120, 416)},
        "traced": {**side, "compare": _row(0.98, 120, 416)},
    }


def _core(with_compare: bool) -> dict:
    return {
        "profiler_overhead": {
            "command": "python -m benchmarks.core.profiler_overhead",
            "host_load": dict(LOAD),
            "instrumentation_cost": {
                "no-op, 1 stage": {
                    "inputs_per_pass": 2000,
                    "rounds": 21,
                    "profiled": {"added_cpu_us_per_input_median": 4.9},
                }
            },
            "instrumentation_cpu_us_per_input": {"no-op, 1 stage": 4.9},
            "estimated_overhead_pct_at_1ms": 0.49,
            "overhead": {"busy 1 ms": _overhead_entry(with_compare)},
        }
    }


def test_the_profiler_row_states_inputs_and_samples(tmp_path):
    row = _render(tmp_path, core=_core(True))["core.summary"]
    assert "CPU cost: 2,000 inputs × 21 interleaved passes a side" in row
    assert "timed on 120 of 120 chunks of 50 inputs, 416 samples per side" in row
    assert "(6,000 distinct inputs)" in row and "run-queue wait 2 %" in row
    assert "pending" not in row
    old = _render(tmp_path / "old", core=_core(False))["core.summary"]
    assert "pending a quiet run (`python -m benchmarks.core.profiler_overhead`)" in old


def _production(with_compare: bool) -> dict:
    cost = {
        "inputs_per_pass": 15000,
        "rounds": 30,
        "monitor": {"cpu": {"added_us_per_request_median": 1.0}},
        "prometheus observe()": {"cpu": {"added_us_per_request_median": 1.75}},
    }
    monitor = {"overhead_pct": 0.2, "overhead_pct_ci": [0.1, 0.3]}
    if with_compare:
        monitor["compare"] = _row(0.998, 300, 2400)
        busy = {"monitor": monitor}
    else:
        busy = {"inputs_per_pass": 300, "rounds": 30, "monitor": monitor}
    section = {
        "command": "python -m benchmarks.production.monitor_overhead",
        "implied_overhead_pct_at_1ms": 0.1,
        "recording_cost": {"1 empty stage": cost},
        "pipelines": {"busy 1 ms": busy},
    }
    if with_compare:
        section["host_load"] = dict(LOAD)
    else:
        section["conditions"] = {"load_average_before": [0.7], "load_average_after": [1.0]}
    return {"monitor_overhead": section}


def test_the_monitor_row_states_inputs_samples_and_run_queue_wait(tmp_path):
    row = _render(tmp_path, production=_production(True))["production.summary.monitor"]
    assert "recording cost: 15,000 requests × 30 interleaved passes a variant" in row
    assert "timed on 300 of 300 requests, 2,400 samples per side" in row
    assert "run-queue wait 2 %" in row
    assert "not recorded" not in row and "pending" not in row
    old = _render(tmp_path / "old", production=_production(False))["production.summary.monitor"]
    assert "run-queue wait: pending a quiet run (`python -m benchmarks.production." in old
    assert "not recorded" not in old
