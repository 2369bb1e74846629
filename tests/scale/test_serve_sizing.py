"""A Serve deployment's size from capacity's plan and the latency requirement."""

from __future__ import annotations

import numpy as np

from pipetune.core.kernel.model import Growth, Requirements
from pipetune.core.runtime.serving import ServingOptions
from pipetune.scale.serve_sizing import SERVE_DEFAULT_ONGOING, size_serving
from tests.scale.conftest import stage_profile


def _profile(ms: float = 10.0):
    return stage_profile({"model": (ms, 1.0)})


def test_without_growth_figures_the_cluster_is_filled_one_replica_per_cpu():
    sizing = size_serving(_profile(), Requirements(), cpus=6)
    assert sizing.num_replicas == 6
    assert sizing.max_ongoing_requests == SERVE_DEFAULT_ONGOING
    assert sizing.replica_rps > 0
    assert sizing.deployment_options()["ray_actor_options"] == {"num_cpus": 1.0}


def test_growth_figures_give_autoscaling_bounds_capped_by_the_cluster():
    sizing = size_serving(
        _profile(), Requirements(p99_ms=100), cpus=4, growth=Growth(now_rps=50, peak_rps=900)
    )
    per_replica = sizing.replica_rps
    assert sizing.min_replicas == int(np.ceil(50 / per_replica))
    assert sizing.max_replicas == 4  # the peak needs more than the cluster holds
    assert any("add nodes" in reason for reason in sizing.reasons)
    config = sizing.deployment_options()["autoscaling_config"]
    assert config["min_replicas"] == sizing.min_replicas and config["max_replicas"] == 4


def test_max_ongoing_requests_is_what_fits_in_the_latency_bound():
    tight = size_serving(_profile(), Requirements(p99_ms=25), cpus=2)
    loose = size_serving(_profile(), Requirements(p99_ms=200), cpus=2)
    assert tight.max_ongoing_requests == 2  # one waiting behind one in service
    assert loose.max_ongoing_requests == 20
    assert "within P99" in tight.reasons[1]


def test_a_batching_recipe_is_served_in_its_batches():
    serving = ServingOptions(batch_size=8, max_delay_ms=4.0)
    sizing = size_serving(_profile(), Requirements(), cpus=2, serving=serving)
    assert (sizing.batch_size, sizing.batch_wait_s) == (8, 0.004)
    assert sizing.max_ongoing_requests >= 8
    assert "@serve.batch of 8" in sizing.lines()[0]


def test_given_figures_override_the_plan():
    sizing = size_serving(_profile(), Requirements(), cpus=8, replicas=3, max_ongoing=7)
    assert (sizing.num_replicas, sizing.max_ongoing_requests) == (3, 7)
