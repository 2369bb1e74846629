"""The optimize loop end to end, on small real pipelines and a toy plugin."""

from __future__ import annotations

import json

import pytest

import pipetune
from pipetune.core.kernel.model import Requirements
from pipetune.core.loop.optimize import LoopSettings, optimize
from pipetune.core.loop.recipes import load_recipe
from pipetune.core.loop.store import RunStore
from tests.core.loop_toys import (
    FAST_VALIDATOR,
    ToyPlugin,
    faster,
    manager,
    raising,
    rejected_tune,
    toy_pipeline,
    toy_workload,
)

SETTINGS = LoopSettings(
    validator=FAST_VALIDATOR,
    tune_fraction=0.4,
    detailed_profiles=False,
    profile_options={"gil_check": False},
)
#: Optimizing P50 keeps the generic plugin's throughput-only proposals out of these tests.
P50 = Requirements(optimize_for="p50", min_gain=0.05)


CONTRACT_KEYS = {
    "schema_version",
    "pipeline",
    "machine",
    "baseline",
    "proposals",
    "trials",
    "final",
    "speedup",
    "cost",
    "requirements_met",
}


def _plugin(**overrides):
    proposals = [
        {"change": "faster", "stage": "work", "est_stage_speedup": 4.0, "effort": "minutes"},
        {"change": "convert", "stage": "work", "est_stage_speedup": 8.0, "effort": "hours"},
        {"change": "refused", "stage": "work", "est_stage_speedup": 2.0, "effort": "days"},
        {
            "change": "distill",
            "stage": "work",
            "est_stage_speedup": 10.0,
            "effort": "weeks",
            "applicable": False,
        },
    ]
    changes = {"faster": faster, "convert": raising, "refused": faster}

    def tune(proposal, workload, context):
        if proposal.id == "toy.refused":
            return rejected_tune(proposal, workload, context)
        return None

    return ToyPlugin(proposals, changes, tune=tune, **overrides)


def optimize_toy(requirements=P50, plugin=None, *, pipeline=None, store=False, **options):
    """The loop on the toy pipeline and 40-input workload with the fast test settings."""
    return optimize(
        pipeline or toy_pipeline(),
        toy_workload(40),
        requirements,
        pm=manager(plugin or _plugin()),
        settings=SETTINGS,
        store=store,
        **options,
    )


def test_the_loop_keeps_what_is_proven_and_records_everything(tmp_path):
    plugin = _plugin()
    pipeline = toy_pipeline()
    original_delay = pipeline.stage("work").slots["delay"]
    optimized, report = optimize_toy(plugin=plugin, pipeline=pipeline, store=tmp_path)
    by_id = {t.proposal: t for t in report.trials}
    assert by_id["toy.convert"].status == "rejected"
    assert by_id["toy.convert"].reason.startswith("apply failed")
    assert by_id["toy.faster"].status == "accepted"
    assert (
        by_id["toy.refused"].status == "rejected" and "different ids" in by_id["toy.refused"].reason
    )
    assert "toy.distill" not in by_id  # advice is listed, never applied
    # estimated against measured, for every timed trial
    assert by_id["toy.faster"].est_speedup > 1 and by_id["toy.faster"].speedup > 1
    assert optimized.stage("work").slots["delay"] < original_delay
    assert pipeline.stage("work").slots["delay"] == original_delay  # never mutated

    data = report.to_dict()
    assert set(data) >= CONTRACT_KEYS
    pytest.importorskip("jsonschema", reason="the dev extra checks the report schema")
    from pipetune.core.report.schema import validate

    validate("report", json.loads(json.dumps(data)))
    assert data["baseline"]["stages"][-1]["name"] == "other"
    assert sum(s["share"] for s in data["baseline"]["stages"]) == pytest.approx(1.0)
    assert data["speedup"]["measured"] == "side by side"
    assert {p["id"] for p in data["proposals"]} >= {"toy.faster", "toy.distill"}
    assert data["trials"][0]["fidelity"] is None or "metric" in data["trials"][0]["fidelity"]
    assert data["recipe"]["changes"][0]["proposal"] == "toy.faster"

    with RunStore(tmp_path) as store:
        run = store.run(report.run_id)
        assert run.status == "finished" and run.report["pipeline"] == "toy"
        assert [t.proposal for t in store.trials(run.id)] == [t.proposal for t in report.trials]
        assert [label for label, _ in store.profiles(run.id)][:2] == [
            "baseline",
            "after toy.faster",
        ]
        recipe = store.recipe(run.id)
    reapplied = load_recipe(pipeline, recipe, pm=manager(_plugin()))
    assert reapplied.stage("work").slots["delay"] == optimized.stage("work").slots["delay"]


def test_after_an_accepted_change_the_plugins_propose_again_on_the_new_pipeline():
    plugin = _plugin()
    optimize_toy(plugin=plugin)
    seen = [call[3].stage("work").slots["delay"] for call in plugin.calls if call[0] == "propose"]
    assert len(seen) >= 2 and seen[0] > seen[-1]  # re-proposed on the faster pipeline


def test_proposals_left_untried_when_requirements_are_met_carry_current_estimates():
    # "faster" makes the work stage 4x faster: a proposal on "parse" then covers a bigger
    # share of the time, and the report must say so rather than repeat the first plan
    proposals = [
        {"change": "faster", "stage": "work", "est_stage_speedup": 4.0, "effort": "minutes"},
        {"change": "parse_fast", "stage": "parse", "est_stage_speedup": 2.0, "effort": "days"},
    ]
    plugin = ToyPlugin(proposals, {"faster": faster})
    met = Requirements(optimize_for="p50", min_speedup=1.5)
    _, report = optimize_toy(met, plugin)
    assert report.stopped == "requirements met"
    assert [t.proposal for t in report.trials] == ["toy.faster"]  # parse_fast not tried
    planned_on = [call[3] for call in plugin.calls if call[0] == "propose"]
    # planned again on the accepted pipeline before stopping (the report's entry for
    # parse_fast comes from that plan)
    assert [p.stage("work").slots["delay"] for p in planned_on] == [0.004, 0.001]
    entry = next(p for p in report.proposals if p["id"] == "toy.parse_fast")
    assert entry["share"] is not None and "excluded" not in entry


def test_unmet_requirements_keep_the_best_result_and_say_what_is_missed():
    requirements = Requirements(p50_ms=0.01, min_gain=0.05)
    optimized, report = optimize_toy(requirements)
    assert not report.requirements_met
    assert report.misses and report.misses[0].startswith("P50")
    assert report.stopped == "nothing left worth trying"
    assert any(t.status == "accepted" for t in report.trials)
    assert optimized.stage("work").slots["delay"] < 0.004


def test_a_relative_throughput_bound_is_checked_against_the_original_side_by_side():
    # the toy's accepted change makes the work stage 4x faster: about 3x end to end
    met = Requirements(optimize_for="p50", min_speedup=1.5)
    _, report = optimize_toy(met)
    assert report.requirements_met and not report.misses
    assert report.stopped == "requirements met"  # checked after each accepted change too

    unreachable = Requirements(optimize_for="p50", min_speedup=1000)
    _, report = optimize_toy(unreachable)
    assert not report.requirements_met
    (miss,) = report.misses
    assert miss.startswith("speedup ") and miss.endswith("< 1000x the original's throughput")


def test_the_budget_stops_the_loop():
    _, report = optimize_toy(max_trials=1)
    assert len(report.trials) == 1 and report.stopped == "max trials (1) reached"


def test_an_interrupted_run_keeps_its_finished_trials(tmp_path):
    plugin = _plugin()

    def tune(proposal, workload, context):
        if proposal.id == "toy.refused":
            raise KeyboardInterrupt
        return None

    plugin.tune = tune
    _optimized, report = optimize_toy(plugin=plugin, store=tmp_path)
    assert report.stopped == "interrupted"
    with RunStore(tmp_path) as store:
        run = store.run(report.run_id)
        assert run.status == "interrupted"
        assert len(store.trials(run.id)) == len(report.trials) >= 1


def test_the_facade_returns_pipeline_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path))
    pipeline, report = pipetune.optimize(
        toy_pipeline(), toy_workload(30), P50, pm=manager(_plugin()), settings=SETTINGS
    )
    assert isinstance(pipeline, pipetune.Pipeline) and report.run_id
    again = pipetune.load_recipe(toy_pipeline(), report.recipe, pm=manager(_plugin()))
    assert again.stage("work").slots["delay"] == pipeline.stage("work").slots["delay"]
    assert (tmp_path / "runs.db").exists()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(pipetune.ConfigError, match="needs a pipetune Pipeline"):
        optimize("not a pipeline", toy_workload(5), store=False)  # type: ignore[arg-type]
    with pytest.raises(pipetune.ConfigError, match="is empty"):
        optimize(toy_pipeline(), pipetune.Workload(items=()), store=False)


def test_a_store_that_locks_mid_run_loses_nothing_but_the_record(tmp_path):
    import sqlite3

    store = RunStore(tmp_path, busy_timeout_s=0.2)
    holder = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
    plugin = _plugin()

    def tune(proposal, workload, context):
        if not holder.in_transaction:
            holder.execute("BEGIN EXCLUSIVE")  # another process grabs the store
        return None

    plugin.tune = tune
    try:
        _optimized, report = optimize_toy(plugin=plugin, store=store)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()
    assert any(t.status == "accepted" for t in report.trials)
    assert any("run store could not be written" in w for w in report.warnings)
    assert report.recipe is not None and report.recipe.changes


def test_a_stage_that_hangs_while_profiling_is_a_clear_error():
    import time

    from pipetune.core.kernel.errors import StageTimeout
    from pipetune.core.kernel.model import Pipeline, Stage

    def stuck(item):
        time.sleep(5 if item == "3" else 0)
        return item

    pipeline = Pipeline("hangs", (Stage("wait", stuck),))
    with pytest.raises(StageTimeout, match="stage 'wait'"):
        optimize(
            pipeline,
            toy_workload(6),
            P50,
            pm=manager(ToyPlugin()),
            settings=LoopSettings(stage_timeout_s=0.5, detailed_profiles=False),
            store=False,
        )
