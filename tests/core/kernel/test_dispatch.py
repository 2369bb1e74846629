"""The change and output-kind contract: registration, dispatch by id, typed params,
recipe versions, one owner per output kind, and the deprecated hooks still working."""

from __future__ import annotations

import types
import warnings
from dataclasses import dataclass

import pytest

from pipetune import (
    Change,
    ChangeParams,
    ChangeType,
    Fidelity,
    OutputKind,
    ParamsError,
    Pipeline,
    PluginError,
    Proposal,
    Stage,
    Tuned,
    get_plugin_manager,
    hookimpl,
)
from pipetune.core.kernel import dispatch
from pipetune.core.kernel.errors import DuplicateError
from pipetune.core.loop.recipes import apply_changes, make_recipe


def _plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def _pm(*plugins):
    return get_plugin_manager(builtins=False, entry_points=False, plugins=plugins)


def double(item, *, factor):
    return item * factor


def _pipeline(factor=2):
    return Pipeline("p", (Stage("scale", double, slots={"factor": factor}),), output_kind="any")


@dataclass(frozen=True)
class ScaleParams(ChangeParams):
    factor: int


def _scale(change, pipeline, artifacts_dir):
    params = ScaleParams.of(change)
    stage = pipeline.stage(change.stage)
    return pipeline.replace(stage.name, stage.with_slots(factor=params.factor))


def _tune(proposal, pipeline, context):
    return Tuned(params={"factor": 3}, notes={"workload": len(context.workload.items)})


def _scale_type(**fields):
    fields.setdefault("tune", _tune)
    return ChangeType("toy.scale", ScaleParams, materialize=_scale, **fields)


def _proposal(**params):
    return Proposal(id="toy.scale", plugin="toy", stage="scale", title="scale", params=params)


def _changes(*types_):
    return _plugin(register_changes=lambda: list(types_))


class _Context:
    workload = types.SimpleNamespace(items=(1, 2, 3))
    requirements = None


def test_change_types_are_registered_with_their_owner():
    pm = _pm(("toy", _changes(_scale_type())))
    (registered,) = pm.change_types().values()
    assert registered.id == "toy.scale" and registered.owner == "toy"


def test_tune_and_materialize_dispatch_by_id_with_typed_params(tmp_path):
    pm = _pm(("toy", _changes(_scale_type(version=2, migrations={1: dict}))))
    tuned = pm.tune(_proposal(factor=2), _pipeline(), _Context())
    assert tuned.notes == {"workload": 3}
    change = pm.make_change(_proposal(factor=2), tuned)
    assert change.params == {"factor": 3} and change.params_version == 2
    new = pm.materialize(change, _pipeline(), tmp_path)
    assert new.run(5) == 15


def test_a_duplicate_change_id_names_both_plugins():
    pm = _pm(("toy", _changes(_scale_type())), ("other", _changes(_scale_type())))
    with pytest.raises(DuplicateError, match=r"both '(toy|other)' and '(toy|other)'"):
        pm.change_types()


def test_a_change_id_without_the_plugins_prefix_is_refused():
    pm = _pm(("other", _changes(_scale_type())))
    pm.strict = True
    with pytest.raises(PluginError, match=r"must read 'other.<change>'"):
        pm.change_types()


def test_a_proposal_from_another_plugin_cannot_use_a_registered_change_type():
    pm = _pm(("toy", _changes(_scale_type())))
    proposal = Proposal(id="toy.scale", plugin="intruder", stage="scale", title="x")
    with pytest.raises(PluginError, match="registered by 'toy'"):
        pm.tune(proposal, _pipeline(), _Context())


def test_params_outside_the_schema_are_refused_when_the_change_is_made():
    pm = _pm(("toy", _changes(_scale_type(tune=None))))
    with pytest.raises(ParamsError, match="unknown parameter 'scale'"):
        pm.make_change(_proposal(factor=2, scale=1), None)


def test_a_recipe_with_an_older_schema_is_migrated_and_a_newer_one_refused(tmp_path):
    migrate = {1: lambda params: {"factor": params["multiplier"]}}
    pm = _pm(("toy", _changes(_scale_type(version=2, migrations=migrate))))
    old = Change("toy.scale", "toy", "scale", params={"multiplier": 4})  # no version: 1
    new = apply_changes(pm, _pipeline(), [old], tmp_path, recipe_name="old.json")
    assert new.run(1) == 4
    future = Change("toy.scale", "toy", "scale", params={"factor": 4}, params_version=3)
    with pytest.raises(ParamsError) as caught:
        apply_changes(pm, _pipeline(), [future], tmp_path, recipe_name="future.json")
    text = str(caught.value)
    assert "future.json" in text and "toy.scale" in text and "version 3" in text
    assert "provides version 2" in text


def test_the_recipe_records_the_params_version():
    pm = _pm(("toy", _changes(_scale_type(version=2, migrations={1: dict}))))
    change = pm.make_change(_proposal(factor=2), None)
    recipe = make_recipe(_pipeline(), [change])
    assert recipe.to_dict()["changes"][0]["params_version"] == 2


def test_a_change_the_plugin_does_not_register_is_a_clear_error(tmp_path):
    pm = _pm(("toy", _changes(_scale_type())))
    change = Change("toy.gone", "toy", "scale")
    with pytest.raises(PluginError, match=r"no change type 'toy.gone'.*toy.scale"):
        pm.materialize(change, _pipeline(), tmp_path)


# -- output kinds ----------------------------------------------------------------------------


def _agreement(baseline, candidate, labels):
    same = sum(b == c for b, c in zip(baseline, candidate, strict=True))
    return Fidelity(metric="agreement", value=same / len(baseline), n=len(baseline))


def _kinds(*kinds):
    return _plugin(register_output_kinds=lambda: list(kinds))


def test_the_owner_of_a_kind_judges_and_is_recorded():
    pm = _pm(("toy", _kinds(OutputKind("scores", "agreement", _agreement))))
    fidelity = pm.compare("scores", [1, 2], [1, 3])
    assert fidelity.value == 0.5
    assert (fidelity.judged_by, fidelity.output_kind) == ("toy", "scores")


def test_a_second_registration_of_a_kind_names_both_plugins():
    kind = OutputKind("scores", "agreement", _agreement)
    pm = _pm(("toy", _kinds(kind)), ("other", _kinds(kind)))
    with pytest.raises(DuplicateError, match=r"both '(toy|other)' and '(toy|other)'"):
        pm.output_kinds()


def test_an_unknown_kind_lists_the_known_ones():
    pm = _pm(("toy", _kinds(OutputKind("scores", "agreement", _agreement))))
    with pytest.raises(PluginError, match=r"'rows'.*\(scores\)"):
        pm.compare("rows", [1], [1])


@pytest.mark.parametrize(("own", "expected"), [(None, 0.99), (0.9, 0.99), (0.995, 0.995)])
def test_a_plugin_may_tighten_the_users_threshold_but_never_loosen_it(own, expected):
    gated = dispatch.gate(Fidelity(metric="m", value=1.0, threshold=own), 0.99)
    assert gated.threshold == expected


def test_a_registered_kind_wins_over_a_deprecated_compare_outputs():
    def compare_outputs(output_kind, baseline, candidate):
        return Fidelity(metric="loose", value=1.0)

    pm = _pm(
        ("legacy", _plugin(compare_outputs=compare_outputs)),
        ("toy", _kinds(OutputKind("scores", "agreement", _agreement))),
    )
    assert pm.compare("scores", [1, 2], [1, 3]).judged_by == "toy"


# -- the deprecated hooks still work ---------------------------------------------------------


def test_deprecated_tune_materialize_and_compare_hooks_still_work(tmp_path):
    calls = []

    def tune_proposal(proposal, workload):
        calls.append(("tune", len(workload.items)))
        return Tuned(params={"factor": 5})

    def materialize_change(change, pipeline):
        stage = pipeline.stage(change.stage)
        return pipeline.replace(stage.name, stage.with_slots(factor=change.params["factor"]))

    def compare_outputs(output_kind, baseline, candidate):
        if output_kind == "old":
            return Fidelity(metric="old_agreement", value=1.0, n=len(baseline))
        return None

    dispatch._warned.clear()
    old = _plugin(
        tune_proposal=tune_proposal,
        materialize_change=materialize_change,
        compare_outputs=compare_outputs,
    )
    pm = _pm(("old", old))
    proposal = Proposal(id="old.scale", plugin="old", stage="scale", title="x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuned = pm.tune(proposal, _pipeline(), _Context())
        change = pm.make_change(proposal, tuned)
        new = pm.materialize(change, _pipeline(), tmp_path)
        fidelity = pm.compare("old", [1], [1])
    assert calls == [("tune", 3)] and new.run(1) == 5
    assert change.params_version is None
    assert fidelity.judged_by == "old" and fidelity.metric == "old_agreement"
    deprecated = {str(w.message).split(" implements ")[1].split(",")[0] for w in caught}
    assert deprecated == {"tune_proposal", "materialize_change", "compare_outputs"}
