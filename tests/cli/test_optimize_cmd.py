"""`pipetune optimize`, `propose`, `apply`, `history`, `compare` on a real small target."""

from __future__ import annotations

import hashlib
import json

import pytest

from .loop_targets import write_lookups, write_other


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_optimize_writes_recipe_and_reports_then_apply_history_compare(invoke, tmp_path):
    target = write_lookups(tmp_path)
    result = invoke(
        "optimize",
        f"{target}:pipeline",
        "--quick",
        "--json",
        "r.json",
        "--html",
        "r.html",
        "--markdown",
        "r.md",
        "--recipe",
        "recipe.json",
        "--chrome-trace",
        "t.json",
    )
    assert result.exit_code == 0, result.output
    trace = json.loads((tmp_path / "t.json").read_text())
    processes = {e["pid"] for e in trace["traceEvents"] if e.get("ph") == "X"}
    assert processes == {1, 2}  # the original and the optimized pipeline
    assert "generic.result_cache" in result.output and "accepted" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["requirements_met"] and data["trials"][0]["status"] == "accepted"
    # the final figure comes from a fresh process that built TARGET and loaded the recipe
    assert data["comparison"]["measured_in"].startswith("a fresh process that built ")
    assert "per side, in a fresh process that built" in " ".join(result.output.split())
    pytest.importorskip("jsonschema", reason="the dev extra checks the schema")
    from pipetune.core.report.schema import validate

    validate("report", data)
    assert "<svg" in (tmp_path / "r.html").read_text()
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    assert [c["proposal"] for c in recipe["changes"]] == ["generic.result_cache"]

    applied = invoke("apply", f"{target}:pipeline", "--recipe", "recipe.json", "--rounds", "3")
    assert applied.exit_code == 0, applied.output
    assert "holds" in applied.output

    history = invoke("history")
    assert history.exit_code == 0 and "lookups" in history.output
    shown = invoke("history", "latest")
    assert "generic.result_cache" in shown.output
    compared = invoke("compare", "latest", data["run_id"])
    assert compared.exit_code == 0 and "1.00x" in compared.output


@pytest.mark.slow
def test_unmet_requirements_exit_3_and_keep_the_best(invoke, tmp_path):
    target = write_lookups(tmp_path, "strict.py", ", p50_ms=0.0001")
    result = invoke("optimize", f"{target}:pipeline", "--quick", "--no-store", "-q")
    assert result.exit_code == 3, result.output
    assert "requirements NOT met" in result.output and "accepted" in result.output


@pytest.mark.slow
def test_propose_ranks_without_applying(invoke, tmp_path):
    target = write_lookups(tmp_path)
    result = invoke("propose", f"{target}:pipeline", "--json", "p.json")
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "p.json").read_text())
    ids = [p["id"] for p in data["proposals"]]
    assert "generic.result_cache" in ids and data["metric"] == "p50"
    assert "Proposals, best first" in result.output


def test_a_recipe_for_another_pipeline_names_the_missing_stage(invoke, tmp_path):
    from pipetune.core.kernel.results import Change, Recipe

    change = Change(proposal="generic.result_cache", plugin="generic", stage="lookup")
    Recipe(pipeline="lookups", changes=(change,), stages=("lookup",)).save("recipe.json")
    other = write_other(tmp_path)
    result = invoke("apply", f"{other}:pipeline", "--recipe", "recipe.json")
    assert result.exit_code == 2
    assert "needs stage 'lookup', which is missing" in result.output
    assert "Traceback" not in result.output


def test_a_corrupted_store_is_a_clear_error_and_is_left_as_it_was(invoke, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "runs.db").write_bytes(b"garbage, not a database" * 50)
    before = hashlib.sha256((store / "runs.db").read_bytes()).hexdigest()
    target = write_lookups(tmp_path)
    result = invoke("optimize", f"{target}:pipeline", "--quick")
    assert result.exit_code == 2 and "corrupted" in result.output and "untouched" in result.output
    assert hashlib.sha256((store / "runs.db").read_bytes()).hexdigest() == before
    assert invoke("history").exit_code == 2
