"""``run_job`` on the local engine: every input ends as one output row or one error row."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.scale.job import JobSpec, load_pipeline, ship_stages, shipped_stages
from pipetune.scale.rows import RowOptions
from pipetune.scale.runner import RunRequest, plan_job, run_job
from tests.scale.conftest import read_jsonl


def _job(target, attribute="pipeline"):
    return JobSpec(
        factory=f"{target}:{attribute}",
        pipeline="toy-run",
        stages=("clean", "score"),
        sys_path=(str(target.parent),),
    )


def _rows(count, poison=None):
    return [{"id": i, "text": "POISON" if i == poison else f"Row {i} text"} for i in range(count)]


def test_outputs_are_keyed_by_id_and_failures_name_their_stage(
    toy_target, write_jsonl, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # sources are shown relative to the working folder
    source = write_jsonl(_rows(8, poison=2), extra=("{broken",))
    job = _job(toy_target)
    pipeline = load_pipeline(job)
    request = RunRequest(job, (str(source),), tmp_path / "out.jsonl")
    summary = run_job(request, pipeline)
    outputs = {row["id"]: row["output"] for row in read_jsonl(request.output)}
    assert sorted(outputs) == [0, 1, 3, 4, 5, 6, 7]
    assert outputs[4] == pipeline.run({"text": "Row 4 text"})
    errors = read_jsonl(request.errors_path)
    assert [(e["id"], e["stage"], e["exception"]) for e in errors] == [
        ("in.jsonl:9", "input", "MalformedRow"),
        (2, "score", "ValueError"),
    ]
    assert errors[0]["source"] == "in.jsonl:9" and errors[0]["row"] == "{broken"
    assert (summary.rows, summary.outputs, summary.errors, summary.malformed) == (9, 7, 2, 1)
    assert summary.errors_by_stage == {"input": 1, "score": 1}
    assert set(summary.stage_ms_per_row) == {"clean", "score"}
    assert summary.first_row_s is not None and 0 < summary.first_row_s <= summary.wall_s
    assert "first rows after" in summary.lines()[0]


def test_a_failing_batch_costs_only_its_bad_input(toy_target, write_jsonl, tmp_path):
    source = write_jsonl(_rows(9, poison=4))
    job = _job(toy_target, "batched")
    request = RunRequest(job, (str(source),), tmp_path / "out.jsonl")
    summary = run_job(request, load_pipeline(job))
    assert summary.outputs == 8
    assert [e["id"] for e in read_jsonl(request.errors_path)] == [4]


def test_duplicate_ids_are_errors_not_overwrites(toy_target, write_jsonl, tmp_path):
    source = write_jsonl([{"id": 1, "text": "a"}, {"id": 1, "text": "b"}])
    job = _job(toy_target)
    request = RunRequest(job, (str(source),), tmp_path / "out.jsonl")
    summary = run_job(request, load_pipeline(job))
    assert summary.outputs == 1 and summary.duplicates == 1
    (error,) = read_jsonl(request.errors_path)
    assert error["exception"] == "DuplicateId" and "already used by" in error["error"]


def test_worker_processes_rebuild_the_pipeline_from_the_job(toy_target, write_jsonl, tmp_path):
    source = write_jsonl(_rows(12, poison=5))
    job = _job(toy_target)
    pipeline = load_pipeline(job)
    threads = RunRequest(job, (str(source),), tmp_path / "threads.jsonl", workers=2)
    processes = RunRequest(
        job, (str(source),), tmp_path / "procs.jsonl", workers=2, executor="process"
    )
    run_job(threads, pipeline)
    run_job(processes, pipeline)
    assert sorted(map(str, read_jsonl(processes.output))) == sorted(
        map(str, read_jsonl(threads.output))
    )
    assert read_jsonl(processes.errors_path)[0]["stage"] == "score"


def test_existing_results_are_refused_and_kept(toy_target, write_jsonl, tmp_path):
    source = write_jsonl(_rows(2))
    (tmp_path / "out.jsonl").write_text("earlier results\n")
    job = _job(toy_target)
    request = RunRequest(job, (str(source),), tmp_path / "out.jsonl")
    with pytest.raises(ConfigError, match="--overwrite"):
        run_job(request, load_pipeline(job))
    assert (tmp_path / "out.jsonl").read_text() == "earlier results\n"
    with pytest.raises(ConfigError, match="is one of the inputs"):
        run_job(RunRequest(job, (str(source),), source, overwrite=True), load_pipeline(job))


def test_an_explicit_id_field_must_be_there(toy_target, write_jsonl, tmp_path):
    source = write_jsonl([{"doc": "a", "text": "x"}, {"text": "y"}])
    job = _job(toy_target)
    rows = RowOptions(id_field="doc", id_required=True)
    request = RunRequest(job, (str(source),), tmp_path / "out.jsonl", rows=rows)
    summary = run_job(request, load_pipeline(job))
    assert [r["id"] for r in read_jsonl(request.output)] == ["a"]
    assert summary.malformed == 1


def test_a_worker_that_builds_other_stages_is_refused(toy_target):
    wrong = JobSpec(factory=f"{toy_target}:pipeline", pipeline="toy-run", stages=("clean",))
    with pytest.raises(ConfigError, match="must build the same pipeline on every node"):
        load_pipeline(wrong)


def test_cheap_stages_ship_by_value_and_components_that_cannot_pickle_do_not(toy_target):
    import threading

    from pipetune import Stage

    pipeline = load_pipeline(_job(toy_target))
    blob = ship_stages(pipeline.stages, [str(toy_target)])
    assert blob is not None
    (clean, score) = shipped_stages(blob)
    assert score(clean({"text": " A b "})) == pipeline.run({"text": " A b "})
    assert ship_stages([Stage("locked", lambda x: x, slots={"lock": threading.Lock()})]) is None


def test_the_local_plan_says_how_the_runtime_runs_it(toy_target, write_jsonl, tmp_path):
    source = write_jsonl(_rows(2))
    job = _job(toy_target, "batched")
    request = RunRequest(job, (str(source),), tmp_path / "o.jsonl", workers=3)
    plan, profile = plan_job(request, load_pipeline(job))
    assert profile is None and plan.recipe_batch == 3
    assert plan.groups[0].workers == 3 and plan.groups[0].compute == "threads"


def test_a_ray_plan_from_a_profile_of_other_stages_is_refused(toy_target, write_jsonl, tmp_path):
    from tests.scale.conftest import stage_profile

    source = write_jsonl(_rows(2))
    job = _job(toy_target)
    request = RunRequest(job, (str(source),), tmp_path / "o.jsonl", engine="ray")
    wrong = stage_profile({"decode": (1.0, 1.0)})
    with pytest.raises(ConfigError, match="the profile is of stages"):
        plan_job(request, load_pipeline(job), profile=wrong, cpus=2)
    right = stage_profile({"clean": (0.1, 1.0), "score": (3.0, 1.0)})
    plan, _ = plan_job(request, load_pipeline(job), profile=right, cpus=2)
    assert "sampled rows" in plan.source and [g.name for g in plan.groups] == ["clean", "score"]
