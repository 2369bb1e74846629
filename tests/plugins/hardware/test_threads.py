"""The thread plan (``hardware.threads``): proposed for the stages worth measuring, tuned
by timing every count (the decisions are checked on scripted timings, never this machine's
speed), materialized per stage and per session, recorded in the recipe, and the compiled
backends' sessions built without spinning when stages share cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipetune import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.results import Change, Proposal, Recipe
from pipetune.core.runtime.threads import stage_plan
from pipetune.plugins.hardware import thread_tune
from pipetune.plugins.hardware.apply import Candidate
from pipetune.plugins.hardware.thread_plan import apply_plan, ladder, session_threads

ort = pytest.importorskip("onnxruntime", reason="sessions are ONNX Runtime's")
onnx = pytest.importorskip("onnx", reason="the test model is built with onnx.helper")


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(entry_points=False)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    from onnx import TensorProto, helper, numpy_helper

    weights = np.arange(32, dtype=np.float32).reshape(8, 4) / 10
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def seen_threads(item, *, model):
    with torch.no_grad():
        model(torch.full((1, 16), float(item)))
    return torch.get_num_threads()


def score(item, *, session):
    x = np.full((1, 8), float(item), dtype=np.float32)
    return session.run(None, {"x": x})[0].tolist()


def prepare(item):
    return float(item) % 7


def two_stages(mlp, session=None) -> Pipeline:
    last = (
        Stage("score", score, kind="inference", slots={"session": session})
        if session is not None
        else Stage("classify", seen_threads, kind="inference", slots={"model": mlp})
    )
    return Pipeline("two", (Stage("prepare", prepare), last), output_kind="any")


def _proposal(stages, counts=(1, 2), **params) -> Proposal:
    return Proposal(
        id="hardware.threads",
        plugin="hardware",
        stage="*",
        title="threads",
        params={"stages": {s: {} for s in stages}, "counts": list(counts), **params},
    )


def test_the_ladder_tries_every_count_up_to_eight_cores_then_steps():
    assert ladder(1) == [1] and ladder(2) == [1, 2] and ladder(8) == list(range(1, 9))
    assert ladder(16) == [1, 2, 3, 4, 6, 8, 12, 16] and ladder(20)[-1] == 20


@pytest.mark.slow
def test_the_plan_proposal_names_the_model_stages_and_every_count(pm, mlp):
    from pipetune.core.measure.profiler import profile
    from pipetune.plugins.hardware.proposals import thread_plan

    pipeline = two_stages(mlp)
    measured = profile(pipeline, Workload(list(range(6)), repeats=1, warmup=0), pm=pm)
    proposal = thread_plan(pipeline, measured)
    cores = proposal.params["cores"]
    assert proposal.id == "hardware.threads" and proposal.stage == "*"
    assert "classify" in proposal.params["stages"]
    assert proposal.params["counts"] == ladder(cores) and proposal.params["shared"] is True
    # once a plan is in force, it is not proposed again
    planned = apply_plan(pipeline, {"classify": {"threads": 1}})
    assert thread_plan(planned, measured) is None


def _scripted(monkeypatch, per_label):
    """Timings by variant label; every variant still runs once (errors must surface)."""

    def fake(variants, items, rounds):
        for pipeline in variants.values():
            pipeline.run(items[0])
        return {label: [per_label(label)] for label in variants}

    monkeypatch.setattr(thread_tune, "interleaved", fake)


def test_tune_keeps_each_stages_fastest_count_and_records_the_figures(pm, mlp, monkeypatch):
    pipeline = two_stages(mlp)
    times = {"current": 0.010, "classify@1": 0.004, "classify@2": 0.011, "plan": 0.004}
    times |= {"prepare@1": 0.0099, "prepare@2": 0.010}  # within 2 %: not worth a plan
    _scripted(monkeypatch, times.__getitem__)
    workload = Workload(list(range(8)))
    context = TuneContext(pm, pipeline, workload, Requirements(), None)  # type: ignore[arg-type]
    tuned = pm.tune(_proposal(["prepare", "classify"]), pipeline, context)
    assert tuned.params["stages"] == {"classify": {"threads": 1, "spinning": False}}
    assert tuned.est_stage_speedup == pytest.approx(2.5)
    assert tuned.notes["ms_per_input"]["classify@1"] == 4.0
    assert tuned.notes["plan"] == "classify: 1 thread" and "host_load" in tuned.notes
    change = pm.make_change(_proposal(["classify"]), tuned)
    fast = pm.materialize(change, pipeline, ".")
    assert fast.run(3) == 1 and stage_plan(fast.stage("classify"))["threads"] == 1
    assert stage_plan(pipeline.stage("classify")) is None  # the user's pipeline as it was


def test_tune_rejects_with_the_figures_when_no_count_beats_the_current_settings(
    pm, mlp, monkeypatch
):
    pipeline = two_stages(mlp)
    _scripted(monkeypatch, lambda label: 0.010)
    context = TuneContext(pm, pipeline, Workload(list(range(8))), Requirements(), None)  # type: ignore[arg-type]
    with pytest.raises(Rejected, match=r"no thread count beat.*classify@1 10\.00 ms/input"):
        pm.tune(_proposal(["classify"]), pipeline, context)
    # a combination that loses when measured together is rejected too
    times = {"current": 0.010, "classify@1": 0.005, "classify@2": 0.011, "plan": 0.012}
    _scripted(monkeypatch, times.__getitem__)
    with pytest.raises(Rejected, match="together measured"):
        pm.tune(_proposal(["classify"]), pipeline, context)


def test_with_several_calls_in_flight_one_count_is_tried_for_every_stage(pm, mlp, monkeypatch):
    pipeline = two_stages(mlp)
    labels: list = []

    def per_label(label):
        labels.append(label)
        return 0.004 if label in ("*@1", "plan") else 0.010

    _scripted(monkeypatch, per_label)
    context = TuneContext(pm, pipeline, Workload(list(range(8))), Requirements(), None)  # type: ignore[arg-type]
    tuned = pm.tune(_proposal(["prepare", "classify"], uniform=True), pipeline, context)
    assert set(tuned.params["stages"]) == {"prepare", "classify"}
    assert "*@2" in labels and "classify@1" not in labels


def test_a_session_is_rebuilt_with_its_count_and_without_spinning(pm, mlp, onnx_file):
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    pipeline = two_stages(mlp, session)
    assert session_threads(session)["spinning"] is True
    change = Change(
        proposal="hardware.threads",
        plugin="hardware",
        stage="*",
        params={"stages": {"score": {"threads": 1, "spinning": False}}},
        params_version=2,
    )
    fast = pm.materialize(change, pipeline, ".")
    rebuilt = fast.stage("score").slots["session"]
    assert rebuilt is not session
    assert session_threads(rebuilt) == {"backend": "onnxruntime", "threads": 1, "spinning": False}
    assert fast.run(2) == pipeline.run(2)
    assert pipeline.stage("score").slots["session"] is session  # the user's, untouched
    with pytest.raises(PipelineError, match="names stage 'nope'"):
        apply_plan(pipeline, {"nope": {"threads": 1}})


def test_a_version_1_change_becomes_a_plan_on_its_own_stage(pm, mlp, tmp_path):
    from pipetune import load_recipe

    pipeline = two_stages(mlp)
    v1 = Change(
        proposal="hardware.threads",
        plugin="hardware",
        stage="classify",
        params={
            "slot": "model",
            "kind": "torch",
            "candidate": {"backend": "torch", "precision": "fp32", "options": {"threads": 1}},
        },
        params_version=1,
    )
    recipe = Recipe(pipeline="two", changes=(v1,), stages=pipeline.stage_names)
    loaded = load_recipe(pipeline, recipe, pm=pm, artifacts_dir=tmp_path, execution="ignore")
    assert stage_plan(loaded.stage("classify")) == {"threads": 1}


def test_compiled_backends_do_not_spin_when_stages_share_cores(mlp, onnx_file):
    from pipetune.plugins.hardware.threads import current_intra_op_threads
    from pipetune.plugins.hardware.tune import with_threads

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    pipeline = two_stages(mlp, session)
    int8 = Candidate("onnxruntime", "int8", {"quantization": "dynamic"})
    shared = with_threads(int8, pipeline, pipeline.stage("score"))
    assert shared.options["spinning"] is False
    assert shared.options["threads"] == current_intra_op_threads()
    alone = Pipeline("one", (pipeline.stage("score"),))
    assert "spinning" not in with_threads(int8, alone, alone.stage("score")).options
    planned = apply_plan(pipeline, {"score": {"threads": 1, "spinning": True}})
    from_plan = with_threads(int8, planned, planned.stage("score"))
    assert from_plan.options["threads"] == 1 and from_plan.options["spinning"] is True
    assert with_threads(Candidate("torch", "int8"), pipeline, pipeline.stage("score")).options == {}


def test_a_compiled_stand_in_is_rebuilt_on_its_own_artifact(tiny_bert, bert_export, bert_call):
    from pipetune.plugins.hardware.backends.onnxruntime import OnnxRuntimeBackend
    from pipetune.plugins.hardware.thread_plan import session_with_threads

    compiled = OnnxRuntimeBackend().load(bert_export, "fp32", source=tiny_bert, threads=2)
    rebuilt = session_with_threads(compiled, 1, False)
    assert session_threads(rebuilt) == {"backend": "onnxruntime", "threads": 1, "spinning": False}
    assert session_threads(compiled)["threads"] == 2
    before = compiled(*bert_call.args, **bert_call.kwargs).last_hidden_state
    after = rebuilt(*bert_call.args, **bert_call.kwargs).last_hidden_state
    assert torch.allclose(before, after, atol=1e-5)
    assert rebuilt.source is tiny_bert and rebuilt.details["intra_op_threads"] == 1


def test_an_openvino_stand_in_is_recompiled_with_its_count_and_no_pinning(onnx_file):
    pytest.importorskip("openvino", reason="the OpenVINO stand-in needs openvino")
    from pipetune.plugins.hardware.onnx_models import OpenVINOSession
    from pipetune.plugins.hardware.thread_plan import session_with_threads

    session = OpenVINOSession(onnx_file, threads=2)
    rebuilt = session_with_threads(session, 1, False)
    assert session_threads(rebuilt) == {"backend": "openvino", "threads": 1}
    assert rebuilt.details["cpu_pinning"] is False
    x = {"x": np.ones((1, 8), dtype=np.float32)}
    assert np.allclose(rebuilt.run(None, x)[0], session.run(None, x)[0])
