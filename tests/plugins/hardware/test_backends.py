"""Each backend compiles the tiny models and matches eager; fallbacks are caught; missing
backends say why; the user's module is never changed."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pipetune.core.kernel.errors import Deferred, PipelineError, Rejected
from pipetune.plugins.hardware.backends import all_backends, get_backend
from pipetune.plugins.hardware.backends.base import BackendFallback
from pipetune.plugins.hardware.export import weights_digest
from pipetune.plugins.hardware.fidelity import compare_outputs

from .conftest import encode_batch, texts

pytestmark = pytest.mark.slow  # converts models (ONNX Runtime, OpenVINO, Core ML)


def _requires(name: str) -> None:
    status = get_backend(name).available()
    if not status:
        pytest.skip(f"{name} unavailable: {status.reason}")


def _bert_agreement(compiled, tiny_bert):
    batch = encode_batch(texts(6, seed=3))  # batch 6, padded: other shapes than the export
    with torch.no_grad():
        eager = tiny_bert(**batch)
    candidate = compiled(**batch)
    assert type(candidate) is type(eager)
    assert candidate.last_hidden_state.shape == eager.last_hidden_state.shape
    return compare_outputs([eager], [candidate])


def test_every_backend_reports_availability_with_a_reason():
    names = [backend.name for backend in all_backends()]
    assert names == ["onnxruntime", "openvino", "torch-cuda", "tensorrt", "coreml"]
    for backend in all_backends():
        status = backend.available()
        assert status.ok or status.reason, backend.name
    trt = get_backend("tensorrt")
    assert trt.verified is False
    if not trt.available():
        assert "pypi.nvidia.com" in trt.available().install


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_fp32_backends_match_eager_on_new_shapes(backend, tiny_bert, bert_export):
    _requires(backend)
    before = weights_digest(tiny_bert)
    compiled = get_backend(backend).load(bert_export, "fp32", source=tiny_bert)
    agreement = _bert_agreement(compiled, tiny_bert)
    assert agreement.within(1e-4), agreement.to_dict()
    assert agreement.argmax_agreement == 1.0
    assert compiled.config is tiny_bert.config  # attribute reads reach the eager module
    assert weights_digest(tiny_bert) == before


def test_compile_from_an_example_exports_through_the_store(mlp, store):
    _requires("onnxruntime")
    compiled = get_backend("onnxruntime").compile(mlp, (torch.randn(1, 16),), store=store)
    x = torch.randn(9, 16)
    assert torch.allclose(compiled(x), mlp(x), atol=1e-5)
    assert compiled.details["providers"] == ["CPUExecutionProvider"]
    assert compiled.details["graph_optimization"] == "ORT_ENABLE_ALL"


def test_onnxruntime_int8_is_close_and_keeps_an_artifact(tiny_bert, bert_export):
    _requires("onnxruntime")
    compiled = get_backend("onnxruntime").load(bert_export, "int8", source=tiny_bert)
    agreement = _bert_agreement(compiled, tiny_bert)
    assert agreement.max_abs_diff > 0  # really quantized
    assert agreement.mean_cosine > 0.95, agreement.to_dict()
    assert (bert_export.folder / compiled.details["model"]).is_file()
    assert compiled.details["quantization"] == "dynamic"


def test_onnxruntime_static_int8_uses_calibration_feeds(tiny_bert, bert_export, bert_call):
    _requires("onnxruntime")
    feeds = [
        dict(
            zip(
                bert_export.signature.input_names,
                bert_export.signature.feeds(bert_call.args, bert_call.kwargs),
                strict=True,
            )
        )
    ]
    compiled = get_backend("onnxruntime").load(
        bert_export, "int8", source=tiny_bert, quantization="static", calibration=feeds
    )
    assert "int8-static" in compiled.details["model"]
    assert _bert_agreement(compiled, tiny_bert).mean_cosine > 0.9
    with pytest.raises(Rejected, match="calibration"):
        get_backend("onnxruntime").load(
            bert_export, "int8", quantization="static", calibration=[], reduce_range=True
        )


def test_openvino_precision_hint_is_set_explicitly_and_read_back(tiny_bert, bert_export):
    _requires("openvino")
    compiled = get_backend("openvino").load(bert_export, "fp32", source=tiny_bert)
    hint = compiled.handle.get_property("INFERENCE_PRECISION_HINT")
    assert hint.get_type_name() == "f32"
    assert compiled.details["inference_precision"] == "f32"
    assert compiled.handle.get_property("PERFORMANCE_HINT") == "LATENCY"
    throughput = get_backend("openvino").load(bert_export, "fp32", hint="THROUGHPUT")
    assert throughput.details["performance_hint"] == "THROUGHPUT"


def test_openvino_bf16_on_purpose_when_the_cpu_has_it(tiny_bert, bert_export):
    _requires("openvino")
    from pipetune.plugins.hardware.backends.openvino import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        with pytest.raises(Rejected, match="no native bf16"):
            get_backend("openvino").load(bert_export, "bf16")
        return
    compiled = get_backend("openvino").load(bert_export, "bf16", source=tiny_bert)
    assert compiled.handle.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    agreement = _bert_agreement(compiled, tiny_bert)
    assert not agreement.within(1e-4)  # bf16 really drifts: why fp32 sets the hint
    assert agreement.mean_cosine > 0.99


def test_openvino_hint_not_honoured_is_a_fallback(bert_export, monkeypatch):
    _requires("openvino")
    from pipetune.plugins.hardware.backends import openvino as ov_backend

    real_core = ov_backend.core()

    class Drifting:
        def __init__(self, compiled):
            self._compiled = compiled

        def get_property(self, name):
            if name == "INFERENCE_PRECISION_HINT":
                import openvino as ov

                return ov.Type.bf16
            return self._compiled.get_property(name)

    class FakeCore:
        def read_model(self, path):
            return real_core.read_model(path)

        def compile_model(self, *args, **kwargs):
            return Drifting(real_core.compile_model(*args, **kwargs))

    monkeypatch.setattr(ov_backend, "core", lambda: FakeCore())
    with pytest.raises(BackendFallback, match=r"asked for f32 .* compiled for bf16"):
        get_backend("openvino").load(bert_export, "fp32")


def test_onnxruntime_provider_fallback_is_refused(bert_export):
    _requires("onnxruntime")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(BackendFallback, match="asked for CUDAExecutionProvider"):
        get_backend("onnxruntime").load(bert_export, "fp32", provider="CUDAExecutionProvider")


def test_compiled_model_refuses_mutation_and_wrong_calls(tiny_bert, bert_export):
    _requires("onnxruntime")
    compiled = get_backend("onnxruntime").load(bert_export, "fp32", source=tiny_bert)
    with pytest.raises(PipelineError, match="would change the eager module"):
        compiled.half()
    with pytest.raises(PipelineError, match="cannot be moved"):
        compiled.to("cuda")
    assert compiled.eval() is compiled and compiled.to("cpu") is compiled
    with pytest.raises(PipelineError, match="does not pass it"):
        compiled(input_ids=torch.ones(1, 3, dtype=torch.long))
    assert tiny_bert.training is False and next(tiny_bert.parameters()).dtype == torch.float32


def test_torch_cuda_says_why_it_is_unavailable():
    backend = get_backend("torch-cuda")
    status = backend.available()
    if torch.cuda.is_available():
        assert status.ok
    else:
        assert not status.ok and ("CUDA" in status.reason or "GPU" in status.reason)
        with pytest.raises(Rejected, match="unavailable"):
            backend.compile(torch.nn.Linear(2, 2), (torch.ones(1, 2),), "fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_compiles_on_a_copy_and_returns_host_outputs(tiny_bert, precision):
    before = weights_digest(tiny_bert)
    batch = encode_batch(texts(4, seed=5))
    compiled = get_backend("torch-cuda").compile(tiny_bert, batch, precision)
    out = compiled(**batch)
    with torch.no_grad():
        eager = tiny_bert(**batch)
    assert out.last_hidden_state.device.type == "cpu"
    assert out.last_hidden_state.dtype == torch.float32
    tolerance = 1e-3 if precision == "fp32" else 5e-2
    assert compare_outputs([eager], [out]).within(tolerance)
    assert weights_digest(tiny_bert) == before
    assert next(tiny_bert.parameters()).device.type == "cpu"


def test_tensorrt_boundary_graph_is_checked_and_run_on_onnxruntime(bert_export):
    _requires("onnxruntime")
    pytest.importorskip("onnx")
    from pipetune.plugins.hardware.backends.tensorrt import prepare_onnx

    report = prepare_onnx(bert_export)
    assert report["checker"] == "passed"
    assert report["onnxruntime_max_abs_diff"] < 1e-4
    assert "MatMul" in report["ops"] and report["opset"] >= 17
    assert report["command"].endswith(str(bert_export.folder))
    assert "--fp16" in report["trtexec"] and "input_ids:1x1" in report["trtexec"]
    if not get_backend("tensorrt").available():
        with pytest.raises(Rejected, match="tensorrt is unavailable"):
            get_backend("tensorrt").load(bert_export, "fp16")


def test_coreml_converts_here_and_defers_prediction(tiny_bert, bert_call, store):
    pytest.importorskip("coremltools", reason="Core ML conversion needs coremltools")
    from pipetune.plugins.hardware.backends.coreml import CoreMLBackend, inspect_package, on_macos

    if on_macos():
        pytest.skip("on macOS the package is loaded, not deferred")
    backend = CoreMLBackend()
    before = weights_digest(tiny_bert)
    with pytest.raises(Deferred) as info:
        backend.compile(tiny_bert, bert_call, "fp16", store=store)
    deferred = info.value
    assert deferred.artifact.endswith("model.mlpackage")
    assert deferred.command.startswith("python -m pipetune.plugins.hardware.backends.coreml")
    spec = inspect_package(deferred.artifact)
    assert spec["type"] == "mlProgram" and spec["precision"] == "fp16"
    assert [i["name"] for i in spec["inputs"]] == ["input_ids", "attention_mask"]
    assert {i["dtype"] for i in spec["inputs"]} == {"int32"}
    assert spec["inputs"][0]["ranges"][0] == [1, 64]  # a flexible batch
    assert [o["name"] for o in spec["outputs"]] == ["output_0", "output_1"]
    assert weights_digest(tiny_bert) == before
    assert not backend.available() and "macOS" in backend.available().reason


def test_coreml_fp32_package_spec(mlp, store):
    pytest.importorskip("coremltools", reason="Core ML conversion needs coremltools")
    from pipetune.plugins.hardware.backends.coreml import CoreMLBackend

    package = CoreMLBackend().convert(mlp, (torch.randn(1, 16),), "fp32", store=store)
    assert package.spec["precision"] == "fp32"
    assert package.spec["inputs"][0]["dtype"] == "float32"
    inputs, outputs = package.exported.sample()
    assert inputs[0].shape == (1, 16) and outputs[0].shape == (1, 4)


def test_precision_changes_work_on_copies(mlp):
    from pipetune.plugins.hardware.precision import cast_copy, torch_dynamic_int8

    before = weights_digest(mlp)
    quantized = torch_dynamic_int8(mlp)
    half = cast_copy(mlp, "bf16")
    x = torch.randn(3, 16)
    assert torch.allclose(quantized(x), mlp(x), atol=0.1)
    assert next(half.parameters()).dtype == torch.bfloat16
    assert weights_digest(mlp) == before
    assert next(mlp.parameters()).dtype == torch.float32
    assert type(mlp.first) is torch.nn.Linear


def test_training_mode_module_is_exported_from_an_eval_copy(store):
    pytest.importorskip("onnxscript")
    from pipetune.plugins.hardware.export import capture_calls, ensure_export

    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5))
    module.train()
    with capture_calls(module) as calls:
        module(torch.ones(2, 4))
    exported = ensure_export(copy.deepcopy(module), calls[0], store)
    assert module.training  # the user's module keeps its mode
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported.path))
    a = session.run(None, {"input": np.ones((2, 4), np.float32)})[0]
    b = session.run(None, {"input": np.ones((2, 4), np.float32)})[0]
    assert np.array_equal(a, b)  # no dropout in the exported graph


def test_compiled_model_copies_share_the_graph_and_refuse_pickling(tiny_bert, bert_export):
    import pickle

    _requires("onnxruntime")
    compiled = get_backend("onnxruntime").load(bert_export, "fp32", source=tiny_bert)
    assert copy.deepcopy(compiled) is compiled and copy.copy(compiled) is compiled
    with pytest.raises(PipelineError, match="load_recipe"):
        pickle.dumps(compiled)
