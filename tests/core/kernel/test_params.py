"""Typed change params: schema checks, typed read-back and version migrations."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pipetune import Change, ChangeParams, ChangeType, ParamsError
from pipetune.core.kernel.params import check_params, migrate_params


@dataclass(frozen=True)
class IndexParams(ChangeParams):
    nprobe: int
    target: float = 0.95
    slots: tuple[str, ...] = ()
    index: dict[str, object] | None = None


def _type(version: int = 1, migrations=None) -> ChangeType:
    return ChangeType(
        "toy.index",
        IndexParams,
        materialize=lambda change, pipeline, artifacts_dir: pipeline,
        version=version,
        migrations=migrations or {},
        owner="toy",
    )


def test_params_read_back_typed_from_a_change_with_json_lists():
    change = Change("toy.index", "toy", "s", params={"nprobe": 8, "slots": ["a", "b"]})
    params = IndexParams.of(change)
    assert params == IndexParams(nprobe=8, slots=("a", "b"))
    assert params.to_params() == {"nprobe": 8, "target": 0.95, "slots": ["a", "b"], "index": None}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"nprobe": 8, "nprob": 2}, "unknown parameter 'nprob'"),
        ({"target": 0.9}, "required parameter 'nprobe' is missing"),
        ({"nprobe": "8"}, "parameter 'nprobe' is '8' (str), not a int"),
        ({"nprobe": 8, "slots": [1]}, "parameter 'slots'"),
        ({"nprobe": True}, "parameter 'nprobe'"),
    ],
)
def test_params_that_do_not_fit_the_schema_name_the_change_and_the_key(params, message):
    with pytest.raises(ParamsError, match=r"change toy\.index") as caught:
        check_params(IndexParams, params, what="change toy.index")
    assert message in str(caught.value)


def test_numpy_scalars_count_as_numbers():
    np = pytest.importorskip("numpy")
    check_params(IndexParams, {"nprobe": np.int64(4), "target": np.float32(0.9)}, what="c")


def test_an_older_version_is_migrated_step_by_step():
    steps = {
        1: lambda p: {"nprobe": p["probes"], "target": p["target"]},
        2: lambda p: {**p, "target": p["target"] / 100},
    }
    migrated = migrate_params(_type(3, steps), {"probes": 4, "target": 95}, 1, where="recipe.json")
    assert migrated == {"nprobe": 4, "target": 0.95}


def test_a_newer_version_is_refused_naming_change_recipe_and_versions():
    with pytest.raises(ParamsError) as caught:
        migrate_params(_type(1), {"nprobe": 4}, 3, where="recipe.json")
    text = str(caught.value)
    assert "recipe.json" in text and "toy.index" in text
    assert "version 3" in text and "provides version 1" in text and "'toy'" in text


def test_a_missing_migration_step_is_refused():
    with pytest.raises(ParamsError, match="no migration from version 2 to 3"):
        migrate_params(_type(3, {1: dict}), {"nprobe": 4}, 1, where="recipe.json")
