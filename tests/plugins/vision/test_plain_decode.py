"""Plain decode code (no decoder slot): recognized from the stage's source as the scan
rule finds it, reduced decode measured on the workload's own files, applied by rebinding
the decoder's module-level name for the stage's function only, and shown as the exact
line to change where that name is out of reach."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.measure.profiler import profile
from pipetune.plugins.vision.changes.reduced_decode import rebound_stage
from pipetune.plugins.vision.code_decode import find_code_decodes, suggested_change
from pipetune.plugins.vision.fidelity import psnr
from pipetune.plugins.vision.rebind import Rebound, reachable
from pipetune.plugins.vision.recognize import find_decode_steps
from pipetune.plugins.vision.reduced_decode import DraftOpen, ReducedArrayRead

pytest.importorskip("PIL.Image", reason="Pillow is needed (pipetune[vision])")
pytest.importorskip("imageio.v3", reason="imageio is needed (scikit-image's dependency)")

import imageio.v3 as iio
from PIL import Image

SIZE = (96, 72)


def pil_stage(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((96, 72)))


def iio_stage(path: str, *, size: Any = SIZE) -> np.ndarray:
    image = iio.imread(path)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


COUNT = 0


def counting_stage(path: str) -> np.ndarray:
    global COUNT
    COUNT += 1
    return np.asarray(Image.open(path).convert("RGB").resize((96, 72)))


def _factory() -> Any:
    from PIL import Image as Local  # a closure variable: out of pipetune's reach

    def load(path: str) -> np.ndarray:
        return np.asarray(Local.open(path).convert("RGB").resize((96, 72)))

    return load


closure_stage = _factory()


@pytest.fixture(scope="module")
def pm():  # type: ignore[no-untyped-def]
    return get_plugin_manager(entry_points=False)


def test_found_where_the_scan_rule_finds_it() -> None:
    (pil,) = find_code_decodes(pil_stage)
    assert pil.decoder == "PIL.Image.open" and pil.written == "Image.open"
    assert pil.resized and pil.size == (96, 72)
    (array,) = find_code_decodes(iio_stage)
    assert array.decoder == "imageio.v3.imread" and array.written == "iio.imread"
    assert array.size is None and array.size_name == "size"
    pipeline = Pipeline("p", (Stage("a", pil_stage), Stage("b", iio_stage, slots={"size": SIZE})))
    steps = {s.stage: s for s in find_decode_steps(pipeline)}
    assert steps["a"].transformable and steps["a"].target == (96, 72)
    assert steps["b"].transformable and steps["b"].target == SIZE
    assert steps["b"].library == "imageio"


def test_out_of_reach_says_why() -> None:
    assert "global" in (reachable(counting_stage, ["Image.open"]) or "")
    assert "closure" in (reachable(closure_stage, ["Local.open"]) or "")
    (step,) = find_decode_steps(Pipeline("p", (Stage("c", closure_stage),)))
    assert not step.transformable and "closure" in (step.unreachable or "")


def test_rebinding_runs_the_drop_in_without_touching_the_module(jpegs: list[Path]) -> None:
    module = sys.modules[__name__]
    stage = Stage("a", pil_stage)
    changed = rebound_stage(stage, ("Image.open",), SIZE, 8)
    assert isinstance(changed.fn, Rebound) and stage.fn is pil_stage
    assert isinstance(changed.fn.replacements["Image.open"], DraftOpen)
    path = str(jpegs[0])
    full, reduced = stage(path), changed(path)
    assert module.Image is Image and Image.open is not changed.fn.replacements["Image.open"]
    assert np.array_equal(pil_stage(path), full)  # the original still decodes in full
    assert full.shape == reduced.shape and psnr(full, reduced) > 30
    again = pickle.loads(pickle.dumps(changed.fn))  # a process runtime rebuilds the rebinding
    assert np.array_equal(again(path), reduced)


def test_array_readers_get_the_same_array_at_reduced_size(
    jpegs: list[Path], tmp_path: Path
) -> None:
    stage = Stage("b", iio_stage, slots={"size": SIZE})
    changed = rebound_stage(stage, ("iio.imread",), SIZE, 8)
    reader = changed.fn.replacements["iio.imread"]
    assert isinstance(reader, ReducedArrayRead)
    path = str(jpegs[1])
    small = reader(path)
    assert small.dtype == np.uint8 and small.ndim == 3 and small.shape[1] < 1600
    assert small.shape[1] >= SIZE[0] and small.flags.writeable
    assert psnr(stage(path), changed(path)) > 30
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), cv2.imread(path))
    assert reader(str(png)).shape == iio.imread(str(png)).shape  # not a JPEG: as before


def test_a_recipe_on_changed_code_is_refused() -> None:
    with pytest.raises(PipelineError, match="not a library image decoder"):
        rebound_stage(Stage("a", pil_stage), ("np.asarray",), SIZE, 8)
    with pytest.raises(PipelineError, match="global"):
        rebound_stage(Stage("c", counting_stage), ("Image.open",), SIZE, 8)


def _proposals(pm: Any, pipeline: Pipeline, items: list[str]) -> tuple[Any, dict[str, Any]]:
    prof = profile(pipeline, Workload(items=tuple(items), repeats=1), pm=pm, sweep=False)
    found = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=_requirements()
        )
        for p in ps
        if p.plugin == "vision"
    }
    return prof, found


def _requirements() -> Any:
    from pipetune.core.kernel.model import Requirements

    return Requirements(max_accuracy_drop=0.05)


@pytest.mark.slow
def test_profile_measures_and_proposes_the_rebinding(pm: Any, jpegs: list[Path]) -> None:
    pipeline = Pipeline("p", (Stage("load", pil_stage, kind="decode"),), output_kind="image")
    items = [str(p) for p in jpegs]
    prof, found = _proposals(pm, pipeline, items)
    facts = prof.facts["vision"]["decode"]["load"]
    timing = facts["sample_timing_ms"]
    assert timing["images"] == len(jpegs) and timing["samples_per_side"] == 3 * len(jpegs)
    assert "stage as written" in timing["how"] and timing["full"] > 0 and timing["reduced"] > 0
    proposal = found["vision.reduced_decode"]
    assert proposal.applicable and proposal.params["rebind"] == ["Image.open"]
    assert proposal.params["target"] == [96, 72] and "Measured on 3" in proposal.rationale
    change = Change.from_proposal(proposal)
    changed = pm.materialize(change, pipeline, ".")
    assert psnr(pipeline.run(items[0]), changed.run(items[0])) > 30


@pytest.mark.slow
def test_out_of_reach_gets_the_exact_change_and_its_measured_gain(
    pm: Any, jpegs: list[Path]
) -> None:
    pipeline = Pipeline("p", (Stage("load", closure_stage, kind="decode"),), output_kind="image")
    _, found = _proposals(pm, pipeline, [str(p) for p in jpegs])
    proposal = found["vision.reduced_decode"]
    assert not proposal.applicable and "closure" in proposal.rationale
    (edit,) = proposal.evidence["one_line_change"]
    assert edit["before"].startswith("return np.asarray(Local.open(path)")
    assert '.draft("RGB", (96, 72))' in edit["after"] and "Measured on" in proposal.rationale
    assert "Pillow decode + resize" in proposal.evidence["sample_timing_ms"]["how"]


def test_one_line_changes_per_library() -> None:
    (pil,) = find_code_decodes(pil_stage)
    edit = suggested_change(pil, (96, 72), 8)
    assert edit is not None
    assert edit["after"].splitlines()[0] == "image = Image.open(path)"
    (array,) = find_code_decodes(iio_stage)
    edit = suggested_change(array, (96, 72), 4)
    assert edit is not None
    assert "cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_4)" in edit["after"]
    assert suggested_change(array, (96, 72), 1) is None  # no fixed factor fits every image


@pytest.mark.slow
def test_the_image_resize_example_decodes_in_one_stage_and_resizes_in_the_next(
    pm: Any,
) -> None:
    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root / "examples"))
    try:
        import image_resize as example
    finally:
        sys.path.remove(str(root / "examples"))
    photos, _ = example.make_photos(3)
    (step,) = find_decode_steps(example.pipeline)
    assert step.stage == "decode" and step.transformable and step.rebind == ("Image.open",)
    _, found = _proposals(pm, example.pipeline, photos)
    proposal = found["vision.reduced_decode"]
    assert proposal.params["target"] == [224, 224] and proposal.params["max_factor"] == 4
