"""``pipetune run``: the pipeline over a dataset, from the command line."""

from __future__ import annotations

import json
import sys

import pytest

from pipetune.core.kernel.results import Change, Recipe
from tests.scale.conftest import TOY


@pytest.fixture
def toy(write_target, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPETUNE_HOME", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    target = write_target(TOY, name="toy_run.py")
    rows = [{"id": i, "text": "poison" if i == 3 else f"Row {i}"} for i in range(6)]
    (tmp_path / "in.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\nnot json at all\n"
    )
    return target


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_outputs_and_errors_and_records_the_run(invoke, toy, tmp_path):
    result = invoke("run", str(toy), "--input", "in.jsonl", "--output", "out.jsonl")
    assert result.exit_code == 0, result.output
    assert "done: 7 rows" in result.output and "errors: 2 (input 1, score 1)" in result.output
    assert sorted(r["id"] for r in _lines(tmp_path / "out.jsonl")) == [0, 1, 2, 4, 5]
    errors = _lines(tmp_path / "out.errors.jsonl")
    assert {(e["source"], e["stage"]) for e in errors} == {
        ("in.jsonl:4", "score"),
        ("in.jsonl:7", "input"),
    }
    history = invoke("history", "--json")
    (run,) = json.loads(history.output)
    assert run["pipeline"] == "toy-run" and run["status"] == "finished"
    from pipetune.core.loop.store import RunStore

    with RunStore() as store:
        summary = store.run(run["id"]).summary
    assert summary["command"] == "run" and summary["plan"]["engine"] == "the local runtime"


def test_an_existing_output_is_refused_unless_overwrite(invoke, toy, tmp_path):
    (tmp_path / "out.jsonl").write_text("keep me\n")
    refused = invoke("run", str(toy), "--input", "in.jsonl", "--output", "out.jsonl")
    assert refused.exit_code == 2 and "already exists: pass --overwrite" in refused.output
    assert (tmp_path / "out.jsonl").read_text() == "keep me\n"
    again = invoke("run", str(toy), "--input", "in.jsonl", "--output", "out.jsonl", "--overwrite")
    assert again.exit_code == 0, again.output


def test_a_recipe_made_for_another_pipeline_is_refused(invoke, toy, tmp_path):
    recipe = Recipe(
        pipeline="other",
        changes=(Change("nlp.dynamic_padding", "nlp", "tokenize", {"slot_stage": "tokenize"}),),
        stages=("tokenize", "embed"),
    )
    recipe.save(tmp_path / "recipe.json")
    result = invoke(
        "run", str(toy), "--recipe", "recipe.json", "--input", "in.jsonl", "--output", "out.jsonl"
    )
    assert result.exit_code == 2
    assert "does not fit pipeline 'toy-run'" in result.output and "tokenize" in result.output


def test_a_batching_recipe_is_applied_and_planned(invoke, toy, tmp_path):
    recipe = Recipe(
        pipeline="toy-run",
        changes=(Change("generic.dynamic_batching", "generic", "score", {"batch_size": 4}),),
        stages=("clean", "score"),
    )
    recipe.save(tmp_path / "recipe.json")
    result = invoke(
        "run",
        str(toy),
        "--recipe",
        "recipe.json",
        "--input",
        "in.jsonl",
        "--output",
        "out.jsonl",
        "--plan",
    )
    assert result.exit_code == 0, result.output
    assert "in batch_fn calls of 4" in result.output
    assert not (tmp_path / "out.jsonl").exists()


def test_the_ray_plan_is_printed_without_running(invoke, toy, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed")
    result = invoke(
        "run",
        str(toy),
        "--input",
        "in.jsonl",
        "--output",
        "out.jsonl",
        "--engine",
        "ray",
        "--plan",
        "--cpus",
        "4",
        "--json",
        "plan.json",
    )
    assert result.exit_code == 0, result.output
    assert "on Ray Data, 4 CPU(s)" in result.output and "sampled rows" in result.output
    plan = json.loads((tmp_path / "plan.json").read_text())["plan"]
    assert [g["stages"] for g in plan["groups"]]  # every stage is in a group
    assert sum(len(g["stages"]) for g in plan["groups"]) == 2
    assert not (tmp_path / "out.jsonl").exists()


def test_without_ray_the_install_command_is_given(invoke, toy, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = invoke(
        "run", str(toy), "--input", "in.jsonl", "--output", "out.jsonl", "--engine", "ray"
    )
    assert result.exit_code == 2
    assert 'pip install "pipetune[ray]"' in result.output or "pipetune[ray]" in result.output


def test_an_unreachable_address_is_a_clear_error(invoke, toy):
    pytest.importorskip("ray", reason="ray is not installed")
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = invoke(
        "run",
        str(toy),
        "--input",
        "in.jsonl",
        "--output",
        "out.jsonl",
        "--engine",
        "ray",
        "--address",
        f"127.0.0.1:{port}",
    )
    assert result.exit_code == 2
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.output
