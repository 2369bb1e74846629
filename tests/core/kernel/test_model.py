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


# -- groups: related items stay on one side of a split ----------------------------------------


def _revisions(cases: int = 30) -> Workload:
    """Each case submitted, then revised 0-3 times: its revisions share a group."""
    items, keys = [], []
    for case in range(cases):
        for revision in range(case % 4 + 1):
            items.append(f"case {case} revision {revision}")
            keys.append(f"case-{case}")
    return Workload(items=tuple(items), groups=keys)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_a_group_split_keeps_every_group_on_one_side(seed):
    workload = _revisions().evolve(seed=seed)
    tune, holdout = workload.split(0.4)
    assert not set(tune.groups) & set(holdout.groups)
    assert len(tune) + len(holdout) == len(workload)
    assert abs(len(tune) / len(workload) - 0.4) < 0.1  # near the asked share
    tune_idx, hold_idx = workload.split_indices(0.4)
    assert tune.items == tuple(workload.items[i] for i in tune_idx)
    keys = workload.groups
    assert not {keys[i] for i in tune_idx} & {keys[i] for i in hold_idx}


def test_groups_can_be_a_key_function_and_are_kept_by_subsets():
    workload = Workload(
        items=tuple(f"{c}:{r}" for c in range(10) for r in range(3)),
        groups=lambda item: item.split(":")[0],
    )
    assert workload.group_count == 10 and workload.describe()["groups"] == 10
    part = workload.subset([0, 1, 2, 5])
    assert part.groups == ("0", "0", "0", "1")
    tune, holdout = workload.split(0.5)
    assert not set(tune.groups) & set(holdout.groups)
    # new items without new groups: the keys no longer line up, so they are dropped
    assert workload.evolve(items=("x",)).groups is None
    assert Workload(items=tuple(range(10))).split_indices(0.5) == Workload(
        items=tuple(range(10))
    ).split_indices(0.5)  # without groups: the item shuffle, unchanged


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (["a", "b"], "2 group keys for 4 items"),
        ("abcd", "groups must be a sequence of keys"),
        (5, "groups must be a sequence of keys"),
        ({"a": 1}, "groups must be a sequence of keys"),
        ([["a"], ["b"], ["c"], ["d"]], "group key of item 0 is a list, which is not hashable"),
    ],
)
def test_bad_groups_are_named(groups, message):
    with pytest.raises(ConfigError, match=message):
        Workload(items=(1, 2, 3, 4), groups=groups)


def test_a_groups_function_that_raises_names_the_item():
    with pytest.raises(ConfigError, match="the groups function raised on item 2"):
        Workload(items=(1, 2, 0, 4), groups=lambda x: 1 / x)


def test_one_group_cannot_be_split():
    workload = Workload(items=(1, 2, 3, 4), groups=["same"] * 4)
    with pytest.raises(ConfigError, match="all 4 items are in one group"):
        workload.split(0.5)


def test_jsonl_workloads_read_group_keys_from_a_field(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        '{"text": "a", "case": 1}\n{"text": "b", "case": 1}\n{"text": "c", "case": 2}\n'
    )
    workload = Workload.from_jsonl(path, field="text", group_field="case")
    assert workload.items == ("a", "b", "c") and workload.groups == (1, 1, 2)
    with pytest.raises(ConfigError, match=r"docs\.jsonl:1: no field 'user'"):
        Workload.from_jsonl(path, field="text", group_field="user")


def test_run_in_calls_serves_chunks_of_the_batch_size_or_one_at_a_time():
    calls: list[int] = []

    def batch(xs):
        calls.append(len(xs))
        return [x + 1 for x in xs]

    pipeline = Pipeline("p", (Stage("inc", lambda x: x + 1, batch_fn=batch),))
    assert pipeline.run_in_calls(range(5), batch_size=2) == [1, 2, 3, 4, 5]
    assert calls == [2, 2, 1]
    assert pipeline.run_in_calls(range(3)) == [1, 2, 3] and calls == [2, 2, 1]
