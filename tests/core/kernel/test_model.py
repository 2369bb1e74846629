import pytest

from pipetune import ConfigError, Pipeline, PipelineError, Requirements, Stage, Workload


def scale(x, *, factor):
    return x * factor


def test_stage_passes_slots_by_name_and_with_slots_copies():
    stage = Stage("scale", scale, slots={"factor": 2, "unused": object()})
    assert stage(3) == 6
    assert stage.injects("factor") and not stage.injects("unused")
    tripled = stage.with_slots(factor=3)
    assert tripled(3) == 9 and stage(3) == 6  # the original is untouched


def test_pipeline_replace_returns_new_pipeline_and_inserts():
    a = Stage("a", lambda x: x + 1)
    b = Stage("b", lambda x: x * 10)
    pipeline = Pipeline("p", (a, b))
    extra = Stage("a2", lambda x: x - 1)
    longer = pipeline.replace("a", [a, extra])
    assert longer.stage_names == ("a", "a2", "b") and pipeline.stage_names == ("a", "b")
    assert longer.run(1) == 10 and pipeline.run(1) == 20


def test_pipeline_rejects_bad_declarations():
    with pytest.raises(PipelineError, match="no stages"):
        Pipeline("empty", ())
    with pytest.raises(PipelineError, match="two stages named"):
        Pipeline("dup", (Stage("a", abs), Stage("a", abs)))
    with pytest.raises(PipelineError, match="not a pipetune Stage"):
        Pipeline("bad", (abs,))


def test_workload_jsonl_names_the_malformed_line(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text('{"text": "a", "y": 1}\n{"text": "b"\n')
    with pytest.raises(ConfigError, match=r"w.jsonl:2"):
        Workload.from_jsonl(path, field="text")
    path.write_text('{"text": "a", "y": 1}\n{"text": "b", "y": 0}\n')
    workload = Workload.from_jsonl(path, field="text", label_field="y")
    assert workload.items == ("a", "b") and workload.labels == (1, 0)


def test_workload_split_is_disjoint_and_complete():
    workload = Workload(items=tuple(range(100)), labels=tuple(range(100)))
    tune, hold = workload.split(0.3)
    assert len(tune) == 30 and len(hold) == 70
    assert set(tune.items) | set(hold.items) == set(range(100))
    assert tune.items == tune.labels


def test_min_speedup_is_a_relative_bound():
    requirements = Requirements(min_speedup=10)
    assert requirements.check(50.0, {}, speedup=12.0) == []
    assert requirements.check(50.0, {}, speedup=9.5) == [
        "speedup 9.50x < 10x the original's throughput"
    ]
    assert requirements.check(50.0, {}) == ["speedup not measured < 10x the original's throughput"]
    with pytest.raises(ConfigError):
        Requirements(min_speedup=0)
    assert Requirements.from_dict({"min_speedup": 3}).min_speedup == 3


def test_requirements_metric_and_unknown_keys():
    assert Requirements().metric == "throughput"
    assert Requirements(p99_ms=50).metric == "p99"
    with pytest.raises(ConfigError, match="unknown requirement key"):
        Requirements.from_dict({"p99": 50})
    with pytest.raises(ConfigError, match="positive"):
        Requirements(p99_ms=-1)
