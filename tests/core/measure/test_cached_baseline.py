"""A slow baseline with a large fidelity set: speed measured on a sample of the workload
(``Workload.timing_items``), fidelity against outputs cached at set-up
(``optimize(baseline_outputs=...)``, ``DemoSetup.baseline_outputs``)."""

from __future__ import annotations

import pytest

import pipetune
from pipetune import ConfigError, Pipeline, Stage, Workload
from pipetune.core.kernel.registry import DemoSetup
from pipetune.core.loop.optimize import LoopSettings, optimize
from tests.core.loop_toys import FAST_VALIDATOR, manager

SETTINGS = LoopSettings(
    validator=FAST_VALIDATOR,
    detailed_profiles=False,
    profile_options={"gil_check": False, "sweep": False},
)


def counted_pipeline(calls: list) -> Pipeline:
    def classify(item, *, calls):
        calls.append(item)
        return int(item) % 3

    return Pipeline(
        "counted", (Stage("classify", classify, slots={"calls": calls}),), output_kind="labels"
    )


def test_timing_sample_is_evenly_spaced_and_kept_by_subsets():
    workload = Workload(items=tuple(range(100)), timing_items=4)
    assert workload.timing_sample() == (0, 25, 50, 75)
    assert Workload(items=(1, 2), timing_items=4).timing_sample() == (1, 2)
    tune, hold = workload.split(0.4)
    assert tune.timing_items == hold.timing_items == 4
    tune_idx, hold_idx = workload.split_indices(0.4)
    assert tune.items == tuple(tune_idx) and hold.items == tuple(hold_idx)
    assert workload.describe()["timing_items"] == 4
    with pytest.raises(ConfigError, match="timing_items"):
        Workload(items=(1,), timing_items=0)


def test_the_profiler_times_only_the_sample():
    calls: list = []
    workload = Workload(items=tuple(str(i) for i in range(40)), timing_items=5, warmup=0, repeats=2)
    profile = pipetune.profile(
        counted_pipeline(calls),
        workload,
        pm=manager(),
        sweep=False,
        gil_check=False,
        hot_functions=False,
        layers=False,
        memory=False,
    )
    assert profile.samples == 10 and len(calls) == 10
    assert profile.workload["items"] == 40


def test_cached_baseline_outputs_replace_running_the_original():
    workload = Workload(items=tuple(str(i) for i in range(40)), timing_items=5, warmup=0)
    truth = [int(x) % 3 for x in workload.items]
    runs = {}
    for cached in (None, truth):
        calls: list = []
        _, report = optimize(
            counted_pipeline(calls),
            workload,
            pm=manager(),
            settings=SETTINGS,
            max_trials=0,
            store=False,
            baseline_outputs=cached,
        )
        runs["cached" if cached else "computed"] = len(calls)
    # Without the cache the original also runs once over the tune and held-out splits (the
    # calibration split needs no outputs of the original).
    calibration = report.workload["calibration_items"]
    assert calibration > 0
    assert runs["computed"] - runs["cached"] == len(workload) - calibration


def test_cached_outputs_must_match_the_workload():
    workload = Workload(items=("1", "2", "3"))
    with pytest.raises(ConfigError, match="one output per input"):
        optimize(counted_pipeline([]), workload, pm=manager(), store=False, baseline_outputs=[1])
    setup = DemoSetup(counted_pipeline([]), workload, None, baseline_outputs=(1, 2, 0))
    assert setup.baseline_outputs == (1, 2, 0)
