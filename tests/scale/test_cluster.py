"""Capacity for a Ray cluster: per-stage workers and nodes for each growth horizon."""

from __future__ import annotations

import math

from pipetune.core.kernel.model import Growth
from pipetune.scale.cluster import plan_cluster
from tests.scale.conftest import stage_profile


def test_each_horizon_gets_workers_per_stage_and_nodes():
    profile = stage_profile({"fetch": (40.0, 0.05), "model": (10.0, 1.0)})
    plan = plan_cluster(profile, Growth(now_rps=100, peak_rps=400), node_cpus=4, utilization=0.8)
    now, peak = plan.horizons
    fetch, model = peak.groups
    assert fetch.io_bound and fetch.workers * fetch.threads >= 400 * 0.040
    assert model.workers == math.ceil(400 * 0.010 / 0.8)
    assert peak.nodes == math.ceil(peak.cpus / 4)
    assert now.nodes <= peak.nodes
    text = "\n".join(plan.lines())
    assert "not measured on one machine" in text and "object store" in text
    assert plan.to_dict()["horizons"][1]["name"] == "at peak"
