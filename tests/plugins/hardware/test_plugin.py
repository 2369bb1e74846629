"""The plugin through its hooks: facts, proposals, the tune step's decisions, materialize
from artifacts, deferral to other machines, and the user's objects left untouched."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from pipetune import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Deferred, PipelineError, Rejected
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.registry import Availability
from pipetune.core.kernel.results import Change, Fidelity, Proposal
from pipetune.plugins.hardware import export, tune_choice
from pipetune.plugins.hardware.apply import Candidate
from pipetune.plugins.hardware.export import weights_digest
from pipetune.plugins.hardware.wrappers import CompiledModel

from .conftest import texts

pytest.importorskip("onnxscript", reason="torch.onnx's default exporter needs onnxscript")
pytest.importorskip("onnxruntime", reason="the compiled path runs on onnxruntime")


@pytest.fixture(scope="module")
def pm():
    return get_plugin_manager(entry_points=False)


def _context(pm, pipeline, store, n=8, requirements=None):
    workload = Workload(texts(n, seed=11))
    return workload, TuneContext(pm, pipeline, workload, requirements or Requirements(), store)


def _tune(pm, proposal, pipeline, workload, context):
    assert context.workload is workload
    return pm.tune(proposal, pipeline, context)


def _proposal(change_id, stage, candidates, **params):
    return Proposal(
        id=change_id,
        plugin="hardware",
        stage=stage,
        title="test",
        params={"slot": "model", "kind": "torch", "candidates": candidates, **params},
    )


def test_plugin_modules_import_without_heavy_libraries():
    code = (
        "import sys; import pipetune.plugins.hardware.plugin as p; "
        "import pipetune.plugins.hardware as h; "
        "from pipetune.core.kernel.manager import get_plugin_manager; "
        "pm = get_plugin_manager(entry_points=False); names = sorted(pm.backends()); "
        "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'coremltools', 'onnx', "
        "'tensorrt', 'transformers') if m in sys.modules]; print(names, heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip() == "['coreml', 'onnxruntime', 'openvino', 'tensorrt', 'torch-cuda'] []"


def test_inspect_pipeline_reports_machine_backends_and_models(pm, text_pipeline):
    facts = dict(pm.call_each("inspect_pipeline", pipeline=text_pipeline))["hardware"]
    assert {"CPU", "Cores", "ISA", "GPU"} <= set(facts["machine"])
    assert facts["backends"]["tensorrt"]["verified"] is False
    (model, head) = sorted(facts["models"], key=lambda m: -m["parameters"])
    assert model["slot"] == "model" and model["class"].endswith("BertModel")
    assert model["dtype"] == "float32" and model["injected"] is True
    assert head["slot"] == "head"


@pytest.mark.slow
def test_profile_measures_the_module_and_proposals_follow(pm, text_pipeline):
    from pipetune.core.measure.profiler import profile

    measured = profile(text_pipeline, Workload(texts(6), repeats=1, warmup=0), pm=pm)
    (timing,) = measured.facts["hardware"]["model_timing"]
    assert timing["slot"] == "model" and 0 < timing["model_share"] <= 1
    assert timing["gflops_per_item"] > 0 and timing["calls_per_item"] == 1
    proposals = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes",
            pipeline=text_pipeline,
            profile=measured,
            requirements=Requirements(),
        )
        for p in ps
    }
    compile_ = proposals["hardware.compile"]
    assert compile_.stage == "classify" and compile_.status == "proposed"
    assert compile_.est_stage_speedup > 1 and compile_.params["candidates"]
    assert {c["backend"] for c in compile_.params["candidates"]} <= {"onnxruntime", "openvino"}
    precision = proposals["hardware.precision"]
    assert precision.accuracy_risk == "medium"
    assert {c["precision"] for c in precision.params["candidates"]} >= {"int8"}
    assert "hardware.instance" not in proposals  # no prices given


def test_tune_then_materialize_round_trip(pm, text_pipeline, store, fast_timing, monkeypatch):
    model = text_pipeline.stage("classify").slots["model"]
    before = weights_digest(model)
    workload, context = _context(pm, text_pipeline, store)
    proposal = _proposal(
        "hardware.compile",
        "classify",
        [
            Candidate("openvino", "fp32", {"hint": "LATENCY"}).to_dict(),
            Candidate("onnxruntime", "fp32").to_dict(),
        ],
    )
    tuned = _tune(pm, proposal, text_pipeline, workload, context)
    assert tuned.params["backend"] in ("openvino", "onnxruntime")
    assert tuned.est_stage_speedup == 2.0  # from the fake timings
    notes = tuned.notes["candidates"]
    assert all(n["status"] == "ok" and n["module"]["max_abs_diff"] < 1e-4 for n in notes)
    chosen = next(n for n in notes if n["candidate"] == tuned.notes["chosen"])
    assert chosen["fidelity"]["metric"] == "label_agreement" and chosen["fidelity"]["value"] == 1
    assert "export" in tuned.artifacts

    # A recipe stores the change as JSON; materialize reloads the artifact, never exports.
    change = Change.from_dict(
        json.loads(json.dumps(Change.from_proposal(proposal, tuned).to_dict()))
    )
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: pytest.fail("re-exported"))
    built = pm.materialize(change, text_pipeline, store.root)
    slot = built.stage("classify").slots["model"]
    assert isinstance(slot, CompiledModel) and slot.source is model
    assert built.stage("classify").meta["hardware"][0]["change"] == "hardware.compile"
    items = texts(10, seed=99)
    assert [built.run(x) for x in items] == [text_pipeline.run(x) for x in items]
    assert built.run_batch(items) == text_pipeline.run_batch(items)
    assert text_pipeline.stage("classify").slots["model"] is model
    assert weights_digest(model) == before


def test_int8_is_tuned_from_the_eager_module_behind_a_compiled_one(
    pm, text_pipeline, store, fast_timing
):
    workload, context = _context(pm, text_pipeline, store)
    compile_ = _proposal("hardware.compile", "classify", [Candidate("onnxruntime").to_dict()])
    tuned = _tune(pm, compile_, text_pipeline, workload, context)
    compiled = pm.materialize(Change.from_proposal(compile_, tuned), text_pipeline, store.root)
    precision = _proposal(
        "hardware.precision",
        "classify",
        [Candidate("onnxruntime", "int8", {"quantization": "dynamic"}).to_dict()],
    )
    context = TuneContext(pm, text_pipeline, workload, Requirements(max_accuracy_drop=0.5), store)
    tuned = _tune(pm, precision, compiled, workload, context)
    assert tuned.params["precision"] == "int8"
    assert tuned.artifacts["model"].endswith(".onnx") and "int8-dynamic" in tuned.artifacts["model"]
    built = pm.materialize(Change.from_proposal(precision, tuned), compiled, store.root)
    slot = built.stage("classify").slots["model"]
    assert slot.precision == "int8"
    assert slot.source is text_pipeline.stage("classify").slots["model"]


def test_slower_candidates_are_rejected_with_their_figures(pm, text_pipeline, store, monkeypatch):
    # Faster one at a time, slower in batches: throughput (the default metric) on a stage
    # with a batch function is decided by the batched figure.
    def timings(stages, inputs, *, batch_size=1, rounds=3):
        slower = 0.020 if batch_size > 1 else 0.005
        return {name: [0.010 if name == "current" else slower] for name in stages}

    monkeypatch.setattr(tune_choice, "interleaved_times", timings)
    workload, context = _context(pm, text_pipeline, store)
    proposal = _proposal("hardware.compile", "classify", [Candidate("onnxruntime").to_dict()])
    with pytest.raises(Rejected) as info:
        _tune(pm, proposal, text_pipeline, workload, context)
    assert (
        "onnxruntime fp32 0.50x batched (2.00x at batch 1): not faster than the current stage"
        in str(info.value)
    )
    latency = Requirements(p99_ms=100.0)  # a latency goal: batch 1 decides, and it is faster
    workload, context = _context(pm, text_pipeline, store, requirements=latency)
    tuned = _tune(pm, proposal, text_pipeline, workload, context)
    assert tuned.est_stage_speedup == 2.0


def test_a_fallback_is_rejected_with_the_reason(pm, text_pipeline, store, fast_timing):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    workload, context = _context(pm, text_pipeline, store)
    candidate = Candidate("onnxruntime", "fp32", {"provider": "CUDAExecutionProvider"})
    proposal = _proposal("hardware.compile", "classify", [candidate.to_dict()])
    with pytest.raises(Rejected, match="fell back: ONNX Runtime was asked for CUDAExecution"):
        _tune(pm, proposal, text_pipeline, workload, context)


def test_the_fidelity_gate_rejects(pm, text_pipeline, store, fast_timing, monkeypatch):
    workload, context = _context(pm, text_pipeline, store)
    monkeypatch.setattr(
        context,
        "fidelity",
        lambda outputs, **_: Fidelity("label_agreement", 0.9, threshold=0.99, n=len(outputs)),
    )
    proposal = _proposal(
        "hardware.precision", "classify", [Candidate("onnxruntime", "int8").to_dict()]
    )
    with pytest.raises(Rejected, match=r"label_agreement 0.9000 below the floor 0.9900"):
        _tune(pm, proposal, text_pipeline, workload, context)


class Branchy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        if x.mean() > 0:
            return self.linear(x)
        return self.linear(-x)


@pytest.mark.slow
def test_exporter_failure_rejects_the_proposal_in_one_line(pm, store, fast_timing):
    module = Branchy().eval()
    stage = Stage(
        "score",
        lambda item, *, model: int(model(torch.full((1, 4), float(len(item)))).argmax()),
        kind="inference",
        slots={"model": module},
    )
    pipeline = Pipeline("branchy", (stage,), output_kind="labels")
    workload, context = _context(pm, pipeline, store, n=3)
    proposal = _proposal("hardware.compile", "score", [Candidate("onnxruntime").to_dict()])
    with pytest.raises(Rejected) as info:
        _tune(pm, proposal, pipeline, workload, context)
    message = str(info.value)
    assert "\n" not in message and "data-dependent control flow" in message
    assert message.startswith("ONNX export failed")


@pytest.mark.slow
def test_missing_backends_make_the_proposal_unavailable(pm, text_pipeline, monkeypatch):
    from pipetune.core.measure.profiler import profile
    from pipetune.plugins.hardware.backends.onnxruntime import OnnxRuntimeBackend
    from pipetune.plugins.hardware.backends.openvino import OpenVINOBackend

    missing = Availability(False, "onnxruntime is not installed", 'pip install "pipetune[intel]"')
    monkeypatch.setattr(OnnxRuntimeBackend, "available", lambda self: missing)
    monkeypatch.setattr(
        OpenVINOBackend,
        "available",
        lambda self: Availability(
            False, "openvino is not installed", 'pip install "pipetune[intel]"'
        ),
    )
    measured = profile(text_pipeline, Workload(texts(3), repeats=1, warmup=0), pm=pm)
    proposals = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=text_pipeline, profile=measured, requirements=Requirements()
        )
        for p in ps
    }
    compile_ = proposals["hardware.compile"]
    assert compile_.status == "unavailable"
    assert "openvino is not installed" in compile_.reason
    assert compile_.install == 'pip install "pipetune[intel]"'


def test_materialize_without_its_artifact_is_a_clear_error(pm, text_pipeline, tmp_path):
    change = Change(
        proposal="hardware.compile",
        plugin="hardware",
        stage="classify",
        params={"slot": "model", "kind": "torch", "candidate": Candidate("onnxruntime").to_dict()},
        artifacts={"export": "gone"},
    )
    with pytest.raises(PipelineError, match="needs artifact 'gone', missing"):
        pm.materialize(change, text_pipeline, tmp_path)


@pytest.mark.slow
def test_apple_target_is_converted_and_deferred(pm, text_pipeline, store):
    pytest.importorskip("coremltools", reason="Core ML conversion needs coremltools")
    from pipetune.plugins.hardware.backends.coreml import on_macos

    if on_macos():
        pytest.skip("on a Mac Core ML is validated, not deferred")
    pipeline = text_pipeline.evolve(meta={"targets": ["apple"]})
    workload, context = _context(pm, pipeline, store, n=2)
    proposal = _proposal("hardware.coreml", "classify", [], precision="fp16")
    with pytest.raises(Deferred) as info:
        _tune(pm, proposal, pipeline, workload, context)
    deferred = info.value
    assert deferred.artifact.endswith("model.mlpackage")
    assert "coreml validate" in deferred.command
    assert deferred.details["spec"]["precision"] == "fp16"


def test_nvidia_target_is_exported_checked_and_deferred(pm, text_pipeline, store):
    pipeline = text_pipeline.evolve(meta={"targets": "nvidia"})
    workload, context = _context(pm, pipeline, store, n=2)
    proposal = _proposal("hardware.tensorrt", "classify", [], cross_target=True)
    with pytest.raises(Deferred) as info:
        _tune(pm, proposal, pipeline, workload, context)
    deferred = info.value
    assert deferred.artifact.endswith("model.onnx")
    assert deferred.details["checker"] == "passed"
    assert "tensorrt validate" in deferred.command


@pytest.mark.slow
def test_cross_target_proposals_follow_declared_targets(pm, text_pipeline):
    from pipetune.core.measure.profiler import profile

    pipeline = text_pipeline.evolve(meta={"targets": ["apple", "nvidia"]})
    measured = profile(pipeline, Workload(texts(2), repeats=1, warmup=0), pm=pm)
    ids = {
        p.id
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=measured, requirements=Requirements()
        )
        for p in ps
    }
    assert "hardware.coreml" in ids
    assert ("hardware.tensorrt" in ids) == (measured.machine.gpu is None)


def test_thread_pinning_sets_and_restores_torch_threads(mlp):
    from pipetune.core.kernel.results import Machine
    from pipetune.plugins.hardware.threads import ThreadPinned, advise_threads

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    previous = torch.get_num_threads()
    pinned = ThreadPinned(Probe(), 1)
    pinned(torch.ones(1))
    assert seen == [1] and torch.get_num_threads() == previous
    advice = advise_threads(
        Machine(cpu="x", cores=8, logical_cores=16, usable_cores=4), concurrency=2
    )
    assert (advice.intra_op, advice.streams) == (2, 2)
    assert "hyper-threads not used" in advice.reason and "4 CPUs usable" in advice.reason


@pytest.mark.slow
def test_instance_advice_when_prices_are_given(pm, text_pipeline):
    from pipetune.core.measure.profiler import profile

    measured = profile(text_pipeline, Workload(texts(3), repeats=1, warmup=0), pm=pm)
    requirements = Requirements(cost_per_hour=0.2, monthly_volume=1e7)
    (advice,) = [
        p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=text_pipeline, profile=measured, requirements=requirements
        )
        for p in ps
        if p.id == "hardware.instance"
    ]
    assert advice.applicable is False
    rows = {row["instance"]: row for row in advice.evidence["rows"]}
    assert {
        "this machine (measured)",
        "CPU (8 vCPU)",
        "T4-class",
        "A100-class",
        "H100-class",
    } <= set(rows)
    assert rows["this machine (measured)"]["bound"] == "measured"
    assert all(r["per_1000"] > 0 for r in rows.values())
    assert advice.evidence["assumptions"] and "estimate" in advice.rationale


@pytest.mark.slow
def test_onnx_session_slot_is_rebuilt_and_keeps_its_type(pm, mlp, store, fast_timing, tmp_path):
    import numpy as np
    import onnxruntime

    from pipetune.plugins.hardware.backends.base import example_call
    from pipetune.plugins.hardware.export import ensure_export
    from pipetune.plugins.hardware.onnx_models import OpenVINOSession

    onnx_file = ensure_export(mlp, example_call(mlp, (torch.randn(1, 16),)), store).path
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(onnx_file), options)
    name = session.get_inputs()[0].name

    def score(item, *, model):
        features = np.full((1, 16), float(len(item)) / 10, dtype=np.float32)
        return int(model.run(None, {name: features})[0].argmax())

    pipeline = Pipeline(
        "onnx",
        (Stage("score", score, kind="inference", slots={"model": session}),),
        output_kind="labels",
    )
    workload, context = _context(pm, pipeline, store, n=6)
    proposal = Proposal(
        id="hardware.compile",
        plugin="hardware",
        stage="score",
        title="t",
        params={
            "slot": "model",
            "kind": "onnx_session",
            "candidates": [
                Candidate("onnxruntime").to_dict(),
                Candidate("openvino", "fp32", {"hint": "LATENCY"}).to_dict(),
            ],
        },
    )
    tuned = _tune(pm, proposal, pipeline, workload, context)
    built = pm.materialize(Change.from_proposal(proposal, tuned), pipeline, store.root)
    slot = built.stage("score").slots["model"]
    assert isinstance(slot, onnxruntime.InferenceSession | OpenVINOSession)
    assert [built.run(x) for x in texts(5)] == [pipeline.run(x) for x in texts(5)]
    assert pipeline.stage("score").slots["model"] is session


def test_static_int8_calibrates_on_the_domain_plugins_inputs(store, text_pipeline, fast_timing):
    from pipetune import hookimpl

    from .conftest import encode

    asked = []

    class Plugin:  # stands in for the nlp plugin: inputs in the form the model receives
        @hookimpl
        def calibration_inputs(self, pipeline, stage, workload):
            asked.append(workload)
            return [encode(t) for t in workload.items]

    manager = get_plugin_manager(entry_points=False, plugins=[("calibrator", Plugin())])
    workload = Workload(texts(8, seed=11))
    calibration = Workload(texts(5, seed=123))  # the loop's split of its own
    context = TuneContext(
        manager,
        text_pipeline,
        workload,
        Requirements(max_accuracy_drop=0.5),
        store,
        calibration=calibration,
    )
    candidate = Candidate("onnxruntime", "int8", {"quantization": "static"})
    proposal = _proposal("hardware.precision", "classify", [candidate.to_dict()])
    tuned = _tune(manager, proposal, text_pipeline, workload, context)
    (result,) = tuned.notes["candidates"]
    assert result["calibration"] == {"source": "the calibration_inputs hook", "calls": 5}
    assert "int8-static" in tuned.artifacts["model"]
    # calibration data is never evaluation data: the hook was asked for the calibration
    # split, not the tuning split the candidates are scored on
    assert asked and all(w is calibration for w in asked)
