"""The paired ABBA comparison and its small-sample statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.measure.comparison import (
    CompareSettings,
    compare,
    expanded_tail,
    stage_seconds,
    t_quantile,
)
from pipetune.core.runtime.offline import RunResult


@pytest.mark.parametrize(
    ("df", "expected"), [(1, 12.7062), (4, 2.7764), (9, 2.2622), (30, 2.0423), (200, 1.9719)]
)
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=2e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=2e-4)


def test_expanded_tail_is_narrower_than_alpha_over_two_for_few_rounds():
    assert expanded_tail(0.05, 5) < 0.005
    assert expanded_tail(0.05, 8) < 0.01
    assert expanded_tail(0.05, 1000) == pytest.approx(0.025, abs=0.001)


class Recorder:
    """A stateful component: records the order of passes and each reset."""

    def __init__(self, log, side):
        self.log, self.side = log, side

    def pipetune_reset(self):
        self.log.append(f"reset {self.side}")


def tagged(log, side):
    def fn(item, *, tag):
        if not log or log[-1] != side:
            log.append(side)
        return item

    return Pipeline(side, (Stage("s", fn, slots={"tag": Recorder(log, side)}),))


def test_rounds_alternate_abba_and_baab_with_state_reset_before_every_pass():
    log: list[str] = []
    a, b = tagged(log, "A"), tagged(log, "B")
    settings = CompareSettings(rounds=2, items_per_round=3, bootstrap=100)
    result = compare(a, b, list(range(6)), settings=settings)
    passes = [entry for entry in log if not entry.startswith("reset")]
    assert passes[2:] == ["A", "B", "B", "A", "B", "A", "A", "B"]  # ABBA, BAAB after warm-up
    for position, entry in enumerate(log):
        if entry in ("A", "B"):
            assert log[position - 1] == f"reset {entry}"  # a reset right before every pass
    assert result.rounds == 2 and result.items_per_round == 3
    assert set(result.speedup) >= {"throughput", "p50", "p95", "p99"}
    for name, (low, high) in result.ci.items():
        assert low <= result.speedup[name] <= high or math.isclose(low, high)


def test_compare_refuses_empty_inputs_and_single_round():
    p = Pipeline("p", (Stage("s", abs),))
    with pytest.raises(ConfigError, match="empty workload"):
        compare(p, p, [])
    with pytest.raises(ConfigError, match="at least 2 rounds"):
        CompareSettings(rounds=1)


def test_an_undecided_first_look_runs_up_to_max_rounds():
    p = Pipeline("p", (Stage("s", abs),))
    settings = CompareSettings(rounds=2, max_rounds=5, items_per_round=3, bootstrap=100)
    seen = []

    def undecided(result):
        seen.append(result.rounds)
        return False

    result = compare(p, p, list(range(-6, 6)), settings=settings, decided=undecided)
    assert seen == [2] and result.rounds == 5 and result.looks == 2
    decided_now = compare(p, p, list(range(6)), settings=settings, decided=lambda r: True)
    assert decided_now.rounds == 2 and decided_now.looks == 1


def _batched_result(batches: list[int], stage_time: float) -> RunResult:
    """Rows as the runtime writes them: every input of a batch carries the batch's times."""
    rows, start, done = [], [], []
    for index, size in enumerate(batches):
        for _ in range(size):
            rows.append([stage_time, 0.0])
            start.append(float(index))
            done.append(index + stage_time)
    n = len(rows)
    return RunResult(
        outputs=[None] * n,
        ok=[True] * n,
        latency_s=np.full(n, stage_time),
        stage_s=np.array(rows),
        wall_s=float(len(batches)),
        stage_names=("embed",),
        start_s=np.array(start),
        done_s=np.array(done),
        batch_sizes=list(batches),
    )


def test_stage_seconds_counts_each_batch_once_even_when_batches_vary_in_size():
    # an online batcher: batches of 3, 1 and 2 inputs, not in step with batch_size=2
    result = _batched_result([3, 1, 2], stage_time=0.5)
    totals = stage_seconds(result, batch_size=2)
    assert totals["embed"] == pytest.approx(1.5)


def test_stage_seconds_without_service_times_assumes_consecutive_batches():
    result = _batched_result([2, 2], stage_time=0.25)
    result.start_s = result.done_s = None
    assert stage_seconds(result, batch_size=2)["embed"] == pytest.approx(0.5)
    assert stage_seconds(result, batch_size=1)["embed"] == pytest.approx(1.0)
