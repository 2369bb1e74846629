"""``pipetune capacity --engine ray``: per-stage workers and nodes beside the instances."""

from __future__ import annotations

import json

from tests.scale.conftest import stage_profile


def test_capacity_for_a_ray_cluster_plans_workers_per_stage_and_nodes(invoke, tmp_path):
    profile = stage_profile({"fetch": (30.0, 0.05), "model": (10.0, 1.0)})
    (tmp_path / "profile.json").write_text(json.dumps(profile.to_dict()))
    result = invoke(
        "capacity",
        str(tmp_path / "profile.json"),
        "--now-rps",
        "50",
        "--peak-rps",
        "200",
        "--engine",
        "ray",
        "--node-cpus",
        "8",
        "--json",
        str(tmp_path / "plan.json"),
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert "Ray cluster for planned: nodes of 8 CPUs" in result.output
    assert "not measured on one machine" in result.output
    cluster = json.loads((tmp_path / "plan.json").read_text())["ray_cluster"]["before"]
    assert [h["name"] for h in cluster["horizons"]] == ["now", "at peak"]
    assert cluster["horizons"][1]["groups"][1]["workers"] == 3  # 200/s x 10 ms / 0.8
