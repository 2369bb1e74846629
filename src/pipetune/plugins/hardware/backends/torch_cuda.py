"""torch on an NVIDIA GPU: fp16/bf16 weights, ``torch.compile`` with CUDA graphs, and
pinned-memory transfers.

* The module is deep-copied before it is moved or cast (``.to(device, dtype)`` mutates a
  module in place): the user's module stays where it was, in the precision it had.
* ``torch.compile(mode="reduce-overhead")`` captures CUDA graphs: one launch replays the
  whole forward, which removes the per-kernel launch cost that dominates small batches.
  A graph is recorded per input shape, so variable-length inputs should be padded to a
  few bucket lengths (the nlp plugin's length bucketing) for graphs to be reused.
* Inputs go through page-locked (pinned) host memory so the host-to-device copy is
  asynchronous; outputs come back to the device and dtype the eager module's outputs had
  (copied out of the CUDA graph's memory pool, which the next replay overwrites).

No GPU on the machine that wrote this: :meth:`available` says why, and the tests that
need a device skip.
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import threading
from typing import Any

from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.registry import Availability, Backend
from pipetune.plugins.hardware.backends.base import example_call

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def cuda_status() -> Availability:
    """Whether torch sees a CUDA device. torch is imported only when an NVIDIA GPU was
    detected or torch is already loaded (``pipetune plugins`` must stay fast)."""
    if importlib.util.find_spec("torch") is None:
        return Availability(False, "torch is not installed", 'pip install "pipetune[nvidia]"')
    if "torch" not in sys.modules:
        from pipetune.core.runtime.machine import detect_machine

        if detect_machine().gpu is None:
            return Availability(False, "no NVIDIA GPU detected (NVML, nvidia-smi)")
    import torch

    if not torch.cuda.is_available():
        build = (
            "a CPU-only build of torch"
            if torch.version.cuda is None
            else f"torch built for CUDA {torch.version.cuda}"
        )
        return Availability(False, f"torch {torch.__version__} sees no CUDA device ({build})")
    return Availability(True)


class TorchCudaBackend(Backend):
    name = "torch-cuda"
    target = "nvidia"
    precisions = ("fp32", "fp16", "bf16")

    def available(self) -> Availability:
        return cuda_status()

    def compile(
        self,
        model: Any,
        example_inputs: Any,  # what base.example_call takes, or None
        precision: str = "fp16",
        *,
        cuda_graphs: bool = True,
        device: str = "cuda",
        warmup: int = 3,
        **_: Any,
    ) -> TorchCudaModel:
        import torch

        status = cuda_status()
        if not status:
            raise Rejected(f"torch-cuda is unavailable: {status.reason}")
        if precision not in DTYPES:
            raise Rejected(f"torch-cuda offers {', '.join(DTYPES)}, not {precision}")
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise Rejected(
                f"{torch.cuda.get_device_name()} has no bf16 support (compute capability < 8.0)"
            )
        call = example_call(model, example_inputs) if example_inputs is not None else None
        dtype = getattr(torch, DTYPES[precision])
        clone = copy.deepcopy(model)  # .to() below mutates: never on the user's module
        clone.eval()
        clone.to(device=device, dtype=dtype)
        runner = clone
        if cuda_graphs:
            runner = torch.compile(clone, mode="reduce-overhead", fullgraph=False)
        wrapped = TorchCudaModel(
            runner,
            source=model,
            device=device,
            dtype=dtype,
            precision=precision,
            cuda_graphs=cuda_graphs,
        )
        if call is not None:
            # Compile and record the graph now, not in the first timed call.
            for _warm in range(max(1, warmup)):
                wrapped(*call.args, **call.kwargs)
            torch.cuda.synchronize()
        return wrapped


class TorchCudaModel:
    """Calls a GPU copy of a module with the eager module's convention: inputs on the
    host come in through pinned memory, outputs go back where the eager ones were."""

    pipetune_stand_in = True

    def __init__(
        self,
        runner: Any,
        *,
        source: Any,
        device: str,
        dtype: Any,
        precision: str,
        cuda_graphs: bool,
    ):
        import torch

        self.runner = runner
        self.source = source
        self.device = torch.device(device)
        self.dtype = dtype
        self.precision = precision
        self.cuda_graphs = cuda_graphs
        self.backend = "torch-cuda"
        parameter = next(iter(source.parameters()), None) if hasattr(source, "parameters") else None
        self.source_device = parameter.device if parameter is not None else torch.device("cpu")
        self.source_dtype = parameter.dtype if parameter is not None else torch.float32
        # torch.compile'd CUDA graphs are per thread; calls are serialized.
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch
        from torch.utils._pytree import tree_map

        def to_device(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            if value.device.type == "cpu":
                value = value.pin_memory()
            value = value.to(self.device, non_blocking=True)
            return value.to(self.dtype) if value.is_floating_point() else value

        def back(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            if value.is_floating_point():
                value = value.to(self.source_dtype)
            # .to() of another device copies; on the same device clone out of the graph pool
            if value.device != self.source_device:
                return value.to(self.source_device)
            return value.clone()

        with self._lock, torch.inference_mode():
            args, kwargs = tree_map(to_device, (args, kwargs))
            if self.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            output = self.runner(*args, **kwargs)
            return tree_map(back, output)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("source", "runner"):
            raise AttributeError(name)
        source = self.__dict__.get("source")
        if source is None:
            raise AttributeError(name)
        if name in ("half", "float", "bfloat16", "cuda", "to", "load_state_dict", "train"):
            raise PipelineError(
                f"{self!r}: .{name}() would change the eager module, not the GPU copy"
            )
        return getattr(source, name)

    def eval(self) -> TorchCudaModel:
        return self

    def __repr__(self) -> str:
        graphs = ", CUDA graphs" if self.cuda_graphs else ""
        return f"TorchCudaModel({type(self.source).__name__}, {self.precision}{graphs})"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "device": str(self.device),
            "cuda_graphs": self.cuda_graphs,
        }
