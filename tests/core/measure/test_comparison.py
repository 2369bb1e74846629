"""The paired ABBA comparison and its small-sample statistics."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.measure.comparison import CompareSettings, compare, t_quantile
from pipetune.core.measure.stats import expanded_tail
from pipetune.core.measure.timed_pass import stage_seconds
from pipetune.core.runtime.result import RunResult


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
    settings = CompareSettings(rounds=2, items_per_round=3, bootstrap=100, warmup_s=0)
    result = compare(a, b, list(range(6)), settings=settings)
    passes = [entry for entry in log if not entry.startswith("reset")]
    # a warm-up pass each (worker thread, deadline), then a timed probe pass each
    assert passes[:4] == ["A", "B", "A", "B"]
    assert passes[4:] == ["A", "B", "B", "A", "B", "A", "A", "B"]  # ABBA, BAAB
    for position, entry in enumerate(log):
        if entry in ("A", "B"):
            assert log[position - 1] == f"reset {entry}"  # a reset right before every pass
    assert result.rounds == 2 and result.items_per_round == 3
    assert set(result.speedup) >= {"throughput", "p50", "p95", "p99"}
    for name, (low, high) in result.ci.items():
        assert low <= result.speedup[name] <= high or math.isclose(low, high)


def test_a_fast_side_warms_up_on_other_inputs_before_each_timed_pass():
    calls: list[tuple[str, int]] = []

    def side(name, seconds):
        def fn(item, *, tag):
            time.sleep(seconds)
            calls.append((name, item))
            return item

        return Pipeline(name, (Stage("s", fn, slots={"tag": Recorder([], name)}),))

    settings = CompareSettings(rounds=2, items_per_round=3, bootstrap=100, warmup_s=0.02)
    result = compare(side("A", 0.03), side("B", 0.0), list(range(6)), settings=settings)
    assert result.warmup_inputs == {"a": 0, "b": 3}  # the slow side needs none
    last = calls_of(calls, "B")[-24:]  # after the probes, per round: warm-up, pass twice
    timed = [last[i : i + 3] for i in range(0, 24, 3)]
    for warm, passed in zip(timed[0::2], timed[1::2], strict=True):
        assert set(warm).isdisjoint(passed)  # other inputs: the previous round's
    assert result.samples_per_side == 2 * 2 * 3  # the warm-up is never timed


def calls_of(calls, name):
    return [item for who, item in calls if who == name]


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


# -- coverage --------------------------------------------------------------------------------


def seen_by(log: list) -> Pipeline:
    """An identity pipeline that records every input it is called on."""

    def fn(item):
        log.append(item)
        return item

    return Pipeline("seen", (Stage("s", fn),))


def test_a_slow_pipeline_is_still_timed_on_100_inputs_spread_over_the_whole_split():
    log: list = []
    items = list(range(300))
    # a round target so small that time alone would size passes at one input
    settings = CompareSettings(rounds=8, round_target_s=1e-9, bootstrap=100)
    result = compare(seen_by(log), seen_by([]), items, settings=settings)
    assert result.inputs_timed >= 100 and result.inputs_total == 300
    assert result.items_per_round == 13  # ceil(100 / 8)
    assert result.samples_per_side == 2 * result.rounds * result.items_per_round
    timed = set(log[8:])  # after the warm-up and probe passes (4 inputs each)
    assert len(timed) == result.inputs_timed
    thirds = [sum(1 for i in timed if lo <= i < lo + 100) for lo in (0, 100, 200)]
    assert min(thirds) >= 25, thirds  # every third of the split, not its first inputs
    assert result.coverage == "timed on 104 of 300 inputs, 208 latency samples per side"
    data = result.to_dict()
    assert (data["inputs_timed"], data["inputs_total"], data["samples_per_side"]) == (104, 300, 208)
    assert data["host_load"]["run_queue_wait"] is None or data["host_load"]["run_queue_wait"] >= 0


@pytest.mark.slow
def test_a_small_split_is_timed_whole():
    result = compare(seen_by([]), seen_by([]), list(range(30)), settings=CompareSettings(rounds=4))
    assert result.inputs_timed == result.inputs_total == 30 and not result.coverage_note


def test_the_time_budget_may_cut_coverage_and_then_says_so():
    settings = CompareSettings(rounds=4, round_target_s=1e-9, bootstrap=100, time_budget_s=1e-6)
    result = compare(seen_by([]), seen_by([]), list(range(300)), settings=settings)
    assert result.inputs_timed < 100
    assert "time budget" in result.coverage_note and "of the 100 distinct inputs" in (
        result.coverage_note
    )
    assert result.to_dict()["coverage_note"] == result.coverage_note


def test_spread_order_prefixes_span_the_range():
    from pipetune.core.measure.coverage import spread_order

    order = spread_order(300)
    assert sorted(order) == list(range(300))
    first = order[:10]
    assert max(first) - min(first) > 200
    assert spread_order(2) == (0, 1) and spread_order(0) == ()


def test_a_quantile_is_shown_only_with_enough_samples_behind_it():
    settings = CompareSettings(rounds=2, items_per_round=3, bootstrap=100)
    result = compare(seen_by([]), seen_by([]), list(range(6)), settings=settings)
    assert result.samples_per_side == 12
    assert result.shown("p50") and not result.shown("p95") and not result.shown("p99")
    assert result.to_dict()["quantiles_shown"] == {"p50": True, "p95": False, "p99": False}
    assert result.shown("throughput")


def test_a_p99_comparison_sizes_its_passes_for_100_samples_a_side():
    settings = CompareSettings(rounds=4, round_target_s=1e-9, bootstrap=100, min_inputs=1)
    result = compare(seen_by([]), seen_by([]), list(range(300)), metric="p99", settings=settings)
    assert result.samples_per_side >= 100 and result.shown("p99")


def test_a_change_that_needs_inputs_in_flight_gets_passes_that_can_form_its_batches():
    from pipetune.core.kernel.results import InFlight
    from pipetune.core.runtime.serving import with_serving

    need = InFlight(inputs=8, assumes="8 requests in flight at once")
    settings = CompareSettings(rounds=2, items_per_round=1, bootstrap=100, in_flight=need)
    result = compare(seen_by([]), seen_by([]), list(range(64)), settings=settings)
    assert result.items_per_round == 16  # two full batches a pass, not the one input asked
    assert result.to_dict()["in_flight"]["assumes"] == "8 requests in flight at once"
    # a pipeline served in batches needs no declaration: its batch size sets the floor
    batched = with_serving(seen_by([]), batch_size=4)
    plain = CompareSettings(rounds=2, items_per_round=1, bootstrap=100)
    assert compare(seen_by([]), batched, list(range(64)), settings=plain).items_per_round == 8
    # fewer inputs than a pass needs: the result says so
    short = compare(seen_by([]), seen_by([]), list(range(10)), settings=settings)
    assert "fewer than the 16" in short.coverage_note


def test_a_backlog_change_online_gets_every_request_of_a_pass_at_once():
    from pipetune.core.kernel.results import InFlight
    from pipetune.core.measure.timed_pass import RuntimeSpec

    need = InFlight(inputs=4)
    settings = CompareSettings(rounds=2, items_per_round=1, bootstrap=100, in_flight=need)
    result = compare(
        seen_by([]),
        seen_by([]),
        list(range(32)),
        runtime=RuntimeSpec(mode="online"),
        settings=settings,
    )
    assert result.runtime.rate is None and result.runtime.trace is not None
    assert result.runtime.trace.arrivals_s == (0.0,) * 8


def _fresh_memory(item):
    """Maps 16 MiB, touches every page and unmaps it: 4,096 page faults an input."""
    import mmap

    block = mmap.mmap(-1, 16 << 20)
    pages = np.frombuffer(block, dtype=np.uint8)
    pages[::4096] = 1
    del pages
    block.close()
    return item


def test_each_side_counts_its_page_faults_and_a_heavy_side_is_named():
    pytest.importorskip("resource", reason="page faults are counted where `resource` exists")
    light = Pipeline("light", (Stage("s", abs),))
    heavy = Pipeline("heavy", (Stage("s", _fresh_memory),))
    settings = CompareSettings(rounds=2, items_per_round=4, bootstrap=50)
    result = compare(light, heavy, list(range(8)), settings=settings)
    assert result.a.page_faults_per_item is not None and result.a.page_faults_per_item < 512
    assert result.b.page_faults_per_item is not None and result.b.page_faults_per_item >= 4000
    notes = result.allocator_notes(("original", "final"))
    assert len(notes) == 1 and notes[0].startswith("the final pipeline took")
    assert result.to_dict()["b"]["page_faults_per_item"] == result.b.page_faults_per_item
