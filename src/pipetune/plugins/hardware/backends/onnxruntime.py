"""ONNX Runtime on the CPU (and on a GPU through its CUDA provider, when asked for).

The session runs with every graph optimization (operator fusion: attention, GELU, layer
normalization), intra-op threads sized to the physical cores, and a single inter-op
thread (a pipeline stage runs one graph at a time). ``int8`` quantizes the export with
ONNX Runtime's quantizer into a second artifact beside it. The providers the session
really uses are read back: asking for CUDA and getting the CPU is a fallback, refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.artifacts import library_version
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.registry import Availability, Dependency
from pipetune.plugins.hardware.backends.base import BackendFallback, ExportBackend, check_all
from pipetune.plugins.hardware.export import ExportedModel
from pipetune.plugins.hardware.wrappers import CompiledModel

CPU = "CPUExecutionProvider"
DEPENDENCIES = (
    Dependency("onnxruntime", "intel", "running exported models"),
    Dependency("onnx", "intel", "exporting torch models to ONNX"),
    Dependency("onnxscript", "intel", "torch.onnx's default exporter"),
)
QUANTIZATIONS = ("dynamic", "static")


class OnnxRuntimeBackend(ExportBackend):
    name = "onnxruntime"
    target = "cpu"
    precisions = ("fp32", "int8")

    def available(self) -> Availability:
        return check_all(*DEPENDENCIES)

    def load(
        self,
        exported: ExportedModel,
        precision: str = "fp32",
        *,
        source: Any = None,
        threads: int | None = None,
        inter_op_threads: int = 1,
        provider: str = CPU,
        quantization: str = "dynamic",
        calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
        reduce_range: bool = False,
        model_file: str | Path | None = None,
        spinning: bool | None = None,
        **_: Any,
    ) -> CompiledModel:
        """Options: ``threads`` (intra-op; default: torch's current intra-op count, else the
        physical cores), ``spinning`` (``False``: idle pool threads sleep instead of
        spinning, for stages that share cores; ``None``: ONNX Runtime's default), ``provider``,
        ``quantization`` (``dynamic`` or ``static`` with ``calibration`` feeds) for int8,
        ``model_file`` (an already-built variant of the export, e.g. its int8 file:
        reloaded as is)."""
        path = exported.path
        if model_file is not None:
            path = Path(model_file)
        elif precision == "int8":
            path = int8_model(exported, quantization, calibration, reduce_range)
        elif precision != "fp32":
            raise Rejected(f"onnxruntime does not offer {precision} here")
        session = make_session(path, threads, inter_op_threads, provider, spinning=spinning)
        names = [i.name for i in session.get_inputs()]
        if tuple(names) != exported.signature.input_names:
            raise Rejected(
                f"the exported graph takes {names}, the eager call passes "
                f"{list(exported.signature.input_names)}"
            )

        def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
            return session.run(None, dict(zip(names, feeds, strict=True)))

        options = session.get_session_options()
        details = {
            "providers": session.get_providers(),
            "graph_optimization": str(options.graph_optimization_level).rsplit(".", 1)[-1],
            "intra_op_threads": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "spinning": spinning_of(options),
            "model": path.name,
        }
        if precision == "int8":
            details["quantization"] = quantization
        return self._compiled(run, exported, precision, source, details, session)


#: ONNX Runtime's session options for spinning idle pool threads (on by default).
SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def make_session(
    path: str | Path | bytes,
    threads: int | None = None,
    inter_op_threads: int = 1,
    provider: str = CPU,
    *,
    spinning: bool | None = None,
    base: Any = None,
) -> Any:
    """An inference session checked to run on ``provider``: all graph optimizations (or
    those of ``base``, the options of a session being rebuilt), ``threads`` intra-op
    threads, and with ``spinning=False`` pool threads that sleep when idle instead of
    spinning (stages that share cores: a spinning pool slows the next stage down)."""
    import onnxruntime as ort

    from pipetune.plugins.hardware.threads import current_intra_op_threads

    options = ort.SessionOptions()
    if base is not None:
        options.graph_optimization_level = base.graph_optimization_level
        options.execution_mode = base.execution_mode
    else:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads or current_intra_op_threads())
    options.inter_op_num_threads = int(inter_op_threads)
    options.log_severity_level = 3  # errors only: the fallback check below speaks for it
    if spinning is not None:
        for key in SPIN_KEYS:
            options.add_session_config_entry(key, "1" if spinning else "0")
    providers = [provider] if provider == CPU else [provider, CPU]
    model = path if isinstance(path, bytes) else str(path)
    try:
        session = ort.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types per failure
        message = " ".join(str(exc).split())[:300]
        raise Rejected(f"ONNX Runtime could not load the model: {message}") from None
    check_provider(session, provider)
    return session


def spinning_of(options: Any) -> bool:
    """Whether a session's intra-op pool spins when idle (ONNX Runtime's default: yes)."""
    try:
        return options.get_session_config_entry(SPIN_KEYS[0]) != "0"
    except Exception:  # the entry was never set: the default
        return True


def check_provider(session: Any, provider: str) -> None:
    """Refuse a session that silently fell back to another provider."""
    actual = session.get_providers()
    if not actual or actual[0] != provider:
        raise BackendFallback(
            f"ONNX Runtime was asked for {provider} but the session runs on "
            f"{', '.join(actual) or 'nothing'}: it fell back (for CUDA, install "
            "onnxruntime-gpu and make a GPU visible)"
        )


def int8_model(
    exported: ExportedModel,
    quantization: str = "dynamic",
    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
    reduce_range: bool = False,
) -> Path:
    """The int8 version of an export, built once beside it and reused."""
    from pipetune.plugins.hardware.precision import quantize_onnx_dynamic, quantize_onnx_static

    if quantization not in QUANTIZATIONS:
        raise Rejected(f"unknown int8 quantization {quantization!r} (known: dynamic, static)")
    suffix = "-pc" + ("-rr" if reduce_range else "")
    if quantization == "static":
        suffix += "-" + _feeds_digest(calibration or ())
    version = library_version("onnxruntime")
    target = exported.folder / f"model.int8-{quantization}{suffix}.ort{version}.onnx"
    if target.is_file():
        return target
    try:
        if quantization == "dynamic":
            return quantize_onnx_dynamic(exported.path, target, reduce_range=reduce_range)
        return quantize_onnx_static(
            exported.path, target, list(calibration or ()), reduce_range=reduce_range
        )
    except Rejected:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        raise Rejected(f"ONNX Runtime int8 {quantization} quantization failed: {message}") from None


def _feeds_digest(feeds: Sequence[Mapping[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for feed in feeds:
        for name in sorted(feed):
            array = np.ascontiguousarray(feed[name])
            digest.update(f"{name}{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:12]
