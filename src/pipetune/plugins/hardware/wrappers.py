"""Compiled callables that stand in for an eager module in a stage slot.

A stage's code calls ``model(**encoded).last_hidden_state``; after compilation the slot
holds a :class:`CompiledModel` that takes the same arguments and returns the same
structure (a tensor, a tuple, a transformers ``ModelOutput``), so the user's code runs
unchanged. Attribute reads the code may make (``model.config``, ``model.device``) are
answered by the eager module it was compiled from; calls that would change that module
(``.half()``, ``.to("cuda")``, ``.train()``) are refused, because the compiled graph would
silently ignore them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import PipelineError
from pipetune.plugins.hardware.signature import CallSignature, rebuild_output

#: Methods of ``torch.nn.Module`` that mutate it: refused on a compiled model.
MUTATING = frozenset(
    {
        "half",
        "float",
        "double",
        "bfloat16",
        "cuda",
        "load_state_dict",
        "requires_grad_",
        "zero_grad",
        "apply",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_buffer",
        "register_parameter",
        "add_module",
        "share_memory",
    }
)


class CompiledModel:
    """An eager module's stand-in, backed by a compiled graph.

    Args:
        run: takes the graph's input arrays (in :attr:`signature` order) and returns its
            output arrays.
        signature: how the eager module was called.
        outputs: the eager output structure (see :mod:`~pipetune.plugins.hardware.signature`).
        backend: the backend name (``onnxruntime``, ``openvino``...).
        precision: ``fp32``, ``int8``, ``bf16``, ``fp16``.
        source: the eager module (never modified; answers attribute reads).
        details: what the backend confirmed (providers, precision hint read back...).
    """

    def __init__(
        self,
        run: Callable[[list[np.ndarray]], Sequence[np.ndarray]],
        signature: CallSignature,
        outputs: Mapping[str, Any],
        *,
        backend: str,
        precision: str = "fp32",
        source: Any = None,
        details: Mapping[str, Any] | None = None,
        handle: Any = None,
    ):
        self._run = run
        self.signature = signature
        self.outputs = outputs
        self.backend = backend
        self.precision = precision
        self.source = source
        self.details = dict(details or {})
        #: The runtime object (an ONNX Runtime session, an OpenVINO compiled model).
        self.handle = handle

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        feeds = self.signature.feeds(args, kwargs)
        results = self._run(feeds)
        tensors = [torch.from_numpy(np.ascontiguousarray(r)) for r in results]
        return rebuild_output(self.outputs, tensors)

    forward = __call__

    def with_runtime(
        self,
        run: Callable[[list[np.ndarray]], Sequence[np.ndarray]],
        handle: Any,
        details: Mapping[str, Any],
    ) -> CompiledModel:
        """The same stand-in (signature, outputs, backend, precision, source) on a rebuilt
        runtime: ``run`` over ``handle`` (a session recompiled with other settings)."""
        return CompiledModel(
            run,
            self.signature,
            self.outputs,
            backend=self.backend,
            precision=self.precision,
            source=self.source,
            details=details,
            handle=handle,
        )

    # -- the module-like surface ------------------------------------------------------------
    def eval(self) -> CompiledModel:
        return self

    def train(self, mode: bool = True) -> CompiledModel:
        if mode:
            raise PipelineError(
                f"{self!r} is compiled for inference; train the eager module instead"
            )
        return self

    def to(self, *args: Any, **kwargs: Any) -> CompiledModel:
        target = str(kwargs.get("device", args[0] if args else "cpu"))
        if target.startswith("cpu") and len(args) <= 1 and set(kwargs) <= {"device"}:
            return self  # already there: the graph runs where it was compiled for
        raise PipelineError(
            f"{self!r} cannot be moved or cast (.to({', '.join(map(str, args))})): "
            "compile the eager module for that device or precision instead"
        )

    def cpu(self) -> CompiledModel:
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_run", "source", "signature", "outputs", "handle"):
            raise AttributeError(name)
        if name in MUTATING:
            raise PipelineError(
                f"{self!r}: .{name}() would change the eager module, which the compiled "
                "graph does not follow; apply it to the eager module and compile again"
            )
        source = self.__dict__.get("source")
        if source is None:
            raise AttributeError(name)
        return getattr(source, name)

    # A compiled graph is read-only: copies share it (a session is not copyable anyway).
    def __copy__(self) -> CompiledModel:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> CompiledModel:
        return self

    def __getstate__(self) -> Any:
        raise PipelineError(
            f"{self!r} cannot be pickled (it holds a runtime session); in another process, "
            "re-apply the recipe with pipetune.load_recipe, which reloads the artifact"
        )

    def __repr__(self) -> str:
        name = type(self.source).__name__ if self.source is not None else self.signature.module
        return f"CompiledModel({name}, backend={self.backend}, precision={self.precision})"

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "inputs": list(self.signature.input_names),
            **self.details,
        }


def original_module(value: Any) -> Any:
    """The eager module behind a slot value: the value itself, or the module a compiled
    stand-in was built from (re-compiling starts from the eager weights, never from an
    already-quantized graph)."""
    value = behind_proxies(value)
    seen = 0
    while seen < 8 and getattr(value, "source", None) is not None and _is_stand_in(value):
        value = value.source
        seen += 1
    return value


def behind_proxies(value: Any) -> Any:
    """The value behind other plugins' proxies that can be rebuilt around another model
    (a type with ``__pipetune_rewrap__`` and ``__pipetune_wrapped__``: the llm plugin's
    KV-caching ``generate``), so the model behind them is recognized and rebuilt."""
    for _ in range(8):
        if getattr(type(value), "__pipetune_rewrap__", None) is None:
            break
        value = value.__pipetune_wrapped__
    return value


def rewrap(slot_value: Any, new: Any) -> Any:
    """``new`` inside the same proxies ``slot_value`` had (see :func:`behind_proxies`)."""
    if getattr(type(slot_value), "__pipetune_rewrap__", None) is None:
        return new
    return slot_value.__pipetune_rewrap__(rewrap(slot_value.__pipetune_wrapped__, new))


def _is_stand_in(value: Any) -> bool:
    return isinstance(value, CompiledModel) or getattr(value, "pipetune_stand_in", False)
