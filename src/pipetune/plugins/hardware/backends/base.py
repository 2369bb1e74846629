"""What the backends built on an ONNX export share."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.registry import Availability, Backend, Dependency
from pipetune.plugins.hardware.export import CapturedCall, ExportedModel, ensure_export
from pipetune.plugins.hardware.signature import is_tensor
from pipetune.plugins.hardware.wrappers import CompiledModel


class BackendFallback(Rejected):
    """A backend ran the model somewhere else than asked (the CUDA provider missing, so
    ONNX Runtime quietly used the CPU; a precision hint not honoured). The trial is
    rejected with this reason: a silent fallback must never pass as a speedup."""


def check_all(*dependencies: Dependency) -> Availability:
    for dependency in dependencies:
        found = dependency.check()
        if not found:
            return found
    return Availability(True)


def example_call(model: Any, example_inputs: Any) -> CapturedCall:
    """Normalize ``Backend.compile``'s example: a captured call, a mapping of keyword
    arguments, a sequence of positional arguments, or one tensor. The eager output (needed
    for the output structure) is computed once when it is not already known."""
    if isinstance(example_inputs, CapturedCall):
        return example_inputs
    if is_tensor(example_inputs):
        args: tuple[Any, ...] = (example_inputs,)
        kwargs: dict[str, Any] = {}
    elif isinstance(example_inputs, Mapping):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, Sequence) and not isinstance(example_inputs, str | bytes):
        args, kwargs = tuple(example_inputs), {}
    else:
        raise Rejected(
            "example inputs must be a tensor, a sequence of arguments or a mapping of "
            f"keyword arguments, not {type(example_inputs).__name__}"
        )
    import torch

    with torch.no_grad():
        output = model(*args, **kwargs)
    return CapturedCall(args, kwargs, output)


class ExportBackend(Backend):
    """A backend that compiles the ONNX export of a torch module (or an ONNX file)."""

    def compile(
        self,
        model: Any,
        example_inputs: Sequence[Any] | Mapping[str, Any],
        precision: str = "fp32",
        **options: Any,
    ) -> CompiledModel:
        """Export ``model`` (reusing an existing export artifact) and compile it.

        Options: ``store`` (an :class:`ArtifactStore`; default: the user cache), ``name``
        (the slot name, for messages), and the backend's own :meth:`load` options.
        """
        if precision not in self.precisions:
            raise Rejected(
                f"{self.name} does not offer {precision} (it offers {', '.join(self.precisions)})"
            )
        store: ArtifactStore | None = options.pop("store", None)
        name = options.pop("name", "model")
        if isinstance(model, ExportedModel):
            exported, source = model, options.pop("source", None)
        else:
            call = example_call(model, example_inputs)
            exported = ensure_export(model, call, store, name=name)
            source = model
        return self.load(exported, precision, source=source, **options)

    def _compiled(
        self,
        run: Any,
        exported: ExportedModel,
        precision: str,
        source: Any,
        details: Mapping[str, Any],
        handle: Any,
    ) -> CompiledModel:
        """The stand-in for ``exported`` that this backend's ``load`` returns: ``run`` on
        the export's signature and output structure, under this backend's name."""
        return CompiledModel(
            run,
            exported.signature,
            exported.outputs,
            backend=self.name,
            precision=precision,
            source=source,
            details=details,
            handle=handle,
        )

    @abstractmethod
    def load(
        self, exported: ExportedModel, precision: str = "fp32", **options: Any
    ) -> CompiledModel:
        """Compile an existing export (no export happens here: ``materialize_change``
        calls this with the stored artifact)."""
