"""The Ray Data plan from the profile: groups, tasks or actors, pool sizes, batch sizes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.scale.plan import (
    READ_CPUS,
    Plan,
    StageCost,
    costs_from_profile,
    derive_plan,
    fuse_stages,
    local_plan,
)
from tests.scale.conftest import stage_profile


def test_cheap_stages_are_fused_and_significant_stages_stand_alone():
    costs = [
        StageCost("a", 0.1),
        StageCost("b", 0.2),
        StageCost("model", 8.0),
        StageCost("rank", 2.0),
        StageCost("post", 0.1),
    ]
    assert [[c.name for c in g] for g in fuse_stages(costs)] == [
        ["a", "b"],
        ["model"],
        ["rank"],
        ["post"],
    ]


def test_the_slowest_stage_gets_the_most_workers_and_the_cpus_are_not_overbooked():
    costs = [StageCost("decode", 4.0, 1.0), StageCost("model", 12.0, 1.0, ships=False)]
    plan = derive_plan(costs, pipeline="p", cpus=8)
    decode, model = plan.groups
    assert model.workers > decode.workers
    assert (model.compute, decode.compute) == ("actors", "tasks")
    reserved = sum(g.workers * g.cpus_per_worker for g in plan.groups)
    assert reserved <= 8 - READ_CPUS + 1e-9
    assert plan.expected_rps == pytest.approx(1000 * (8 - READ_CPUS) / 16.0)


def test_an_io_bound_stage_gets_concurrency_beyond_the_cores_and_reserves_no_cpu():
    costs = [StageCost("fetch", 20.0, 0.02), StageCost("model", 4.0, 1.0, ships=False)]
    fetch, model = derive_plan(costs, pipeline="p", cpus=2, rows=10_000).groups
    assert fetch.io_bound and not model.io_bound
    assert fetch.workers * fetch.threads > 2 and fetch.cpus_per_worker == 0
    assert fetch.batch_size >= fetch.threads
    assert "I/O-bound" in fetch.why and "holds a model" in model.why


def test_batches_are_whole_recipe_batches_and_small_jobs_are_spread_over_the_workers():
    costs = [StageCost("model", 1.0, 1.0, ships=False)]
    (group,) = derive_plan(costs, pipeline="p", cpus=4, recipe_batch=8).groups
    assert group.batch_size % 8 == 0 and group.recipe_batch == 8
    (small,) = derive_plan(costs, pipeline="p", cpus=4, rows=40).groups
    assert small.batch_size * small.workers <= 40


def test_a_tiny_share_reserves_no_cpu():
    costs = [StageCost("tiny", 0.01, 1.0), StageCost("model", 10.0, 1.0)]
    tiny, model = derive_plan(costs, pipeline="p", cpus=2).groups
    assert tiny.cpus_per_worker == 0 and model.cpus_per_worker > 0


def test_costs_come_from_the_profile_of_the_pipeline_about_to_run():
    profile = stage_profile({"clean": (1.0, 1.0), "score": (12.0, 0.9)}, batch=4)
    stages = [SimpleNamespace(name="clean", kind="other"), SimpleNamespace(name="score", kind="x")]
    costs = costs_from_profile(profile, stages, {"clean": True}, batch=4)
    assert [(c.name, c.per_item_ms, c.ships) for c in costs] == [
        ("clean", 0.25, True),
        ("score", 3.0, False),
    ]
    with pytest.raises(ConfigError, match="profile the pipeline with its recipe applied"):
        costs_from_profile(profile, stages[:1], {}, batch=1)


def test_the_plan_round_trips_through_its_json_and_prints_one_line_per_group():
    costs = [StageCost("fetch", 20.0, 0.02), StageCost("model", 4.0, 1.0, ships=False)]
    plan = derive_plan(costs, pipeline="p", cpus=2, source="from a test")
    again = Plan.from_dict(plan.to_dict())
    assert again == plan
    lines = plan.lines()
    assert "from a test" in lines[0] and len(lines) == 4
    assert "1. fetch: tasks" in lines[1] and "2. model: actors" in lines[2]
    local = local_plan("p", ("a", "b"), workers=2, executor="thread", batch=1)
    assert "2 worker threads" in local.lines()[1]


def test_a_plan_needs_stages_and_cpus():
    with pytest.raises(ConfigError):
        derive_plan([], pipeline="p", cpus=2)
    with pytest.raises(ConfigError):
        derive_plan([StageCost("a", 1.0)], pipeline="p", cpus=0)
