"""TensorRT (NVIDIA): ONNX export -> engine (fp16 when asked) -> execution on the GPU.

**Unverified here** (``verified = False``): TensorRT's wheels come only from NVIDIA's
index and need an NVIDIA GPU, neither of which the machines that built pipetune have. What
is tested is everything up to the boundary: :func:`prepare_onnx` exports the graph
TensorRT would consume, runs ``onnx.checker`` on it and runs it on ONNX Runtime against
the eager outputs. The engine build and execution below follow TensorRT 10's Python API
(explicit batch, optimization profiles, ``execute_async_v3``) and are exercised only
where ``tensorrt`` imports and a GPU is present. No speedup is ever claimed for it by
pipetune's docs or benchmarks.

Off a TensorRT machine the trial is deferred with the ONNX file and the command that
finishes it there::

    python -m pipetune.plugins.hardware.backends.tensorrt validate EXPORT_FOLDER
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.artifacts import library_version
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.registry import Availability, Dependency
from pipetune.plugins.hardware.backends.base import ExportBackend, check_all
from pipetune.plugins.hardware.backends.onnxruntime import DEPENDENCIES as ONNX_DEPENDENCIES
from pipetune.plugins.hardware.backends.onnxruntime import make_session
from pipetune.plugins.hardware.export import ExportedModel
from pipetune.plugins.hardware.fidelity import max_abs_diffs
from pipetune.plugins.hardware.wrappers import CompiledModel

INSTALL = 'pip install --extra-index-url https://pypi.nvidia.com "pipetune[tensorrt]"'
DEPENDENCY = Dependency("tensorrt", "tensorrt", "building TensorRT engines")


def tensorrt_status() -> Availability:
    found = DEPENDENCY.check()
    if not found:
        return Availability(
            False,
            "tensorrt is not installed (its wheels come from NVIDIA's index, "
            "https://pypi.nvidia.com)",
            INSTALL,
        )
    from pipetune.plugins.hardware.backends.torch_cuda import cuda_status

    cuda = cuda_status()
    if not cuda:
        return Availability(False, f"TensorRT needs an NVIDIA GPU: {cuda.reason}")
    return check_all(*ONNX_DEPENDENCIES)


class TensorRTBackend(ExportBackend):
    name = "tensorrt"
    target = "nvidia"
    precisions = ("fp32", "fp16")
    verified = False

    def available(self) -> Availability:
        return tensorrt_status()

    def load(
        self,
        exported: ExportedModel,
        precision: str = "fp16",
        *,
        source: Any = None,
        max_batch: int = 64,
        max_length: int = 512,
        workspace_gb: float = 4.0,
        **_: Any,
    ) -> CompiledModel:
        status = tensorrt_status()
        if not status:
            raise Rejected(f"tensorrt is unavailable: {status.reason}")
        engine = engine_path(exported, precision)
        if not engine.is_file():
            build_engine(exported, engine, precision, max_batch, max_length, workspace_gb)
        runner = EngineRunner(engine, exported.signature.input_names, exported.output_names)
        details = {"engine": engine.name, "verified": False}
        return self._compiled(runner, exported, precision, source, details, runner)


def engine_path(exported: ExportedModel, precision: str) -> Path:
    """Engines are specific to the GPU model and the TensorRT version: both are in the
    name, so an engine is never reused on another GPU."""
    from pipetune.core.runtime.machine import detect_machine

    machine = detect_machine()
    gpu = (machine.gpu or "gpu").replace(" ", "_").replace("/", "_")
    version = library_version("tensorrt")
    return exported.folder / f"model.{precision}.trt{version}.{gpu}.engine"


def profile_shapes(
    exported: ExportedModel, max_batch: int, max_length: int
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes per input for the optimization profile: dimension 0 from 1
    to ``max_batch``, a second dimension of integer inputs (token ids, masks) from 1 to
    ``max_length``; other dimensions fixed at the example's size; the example is the
    optimum."""
    shapes = {}
    for spec in exported.signature.inputs:
        example = tuple(int(d) for d in spec.example_shape)
        low, high = list(example), list(example)
        if example:
            low[0], high[0] = 1, max(max_batch, example[0])
        if len(example) == 2 and not spec.dtype.startswith("float"):
            low[1], high[1] = 1, max(max_length, example[1])
        shapes[spec.name] = (tuple(low), example, tuple(high))
    return shapes


def build_engine(
    exported: ExportedModel,
    target: Path,
    precision: str,
    max_batch: int = 64,
    max_length: int = 512,
    workspace_gb: float = 4.0,
) -> Path:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(exported.path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Rejected(f"TensorRT could not parse the ONNX graph: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            raise Rejected("this GPU has no fast fp16: TensorRT fp16 would not pay")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile_shapes(exported, max_batch, max_length).items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise Rejected("TensorRT could not build an engine for this graph (see its log)")
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(target)
    return target


class EngineRunner:
    """Runs a serialized engine on torch CUDA tensors (inputs through pinned memory)."""

    def __init__(self, engine: Path, inputs: Sequence[str], outputs: Sequence[str]):
        import tensorrt as trt

        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(engine.read_bytes())
        if self.engine is None:
            raise Rejected(f"TensorRT could not load the engine {engine.name}")
        self.context = self.engine.create_execution_context()
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self._lock = threading.Lock()  # an execution context is not thread-safe

    def __call__(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        trt = self._trt
        with self._lock:
            stream = torch.cuda.current_stream()
            keep = []
            for name, array in zip(self.inputs, feeds, strict=True):
                wanted = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                host = torch.from_numpy(np.ascontiguousarray(array.astype(wanted, copy=False)))
                device = host.pin_memory().to("cuda", non_blocking=True)
                self.context.set_input_shape(name, tuple(device.shape))
                self.context.set_tensor_address(name, device.data_ptr())
                keep.append(device)
            results = []
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                out = torch.empty(shape, dtype=_torch_dtype(dtype), device="cuda")
                self.context.set_tensor_address(name, out.data_ptr())
                results.append(out)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise PipelineError("TensorRT execution failed")
            stream.synchronize()
            return [(r.float() if r.is_floating_point() else r).cpu().numpy() for r in results]


def _torch_dtype(dtype: np.dtype) -> Any:
    import torch

    return {
        np.dtype("float32"): torch.float32,
        np.dtype("float16"): torch.float16,
        np.dtype("int32"): torch.int32,
        np.dtype("int64"): torch.int64,
        np.dtype("bool"): torch.bool,
        np.dtype("int8"): torch.int8,
    }[dtype]


# -- the boundary that is tested here --------------------------------------------------------


def prepare_onnx(exported: ExportedModel, *, tolerance: float = 1e-3) -> dict[str, Any]:
    """Check the graph TensorRT would consume: ``onnx.checker`` (full check, with shape
    inference), then a run on ONNX Runtime's CPU provider on the captured example,
    compared with the eager outputs. Raises :class:`Rejected` when the graph is invalid
    or wrong; returns the report (ops, opset, max-abs-diff, the command to finish)."""
    import onnx

    try:
        onnx.checker.check_model(str(exported.path), full_check=True)
    except Exception as exc:
        raise Rejected(f"the ONNX graph for TensorRT is invalid: {exc}") from None
    model = onnx.load(str(exported.path), load_external_data=False)
    ops = sorted({node.op_type for node in model.graph.node})
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    inputs, expected = exported.sample()
    session = make_session(exported.path)
    names = [i.name for i in session.get_inputs()]
    outputs = session.run(None, dict(zip(names, inputs, strict=True)))
    diffs = max_abs_diffs(outputs, expected)
    worst = max(diffs) if diffs else 0.0
    scale = max((float(np.max(np.abs(e))) for e in expected if e.size), default=1.0)
    if worst > tolerance * max(1.0, scale):
        raise Rejected(
            f"the ONNX graph for TensorRT disagrees with the eager model on ONNX Runtime "
            f"(max-abs-diff {worst:.2e})"
        )
    shapes = profile_shapes(exported, 64, 512)
    trtexec = (
        f"trtexec --onnx={exported.path} --fp16 --saveEngine={exported.folder}/model.fp16.engine "
        + " ".join(
            f"--{kind}Shapes="
            + ",".join(f"{n}:{'x'.join(map(str, s[i]))}" for n, s in shapes.items())
            for i, kind in enumerate(("min", "opt", "max"))
        )
    )
    return {
        "onnx": str(exported.path),
        "opset": opset,
        "ops": ops,
        "checker": "passed",
        "onnxruntime_max_abs_diff": worst,
        "profile_shapes": {n: [list(s) for s in v] for n, v in shapes.items()},
        "command": validate_command(exported.folder),
        "trtexec": trtexec,
    }


def validate_command(folder: Path) -> str:
    return f"python -m pipetune.plugins.hardware.backends.tensorrt validate {folder}"


def validate(folder: str | Path, precision: str = "fp16", repeats: int = 50) -> dict[str, Any]:
    """On a TensorRT machine: build the engine, run the stored example, compare with the
    stored eager outputs, and time it against ONNX Runtime on the same inputs."""
    exported = ExportedModel.load(folder)
    compiled = TensorRTBackend().load(exported, precision)
    inputs, expected = exported.sample()
    outputs = compiled._run(list(inputs))
    diffs = max_abs_diffs(outputs, expected)
    started = time.perf_counter()
    for _ in range(repeats):
        compiled._run(list(inputs))
    return {
        "engine": compiled.details.get("engine"),
        "max_abs_diff": max(diffs) if diffs else 0.0,
        "ms_per_call": (time.perf_counter() - started) / repeats * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipetune.plugins.hardware.backends.tensorrt")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="build the engine and compare (needs tensorrt)")
    check.add_argument("folder")
    check.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    prep = sub.add_parser("check", help="check the ONNX graph on ONNX Runtime (any machine)")
    prep.add_argument("folder")
    args = parser.parse_args(argv)
    if args.command == "check":
        print(json.dumps(prepare_onnx(ExportedModel.load(args.folder)), indent=2))
        return 0
    status = tensorrt_status()
    if not status:
        print(f"tensorrt is unavailable: {status.reason}", file=sys.stderr)
        return 2
    print(json.dumps(validate(args.folder, args.precision), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
