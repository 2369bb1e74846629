"""`pipetune check`: a CI regression gate against a recipe or a recorded run."""

from __future__ import annotations

import json

import pytest

from pipetune.cli.check_cmd import judge

from .loop_targets import write_lookups


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)


def test_check_fails_when_current_lost_the_optimization_and_passes_when_it_has_it(invoke, tmp_path):
    target = write_lookups(tmp_path)
    made = invoke("optimize", f"{target}:pipeline", "--quick", "--recipe", "recipe.json", "-q")
    assert made.exit_code == 0, made.output
    # the code as it stands (no cache) against the run's recipe: slower side by side
    failed = invoke(
        "check",
        f"{target}:pipeline",
        "--baseline",
        "latest",
        "--rounds",
        "4",
        "--json",
        "c.json",
    )
    assert failed.exit_code == 1, failed.output
    assert "REGRESSION" in failed.output and "P99" in failed.output
    verdict = json.loads((tmp_path / "c.json").read_text())
    assert not verdict["passed"] and verdict["regressions"]
    # shipping the recipe: the same configuration on both sides passes (figures recorded
    # at another moment are not used here: a recipe file carries none)
    passed = invoke(
        "check",
        f"{target}:pipeline",
        "--baseline",
        "recipe.json",
        "--recipe",
        "recipe.json",
        "--rounds",
        "4",
        "--tolerance",
        "0.3",
    )
    assert passed.exit_code == 0, passed.output
    assert "check passed" in passed.output


def _comparison(speed, low, high, p99=1.0):
    return {
        "speedup": {"throughput": speed, "p99": p99},
        "ci": {"throughput": [low, high], "p99": [p99 * 0.9, p99 * 1.1]},
        "b": {"throughput_rps": 100.0, "latency_ms": {"p99": 10.0}},
    }


def test_judge_uses_the_interval_not_the_point():
    noisy = judge(_comparison(0.9, 0.7, 1.05), None)
    assert noisy.passed  # slower on the point estimate, but within the noise
    slower = judge(_comparison(0.8, 0.75, 0.85), None)
    assert not slower.passed and "throughput" in slower.regressions[0]
    assert judge(_comparison(0.8, 0.75, 0.85), None, tolerance=0.2).passed


def test_judge_fails_on_fidelity_and_on_stored_figures_of_this_machine():
    fid = {"metric": "label_agreement", "value": 0.97, "threshold": 0.99}
    assert not judge(_comparison(1.0, 0.9, 1.1), fid).passed
    stored = {"throughput_rps": 150.0, "p99_ms": 10.0, "noise": {"throughput_rps": 0.1}}
    verdict = judge(_comparison(1.0, 0.9, 1.1), None, stored=stored)
    assert not verdict.passed and "throughput_rps now 100" in verdict.regressions[0]
    other = judge(_comparison(1.0, 0.9, 1.1), None, stored_note="another machine")
    assert other.passed and "another machine" in other.notes[-1]
