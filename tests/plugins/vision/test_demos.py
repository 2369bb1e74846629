"""The quick demos build, run, profile and get the expected proposals."""

from __future__ import annotations

import pytest

pytest.importorskip("torch", reason="the demo classifiers need torch (pipetune[vision])")
pytest.importorskip("skimage", reason="the demo data needs scikit-image (pipetune[vision])")

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.measure.profiler import profile
from pipetune.plugins.vision.inputs import Skipped


@pytest.fixture(scope="module")
def pm():  # type: ignore[no-untyped-def]
    return get_plugin_manager(entry_points=False)


def test_demos_are_registered(pm) -> None:  # type: ignore[no-untyped-def]
    demos = pm.demos()
    assert demos["vision"][0] == "vision" and demos["video"][0] == "vision"


@pytest.mark.slow
def test_vision_demo_quick(pm) -> None:  # type: ignore[no-untyped-def]
    setup = pm.demos()["vision"][1].build(True)
    report = setup.notes["classifier"]
    assert 0 < report["validation_accuracy"] <= 1
    assert report["validation_entropy"]["classes_predicted"] > 1  # not a one-class model
    outputs = setup.pipeline.run_batch(list(setup.workload.items))
    assert len(outputs) == len(setup.workload.items)
    assert all(isinstance(o, str) for o in outputs)
    prof = profile(setup.pipeline, setup.workload.evolve(repeats=1), pm=pm)
    facts = prof.facts["vision"]["decode"]["decode"]
    assert facts["dct_factor"]["max"] == 8 and facts["model_input"] == [64, 64]
    assert facts["gpu_transfer"]["status"] == "skipped"
    proposals = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes",
            pipeline=setup.pipeline,
            profile=prof,
            requirements=setup.requirements,
        )
        for p in ps
    }
    assert proposals["vision.reduced_decode"].status == "proposed"
    assert proposals["vision.reduced_decode"].params["max_factor"] == 8
    assert proposals["vision.gpu_decode"].status == "unavailable"
    assert proposals["vision.gpu_decode"].reason


@pytest.mark.slow
def test_video_demo_quick(pm) -> None:  # type: ignore[no-untyped-def]
    setup = pm.demos()["video"][1].build(True)
    assert setup.notes["event_frame_fraction"] >= 0.10
    outputs = setup.pipeline.run(setup.workload.items[0])
    assert len(outputs) == len(setup.workload.labels[0])
    assert not any(isinstance(o, Skipped) for o in outputs)
    prof = profile(setup.pipeline, setup.workload.evolve(repeats=1), pm=pm)
    video = prof.facts["vision"]["video"]["classify"]
    assert video["frame_change"]["frames"] > 0
    ids = {
        p.id
        for _, ps in pm.call_each(
            "propose_changes",
            pipeline=setup.pipeline,
            profile=prof,
            requirements=setup.requirements,
        )
        for p in ps
    }
    assert {"vision.motion_gate", "vision.frame_stride"} <= ids


@pytest.mark.slow
def test_dali_change_runs_the_vision_demo(pm) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("nvidia.dali", reason="DALI is not installed")
    from pipetune.core.kernel.results import Change
    from pipetune.plugins.vision.proposals import DALI_DECODE

    setup = pm.demos()["vision"][1].build(True)
    change = Change(
        proposal=DALI_DECODE,
        plugin="vision",
        stage="decode",
        params={"device": "cpu", "threads": 1, "max_batch": 8},
    )
    dali = pm.materialize(change, setup.pipeline, ".")
    items = list(setup.workload.items)
    outputs = dali.run_batch(items)  # decode, resize and normalize in DALI; classify in torch
    baseline = setup.pipeline.run_batch(items)
    assert len(outputs) == len(items) and all(isinstance(o, str) for o in outputs)
    agreement = sum(a == b for a, b in zip(outputs, baseline, strict=True)) / len(items)
    assert agreement >= 0.75  # a tiny 64-pixel model; the full demo measures 1.000
