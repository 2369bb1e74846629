"""Recipes re-apply accepted changes from parameters and artifacts: no re-tuning."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError, PluginError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Change, Recipe, Tuned
from pipetune.core.loop.recipes import load_recipe, make_recipe
from tests.core.loop_toys import ToyPlugin, faster, manager, toy_pipeline


def project(item, *, matrix):
    return matrix @ np.full(matrix.shape[1], float(item))


def matrix_pipeline() -> Pipeline:
    matrix = np.arange(12, dtype=np.float64).reshape(3, 4)
    return Pipeline("mat", (Stage("project", project, slots={"matrix": matrix}),), "tensor")


def _build_artifact(store, matrix) -> str:
    key = store.key(matrix, "scaled", libraries=("numpy",))
    path = store.path(key, "index.npy")
    np.save(path, matrix * 0.5)
    return store.relative(path)


def test_load_recipe_materializes_from_artifacts_without_tuning(tmp_path):
    from pipetune.core.kernel.artifacts import ArtifactStore

    store = ArtifactStore(tmp_path / "artifacts")
    original = matrix_pipeline()
    before = hashlib.sha256(original.stage("project").slots["matrix"].tobytes()).hexdigest()
    relative = _build_artifact(store, original.stage("project").slots["matrix"])

    loads = []

    def reload(pipeline, params):
        loads.append(params)
        matrix = np.load(store.resolve(params["artifact"]))
        return pipeline.replace("project", pipeline.stage("project").with_slots(matrix=matrix))

    plugin = ToyPlugin(name="idx", changes={"index": reload}, tune=_never_tune)
    pm = manager(plugin)
    change = Change(
        proposal="idx.index",
        plugin="idx",
        stage="project",
        params={"artifact": relative},
        artifacts={"index": relative},
    )
    recipe = make_recipe(original, [change])
    path = recipe.save(tmp_path / "recipe.json")
    loaded = load_recipe(original, path, pm=pm, artifacts_dir=store.root)
    assert np.allclose(loaded.run(1.0), original.run(1.0) * 0.5)
    assert [c[0] for c in plugin.calls] == ["materialize"]  # no tune
    assert loads == [{"artifact": relative}]
    after = hashlib.sha256(original.stage("project").slots["matrix"].tobytes()).hexdigest()
    assert before == after  # the original's state is untouched
    assert Recipe.load(path) == recipe


def _never_tune(*args):
    raise AssertionError("load_recipe must never tune")


def test_a_recipe_for_another_pipeline_names_the_missing_stage():
    recipe = make_recipe(
        toy_pipeline(), [Change(proposal="toy.faster", plugin="toy", stage="work")]
    )
    with pytest.raises(
        ConfigError, match=r"needs stage 'work', which is missing .*stages: project"
    ):
        load_recipe(matrix_pipeline(), recipe, pm=manager(ToyPlugin()))


def test_a_recipe_needing_a_plugin_that_is_not_loaded_says_so():
    recipe = make_recipe(toy_pipeline(), [Change(proposal="gone.x", plugin="gone", stage="work")])
    with pytest.raises(PluginError, match="needs plugin 'gone', which is not loaded"):
        load_recipe(toy_pipeline(), recipe, pm=manager(ToyPlugin()))


def test_a_materialize_that_raises_is_a_clear_error():
    def broken(pipeline, params):
        raise KeyError("weights")

    pm = manager(ToyPlugin(changes={"faster": broken}))
    recipe = make_recipe(
        toy_pipeline(), [Change(proposal="toy.faster", plugin="toy", stage="work")]
    )
    with pytest.raises(
        PluginError, match=r"failed to materialize change 1 \(toy.faster\): KeyError"
    ):
        load_recipe(toy_pipeline(), recipe, pm=pm)


def test_changes_apply_in_order_and_may_touch_inserted_stages():
    def insert(pipeline, params):
        extra = Stage("extra", lambda x: x + 1)
        return pipeline.replace("work", [pipeline.stage("work"), extra])

    def bump_extra(pipeline, params):
        return pipeline.replace("extra", Stage("extra", lambda x: x + 100))

    pm = manager(ToyPlugin(changes={"insert": insert, "bump": bump_extra, "faster": faster}))
    original = toy_pipeline()
    recipe = make_recipe(
        original,
        [
            Change(proposal="toy.insert", plugin="toy", stage="work"),
            Change(proposal="toy.bump", plugin="toy", stage="extra"),
            Change(proposal="toy.faster", plugin="toy", stage="work", params={"factor": 2}),
        ],
    )
    result = load_recipe(original, recipe.to_dict(), pm=pm)
    assert result.stage_names == ("parse", "work", "extra", "label")
    assert result.stage("work").slots["delay"] == pytest.approx(0.002)
    assert result.run("3") == (6 + 100) % 7
    assert original.stage_names == ("parse", "work", "label")


def test_tuned_artifacts_travel_in_the_change():
    from pipetune.core.kernel.results import Proposal

    proposal = Proposal(id="toy.x", plugin="toy", stage="work", title="x", params={"a": 1})
    change = Change.from_proposal(proposal, Tuned(params={"b": 2}, artifacts={"index": "k/i"}))
    assert change.params == {"a": 1, "b": 2} and change.artifacts == {"index": "k/i"}


def test_a_recipe_carries_its_execution_context_and_load_recipe_applies_a_pin(tmp_path):
    from pipetune.core.kernel.results import ExecutionContext
    from pipetune.core.measure.execution import ExecutionContextWarning, capture

    torch = pytest.importorskip("torch", reason="torch sets the thread count applied here")
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    pinned = ExecutionContext(
        calling_thread="main",
        threads_requested=other,
        torch_intra_op=other,
        torch_inter_op=torch.get_num_interop_threads(),
    )
    change = Change(proposal="toy.faster", plugin="toy", stage="work")
    recipe = make_recipe(toy_pipeline(), [change], execution=pinned)
    path = recipe.save(tmp_path / "r.json")
    loaded = Recipe.load(path)
    assert loaded.execution == pinned  # survives the JSON round trip
    pm = manager(ToyPlugin(changes={"faster": faster}))
    try:
        with pytest.warns(ExecutionContextWarning, match=f"{other} measured, {before} here"):
            load_recipe(toy_pipeline(), path, pm=pm, artifacts_dir=tmp_path)
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)
    # warn only: the process keeps its settings
    with pytest.warns(ExecutionContextWarning):
        load_recipe(toy_pipeline(), path, pm=pm, artifacts_dir=tmp_path, execution="warn")
    assert torch.get_num_threads() == before
    # a recipe measured in this very context says nothing
    same = make_recipe(toy_pipeline(), [change], execution=capture())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_recipe(toy_pipeline(), same, pm=pm, artifacts_dir=tmp_path)
