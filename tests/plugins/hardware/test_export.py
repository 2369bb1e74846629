"""ONNX export from captured calls: hooks, artifacts, and exporter failures in one line."""

from __future__ import annotations

import pytest
import torch

from pipetune.core.kernel.errors import Rejected
from pipetune.plugins.hardware import export
from pipetune.plugins.hardware.export import (
    ExportedModel,
    capture_calls,
    ensure_export,
    summarize_export_error,
    weights_digest,
)

pytestmark = pytest.mark.slow  # torch.export / ONNX export of real modules

pytest.importorskip("onnxscript", reason="torch.onnx's default exporter needs onnxscript")
onnxruntime = pytest.importorskip("onnxruntime", reason="running exports needs onnxruntime")


def test_capture_records_real_calls_and_removes_its_hooks(mlp):
    before = weights_digest(mlp)
    with capture_calls(mlp, limit=2) as calls:
        for _ in range(3):
            mlp(torch.randn(5, 16))
    assert len(calls) == 2
    assert calls[0].args[0].shape == (5, 16) and calls[0].output.shape == (5, 4)
    assert not mlp._forward_hooks and not mlp._forward_pre_hooks
    assert weights_digest(mlp) == before


def test_capture_ignores_nested_calls_of_the_same_module():
    class Recursive(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, x, depth=1):
            return self.linear(x) if depth == 0 else self(x, depth=0)

    module = Recursive()
    with capture_calls(module) as calls:
        module(torch.ones(1, 2))
    assert len(calls) == 1 and calls[0].kwargs == {}


def test_calls_made_under_inference_mode_export_like_any_other(mlp, store, tmp_path):
    from pipetune.core.kernel.artifacts import ArtifactStore

    with capture_calls(mlp) as calls, torch.inference_mode():
        mlp(torch.randn(1, 16))
    assert not calls[0].args[0].is_inference() and not calls[0].output.is_inference()
    exported = ensure_export(mlp, calls[0], ArtifactStore(tmp_path), name="mlp")
    assert exported.path.is_file()


def test_export_has_dynamic_shapes_and_matches_eager(mlp, store):
    with capture_calls(mlp) as calls:
        mlp(torch.randn(1, 16))
    exported = ensure_export(mlp, calls[0], store, name="mlp")
    session = onnxruntime.InferenceSession(str(exported.path))
    (shape,) = [i.shape for i in session.get_inputs()]
    assert isinstance(shape[0], str)  # the batch dimension is symbolic
    x = torch.randn(7, 16)
    (out,) = session.run(None, {"x": x.numpy()})
    assert abs(out - mlp(x).detach().numpy()).max() < 1e-5
    inputs, outputs = exported.sample()
    assert inputs[0].shape == (1, 16) and outputs[0].shape == (1, 4)


def test_export_is_an_artifact_reused_without_exporting_again(mlp, store, monkeypatch):
    with capture_calls(mlp) as calls:
        mlp(torch.randn(1, 16))
    first = ensure_export(mlp, calls[0], store, name="mlp")

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the artifact exists")

    monkeypatch.setattr(export, "export_onnx", no_export)
    again = ensure_export(mlp, calls[0], store, name="mlp")
    assert again.folder == first.folder and again.signature == first.signature
    reloaded = ExportedModel.load(first.folder)
    assert reloaded.outputs == first.outputs


def test_export_key_changes_with_the_weights(mlp, store):
    import copy

    other = copy.deepcopy(mlp)
    with torch.no_grad():
        other.first.bias.add_(1.0)
    assert weights_digest(other) != weights_digest(mlp)


class ControlFlow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: cannot be captured as one graph
            return self.linear(x)
        return -self.linear(x)


def test_dynamic_control_flow_is_rejected_in_one_line(store):
    module = ControlFlow().eval()
    with capture_calls(module) as calls:
        module(torch.ones(2, 4))
    with pytest.raises(Rejected) as info:
        ensure_export(module, calls[0], store, name="model")
    message = str(info.value)
    assert "\n" not in message and len(message) <= 420
    assert message.startswith("ONNX export failed: torch.export could not capture the model")
    assert "data-dependent control flow" in message
    assert "test_export.py" in message and "if x.sum() > 0" in message


@torch.library.custom_op("pipetune_test::opaque", mutates_args=())
def opaque(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@opaque.register_fake
def _(x):
    return torch.empty_like(x)


class UnsupportedOp(torch.nn.Module):
    def forward(self, x):
        return opaque(x) + 1


def test_an_op_without_onnx_translation_is_rejected_in_one_line(store):
    module = UnsupportedOp()
    with capture_calls(module) as calls:
        module(torch.ones(2, 4))
    with pytest.raises(Rejected) as info:
        ensure_export(module, calls[0], store, name="model")
    message = str(info.value)
    assert "\n" not in message
    assert "an op with no ONNX translation" in message and "pipetune_test.opaque" in message


def test_summarize_handles_plain_errors():
    assert summarize_export_error(ValueError("bad\nthing")) == "ValueError: bad"
    assert summarize_export_error(RuntimeError("")) == "RuntimeError"
