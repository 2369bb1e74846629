"""The benchmarks' shared harness: a side-by-side figure goes through ``compare`` and carries
what it rests on; a results file keeps the sections other scripts wrote."""

from __future__ import annotations

import json

import pytest
from benchmarks import common

from pipetune import Pipeline, Stage
from pipetune.core.measure.comparison import CompareSettings


def _pipeline(name: str, repeat: int) -> Pipeline:
    def work(item: int) -> int:
        total = 0
        for i in range(repeat):
            total += (item * i) % 7
        return total

    return Pipeline(name, (Stage("work", work),))


@pytest.mark.slow
def test_a_comparison_row_carries_coverage_interval_and_load():
    row = common.side_by_side(
        _pipeline("slow", 400),
        _pipeline("fast", 100),
        list(range(30)),
        settings=CompareSettings(rounds=2, items_per_round=15),
    )
    assert row["harness"] == "pipetune.core.measure.comparison.compare"
    assert row["inputs_timed"] == row["inputs_total"] == 30
    assert row["samples_per_side"] == 60
    low, high = row["ci"]
    assert low <= row["speedup"] <= high
    assert row["p99_speedup"] is None and row["p99_note"] == "n/a (60 samples)"
    assert "run_queue_wait" in row["host_load"]
    assert row["coverage"] == "timed on 30 of 30 inputs, 60 latency samples per side"


def test_write_section_keeps_other_sections_and_names_an_unsectioned_file(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    (tmp_path / "area.json").write_text(json.dumps({"benchmark": "old", "figure": 1.5}))
    common.write_section("area", "new_quick", {"figure": 2.0}, flat_section="new")
    data = json.loads((tmp_path / "area.json").read_text())
    assert data == {"new": {"benchmark": "old", "figure": 1.5}, "new_quick": {"figure": 2.0}}
    common.write_section("area", "new", {"figure": 3.0})
    data = json.loads((tmp_path / "area.json").read_text())
    assert data["new"] == {"figure": 3.0} and data["new_quick"] == {"figure": 2.0}


def test_host_load_fills_in_when_the_block_ends():
    with common.host_load() as load:
        sum(range(1000))
    assert {"run_queue_wait", "other_cpu", "seconds", "busy"} <= set(load)
