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


@pytest.mark.slow
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
        "--max-run-queue-wait",
        "1",  # judge whatever the load of this shared test machine
        "--json",
        "c.json",
    )
    assert failed.exit_code == 1, failed.output
    assert "REGRESSION" in failed.output and "P99" in failed.output
    verdict = json.loads((tmp_path / "c.json").read_text())
    assert not verdict["passed"] and verdict["regressions"]
    assert verdict["inputs_timed"] == verdict["inputs_total"] == 40  # the whole workload
    assert verdict["samples_per_side"] >= 80 and "run_queue_wait" in verdict["host_load"]
    assert "timed on 40 of 40 inputs" in failed.output
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


@pytest.mark.slow
def test_check_refuses_to_call_a_regression_on_a_busy_host(invoke, tmp_path, monkeypatch):
    from pipetune.core.measure import comparison, load

    class BusyMeter(load.HostLoadMeter):
        def stop(self):
            measured = super().stop()
            return load.HostLoad(**{**measured.__dict__, "run_queue_wait": 0.45})

    target = write_lookups(tmp_path)
    made = invoke("optimize", f"{target}:pipeline", "--quick", "--recipe", "recipe.json", "-q")
    assert made.exit_code == 0, made.output
    monkeypatch.setattr(comparison, "HostLoadMeter", BusyMeter)
    args = ("check", f"{target}:pipeline", "--baseline", "latest", "--rounds", "4")
    busy = invoke(*args, "--json", "c.json")
    assert busy.exit_code == 2, busy.output
    assert "NOT JUDGED" in busy.output and "REGRESSION" not in busy.output
    assert "host was busy" in busy.output and "run-queue wait 45%" in busy.output
    verdict = json.loads((tmp_path / "c.json").read_text())
    assert verdict["passed"] is None and "host was busy" in verdict["undecided"]
    # a higher threshold judges it after all
    judged = invoke(*args, "--max-run-queue-wait", "0.5")
    assert judged.exit_code == 1, judged.output


def test_a_p99_on_too_few_samples_is_not_judged():
    comparison = _comparison(1.0, 0.9, 1.1, p99=0.5)
    comparison.update(samples_per_side=40, quantiles_shown={"p99": False})
    verdict = judge(comparison, None)
    assert verdict.passed and "P99 latency: n/a (40 samples), not judged" in verdict.notes
