"""`pipetune propose`: the planner's estimates, the same ones `optimize` shows for the
same profile."""

from __future__ import annotations

import json

import pytest

from .loop_targets import write_lookups


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_propose_and_optimize_show_one_estimate_for_one_profile(invoke, tmp_path, monkeypatch):
    from pipetune.core.measure import profiler

    real = profiler.profile
    profiles: list = []

    def profile(pipeline, workload, **options):
        # propose profiles first; optimize's baseline is given that same profile
        if len(profiles) == 1:
            profiles.append(profiles[0])
            return profiles[0]
        profiles.append(real(pipeline, workload, **options))
        return profiles[-1]

    monkeypatch.setattr(profiler, "profile", profile)
    target = write_lookups(tmp_path)
    proposed = invoke("propose", f"{target}:pipeline", "--json", "p.json")
    assert proposed.exit_code == 0, proposed.output
    optimized = invoke("optimize", f"{target}:pipeline", "--quick", "--json", "r.json")
    assert optimized.exit_code == 0, optimized.output
    assert profiles[1] is profiles[0]

    plan = {p["id"]: p for p in json.loads((tmp_path / "p.json").read_text())["proposals"]}
    report = json.loads((tmp_path / "r.json").read_text())
    entries = {p["id"]: p for p in report["proposals"]}
    (trial,) = [t for t in report["trials"] if t["proposal"] == "generic.result_cache"]
    estimate = plan["generic.result_cache"]["est_e2e_speedup"]
    assert entries["generic.result_cache"]["est_e2e_speedup"] == estimate
    assert trial["est_speedup"] == estimate
    assert entries["generic.result_cache"]["estimated_on"] == "baseline"
    shown = f"{estimate:.2f}x"
    assert shown in proposed.output and shown in optimized.output


@pytest.mark.slow
def test_a_ceiling_that_bounds_nothing_is_not_printed(invoke, tmp_path, monkeypatch):
    from pipetune.core.measure import profiler

    real = profiler.profile

    def profile(pipeline, workload, **options):
        # one stage is the whole pipeline: the rest is a microsecond of glue per input
        measured = real(pipeline, workload, **options)
        other = [s.name for s in measured.stages].index("other")
        rows = tuple(
            tuple(0.001 if i == other else ms for i, ms in enumerate(row))
            for row in measured.stage_ms
        )
        return measured.evolve(stage_ms=rows)

    monkeypatch.setattr(profiler, "profile", profile)
    target = write_lookups(tmp_path)
    result = invoke("propose", f"{target}:pipeline", "--json", "p.json")
    assert result.exit_code == 0, result.output
    (entry,) = [
        p
        for p in json.loads((tmp_path / "p.json").read_text())["proposals"]
        if p["id"] == "generic.result_cache"
    ]
    assert entry["ceiling_informative"] is False and entry["ceiling"] > 100
    assert "≤" not in result.output
