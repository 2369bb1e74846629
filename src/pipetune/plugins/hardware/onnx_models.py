"""Stages that already hold an ONNX model: an ONNX Runtime session, a ``.onnx`` path, or an
``onnx.ModelProto``.

The replacement keeps the slot's type, so the user's code runs unchanged: a session is
replaced by a session (rebuilt with every graph optimization and sized thread pools, or
over an int8 copy of the model), or by :class:`OpenVINOSession`, which answers ``run``,
``get_inputs`` and ``get_outputs`` like one; a path by the path of the int8 copy; a
``ModelProto`` by the int8 ``ModelProto``. The original file is never written to.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipetune.core.kernel.artifacts import ArtifactStore, library_version
from pipetune.core.kernel.errors import Rejected
from pipetune.plugins.hardware.recognize import ONNX_PATH, ONNX_PROTO

if TYPE_CHECKING:
    from pipetune.plugins.hardware.apply import Candidate

SOURCE_FILE = "source.onnx"


def model_bytes(value: Any, kind: str) -> bytes:
    """The serialized model behind a slot value."""
    if kind == ONNX_PATH:
        return Path(value).read_bytes()
    if kind == ONNX_PROTO:
        return value.SerializeToString()
    path = getattr(value, "_model_path", None)
    if path:
        return Path(path).read_bytes()
    data = getattr(value, "_model_bytes", None)
    if data:
        return bytes(data)
    raise Rejected("cannot read the model behind this ONNX Runtime session")


def stored_source(store: ArtifactStore, data: bytes) -> tuple[str, Path]:
    """Copy the model into the artifact store once (keyed by its bytes), so variants are
    built beside it and the user's file is never touched."""
    key = store.key("onnx-source-v1", hashlib.sha256(data).hexdigest(), libraries=("onnxruntime",))
    path = store.path(key, SOURCE_FILE)
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return key, path


def int8_variant(source: Path, reduce_range: bool = False) -> Path:
    from pipetune.plugins.hardware.precision import quantize_onnx_dynamic

    suffix = "-pc" + ("-rr" if reduce_range else "")
    target = source.with_name(
        f"model.int8-dynamic{suffix}.ort{library_version('onnxruntime')}.onnx"
    )
    if not target.is_file():
        try:
            quantize_onnx_dynamic(source, target, reduce_range=reduce_range)
        except Exception as exc:
            message = " ".join(str(exc).split())[:300]
            raise Rejected(f"ONNX Runtime int8 quantization failed: {message}") from None
    return target


def build_replacement(
    kind: str,
    backend: str,
    model_file: Path,
    threads: int | None,
    hint: str = "LATENCY",
    spinning: bool | None = None,
) -> Any:
    """The slot value for a compiled or quantized ONNX model, of the slot's own type.
    ``spinning=False``: the session's idle threads sleep (ONNX Runtime) or float between
    cores (OpenVINO), for stages that share cores."""
    if kind == ONNX_PATH:
        return str(model_file)
    if kind == ONNX_PROTO:
        import onnx

        return onnx.load(str(model_file))
    if backend == "openvino":
        return OpenVINOSession(model_file, threads=threads, hint=hint, pinning=spinning)
    from pipetune.plugins.hardware.backends.onnxruntime import make_session

    return make_session(model_file, threads, spinning=spinning)


def candidate_replacement(kind: str, candidate: Candidate, model_file: Path) -> Any:
    """:func:`build_replacement` for ``candidate``: its backend, and its thread count,
    performance hint (``LATENCY`` unless it names one) and spinning options."""
    return build_replacement(
        kind,
        candidate.backend,
        model_file,
        candidate.options.get("threads"),
        candidate.options.get("hint", "LATENCY"),
        candidate.options.get("spinning"),
    )


class RecordingSession:
    """Wraps a session to record the feeds a stage passes (for a module-level check)."""

    def __init__(self, session: Any, limit: int = 16):
        self._session = session
        self.feeds: list[dict[str, np.ndarray]] = []
        self.outputs: list[list[np.ndarray]] = []
        self._limit = limit

    def run(self, output_names: Any, input_feed: Mapping[str, Any], run_options: Any = None) -> Any:
        result = self._session.run(output_names, input_feed, run_options)
        if len(self.feeds) < self._limit and output_names is None:
            self.feeds.append({k: np.array(v) for k, v in input_feed.items()})
            self.outputs.append([np.array(r) for r in result])
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class OpenVINOSession:
    """An OpenVINO compiled model answering like an ONNX Runtime session (``run``,
    ``get_inputs``, ``get_outputs``), with an explicit f32 precision hint."""

    pipetune_stand_in = True

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        hint: str = "LATENCY",
        pinning: bool | None = None,
    ):
        from pipetune.plugins.hardware.backends.onnxruntime import make_session
        from pipetune.plugins.hardware.backends.openvino import compile_model

        self.path, self.hint = Path(path), hint
        self.compiled, self.details = compile_model(
            str(path), "fp32", "CPU", hint, threads, pinning=pinning
        )
        # Node descriptions come from ONNX Runtime, exactly as the replaced session gave them.
        self._meta = make_session(path, 1)
        self._outputs = {port.get_any_name(): port for port in self.compiled.outputs}
        self._local = threading.local()

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: Any = None,
    ) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        results = request.infer(dict(input_feed))
        names = list(output_names) if output_names else [o.name for o in self.get_outputs()]
        return [np.asarray(results[self._outputs[name]]) for name in names]

    def get_inputs(self) -> Any:
        return self._meta.get_inputs()

    def get_outputs(self) -> Any:
        return self._meta.get_outputs()

    def get_providers(self) -> list[str]:
        return ["OpenVINO:" + ",".join(self.details["execution_devices"])]

    def describe(self) -> dict[str, Any]:
        return {"backend": "openvino", "precision": "fp32", **self.details}

    def __repr__(self) -> str:
        return f"OpenVINOSession({self.details['inference_precision']}, {self.details['device']})"
