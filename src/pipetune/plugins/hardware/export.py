"""torch -> ONNX export, from the module's real calls in the pipeline.

1. :func:`capture_calls` records what a stage really passes to its module (and what the
   module returns) through forward hooks, removed afterwards: the example inputs are the
   pipeline's own, with their real dtypes, ranks and keyword arguments.
2. :func:`ensure_export` exports the module with every input dimension dynamic (batch and
   sequence length vary in a pipeline) through the default (dynamo) exporter, which needs
   ``onnxscript``. The result is an artifact keyed by the weights' hash, the input
   signature and the library versions: a second trial, a recipe or a restart reloads it
   instead of exporting again.
3. An export that fails (data-dependent control flow, an op with no ONNX translation) is
   :class:`~pipetune.core.kernel.errors.Rejected` with the exporter's message summarized in one
   line; the exporter's pages of graph dumps never reach the user.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.artifacts import ArtifactStore, library_version
from pipetune.core.kernel.atomic import write_text_atomic
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.plugins.hardware.signature import (
    CallSignature,
    flatten_output,
    is_tensor,
    output_structure,
)

EXPORT_LIBRARIES = ("torch", "onnx", "onnxscript")
EXPORT_FILE = "export.json"
ONNX_FILE = "model.onnx"
SAMPLE_FILE = "sample.npz"


# -- capture --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedCall:
    """One top-level call of a module: its arguments and its output (detached copies)."""

    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    output: Any


@contextlib.contextmanager
def capture_calls(module: Any, limit: int = 64) -> Iterator[list[CapturedCall]]:
    """Record up to ``limit`` top-level calls of ``module`` while the block runs.

    The hooks are removed when the block ends, even on error, so the module is left as it
    was (its ``state_dict`` is never touched). Calls the module makes to itself
    recursively are not recorded twice.
    """
    import torch

    calls: list[CapturedCall] = []
    pending: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    depth = [0]

    def before(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        depth[0] += 1
        if depth[0] == 1 and len(calls) < limit:
            pending.append((_detached(args), _detached(kwargs)))

    def after(_module: Any, _args: Any, _kwargs: Any, output: Any) -> None:
        if depth[0] == 1 and pending:
            args, kwargs = pending.pop()
            calls.append(CapturedCall(args, kwargs, _detached(output)))
        depth[0] = max(0, depth[0] - 1)

    handles = [
        module.register_forward_pre_hook(before, with_kwargs=True),
        module.register_forward_hook(after, with_kwargs=True, always_call=True),
    ]
    try:
        with torch.no_grad():
            yield calls
    finally:
        for handle in handles:
            handle.remove()


def _detached(value: Any) -> Any:
    if is_tensor(value):
        import torch

        # A stage calling its model under torch.inference_mode() would otherwise leave
        # inference tensors here, which torch.export refuses to trace with.
        with torch.inference_mode(False):
            return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_detached(v) for v in value))
    if isinstance(value, tuple | list):
        return type(value)(_detached(v) for v in value)
    if isinstance(value, Mapping):
        try:
            mapping_type: Any = type(value)
            return mapping_type({k: _detached(v) for k, v in value.items()})
        except TypeError:
            return {k: _detached(v) for k, v in value.items()}
    return value


# -- the exported artifact ------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedModel:
    """An exported ONNX graph with what it takes to call it like the eager module."""

    folder: Path
    signature: CallSignature
    outputs: Mapping[str, Any]
    output_names: tuple[str, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / ONNX_FILE

    @property
    def sample_path(self) -> Path:
        return self.folder / SAMPLE_FILE

    def save(self) -> None:
        data = {
            "signature": self.signature.to_dict(),
            "outputs": self.outputs,
            "output_names": list(self.output_names),
            "info": dict(self.info),
        }
        write_text_atomic(self.folder / EXPORT_FILE, json.dumps(data, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> ExportedModel:
        """Reload an export (its ONNX graph must be there)."""
        exported = cls.load_meta(folder)
        if not exported.path.is_file():
            raise PipelineError(
                f"exported model {exported.path} is missing: re-run optimize to export it again"
            )
        return exported

    @classmethod
    def load_meta(cls, folder: str | Path) -> ExportedModel:
        """Reload the call signature, output structure and info stored in a folder (any
        converted model: ONNX, Core ML)."""
        folder = Path(folder)
        try:
            data = json.loads((folder / EXPORT_FILE).read_text())
        except OSError as exc:
            raise PipelineError(
                f"exported model {folder} is missing ({exc.strerror}): re-run optimize "
                "to export it again"
            ) from None
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{folder / EXPORT_FILE} is corrupted: {exc}") from None
        return cls(
            folder=folder,
            signature=CallSignature.from_dict(data["signature"]),
            outputs=data["outputs"],
            output_names=tuple(data["output_names"]),
            info=data.get("info", {}),
        )

    def write_sample(self, values: Sequence[Any], leaves: Sequence[Any]) -> None:
        """Store example inputs and the eager outputs for them (``sample.npz``)."""
        arrays = {f"input_{i}": v.detach().cpu().numpy() for i, v in enumerate(values)}
        for i, leaf in enumerate(leaves):
            arrays[f"output_{i}"] = leaf.detach().cpu().float().numpy()
        tmp = self.sample_path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, self.sample_path)

    def sample(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The captured example inputs and the eager module's outputs for them, as arrays:
        what a validation on another machine (a Mac, a TensorRT host) compares against."""
        with np.load(self.sample_path) as data:
            inputs = [data[f"input_{i}"] for i in range(len(self.signature.inputs))]
            outputs = [data[f"output_{i}"] for i in range(len(self.output_names))]
        return inputs, outputs


def default_store() -> ArtifactStore:
    """Where exports go when no run store is given (direct ``Backend.compile`` use)."""
    from pipetune.core.loop.paths import cache_dir

    return ArtifactStore(cache_dir("hardware", "artifacts"))


def weights_digest(module: Any) -> str:
    """A hash of a module's class and every parameter and buffer (names, dtypes, shapes,
    bytes): identifies the weights in artifact keys, and lets tests prove a module was
    not mutated."""
    import torch

    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=False).items():
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            if tensor.is_quantized:
                tensor = tensor.int_repr()
            data = tensor.detach().cpu().contiguous()
            if data.dtype == torch.bfloat16:
                data = data.view(torch.int16)
            digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def export_key(store: ArtifactStore, digest: str, signature: CallSignature) -> str:
    """The artifact key of an export: weights, input signature, exporter versions."""
    return store.key("onnx-export-v1", digest, signature.key(), libraries=EXPORT_LIBRARIES)


def ensure_export(
    module: Any,
    call: CapturedCall,
    store: ArtifactStore | None = None,
    *,
    name: str = "model",
    log: Callable[[str], None] | None = None,
) -> ExportedModel:
    """The ONNX export of ``module`` for calls like ``call``: reloaded when the artifact
    exists, exported (and stored) otherwise. Raises :class:`Rejected` with a one-line
    summary when the exporter cannot handle the module."""
    store = store or default_store()
    signature, tensors = CallSignature.capture(module, call.args, call.kwargs, name)
    digest = weights_digest(module)
    key = export_key(store, digest, signature)
    if store.exists(key, EXPORT_FILE) and store.exists(key, ONNX_FILE):
        return ExportedModel.load(store.folder(key))
    folder = store.folder(key)
    structure, leaves = output_structure(call.output, name)
    if not leaves:
        raise Rejected(f"{name} returns no tensors: nothing to compile")
    values = [tensors[spec.name] for spec in signature.inputs]
    started = time.perf_counter()
    attempt = export_onnx(module, signature, values, folder / ONNX_FILE, len(leaves))
    info = {
        "seconds": round(time.perf_counter() - started, 2),
        "dynamic_shapes": attempt,
        "weights": digest[:16],
        "libraries": {lib: library_version(lib) for lib in EXPORT_LIBRARIES},
        "module_class": f"{type(module).__module__}.{type(module).__qualname__}",
    }
    exported = ExportedModel(
        folder=folder,
        signature=signature,
        outputs=structure,
        output_names=tuple(f"output_{i}" for i in range(len(leaves))),
        info=info,
    )
    exported.write_sample(values, leaves)
    exported.save()  # written last: its presence means the export is complete
    if log:
        log(f"exported {name} to ONNX in {info['seconds']:.1f} s ({attempt} shapes)")
    return exported


def export_onnx(
    module: Any,
    signature: CallSignature,
    values: Sequence[Any],
    path: Path,
    n_outputs: int,
) -> str:
    """Export through torch.onnx's default (dynamo) exporter with dynamic dimensions.

    Every dimension is first marked dynamic (``Dim.DYNAMIC``); a model whose code pins
    some dimension (a reshape to a fixed size) fails that check, so the exporter then
    decides per dimension (``Dim.AUTO``); a model that cannot be exported dynamically at
    all is exported for the example's shapes, and calls with other shapes are refused
    with a clear error. Returns which attempt succeeded.
    """
    import torch
    from torch.export import Dim

    adapter = ExportAdapter(_eval_copy(module), signature)
    names = list(signature.input_names)
    output_names = [f"output_{i}" for i in range(n_outputs)]
    attempts: list[tuple[str, Any]] = [
        ("dynamic", Dim.DYNAMIC),
        ("auto", Dim.AUTO),
        ("static", None),
    ]
    last: BaseException | None = None
    for label, dim in attempts:
        dynamic_shapes = None
        if dim is not None:
            dynamic_shapes = (tuple({axis: dim for axis in range(v.dim())} for v in values),)
        try:
            with quiet():
                program = torch.onnx.export(
                    adapter,
                    tuple(values),
                    dynamic_shapes=dynamic_shapes,
                    input_names=names,
                    output_names=output_names,
                    dynamo=True,
                    optimize=True,
                    verbose=False,
                )
                # Saved in place: export.json, written after, marks the export complete.
                assert program is not None  # dynamo=True returns the program
                program.save(str(path))
            return label
        except Exception as exc:
            last = exc
            if not _is_shape_constraint_error(exc):
                break
    assert last is not None
    raise Rejected(f"ONNX export failed: {summarize_export_error(last)}") from None


def ExportAdapter(module: Any, signature: CallSignature) -> Any:
    """A module taking the graph inputs positionally and returning the flat output leaves:
    one calling convention for every exporter (ONNX, TorchScript for Core ML)."""
    import torch

    class _Adapter(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *values: Any) -> tuple[Any, ...]:
            args, kwargs = signature.call(values)
            return tuple(flatten_output(self.inner(*args, **kwargs)))

    return _Adapter().eval()


def _eval_copy(module: Any) -> Any:
    """The module in inference mode. A module left in training mode (dropout active) is
    copied and switched to eval on the copy: exporting must not flip the user's module."""
    if getattr(module, "training", False):
        module = copy.deepcopy(module)
        module.eval()
    return module


#: Phrases of torch.export errors that a less dynamic attempt can fix.
_SHAPE_MARKERS = (
    "Constraints violated",
    "specialized",
    "ConstraintViolation",
    "marked as dynamic",
    "user-specified ranges",
    "inferred a static shape",
)


def _is_shape_constraint_error(exc: BaseException) -> bool:
    text = str(exc)
    if "data-dependent" in text.lower():
        return False
    return any(marker in text for marker in _SHAPE_MARKERS)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STEPS = {
    "1/3": "torch.export could not capture the model",
    "2/3": "decomposing the captured graph failed",
    "3/3": "translating the graph to ONNX failed",
}


def summarize_export_error(exc: BaseException) -> str:
    """The exporter's error in one line: what failed, the root cause, and where in the
    user's code, e.g. ``torch.export could not capture the model: data-dependent control
    flow (GuardOnDataDependentSymNode: Could not guard on data-dependent expression
    Eq(u0, 1)) at model.py:12 `if x.sum() > 0:```."""
    text = _ANSI.sub("", str(exc))
    step = next((what for marker, what in _STEPS.items() if f"step {marker}" in text), "")
    cause = ""
    summary = text.split("## Exception summary", 1)
    if len(summary) == 2:
        for line in summary[1].splitlines():
            line = line.strip()
            if line and not line.startswith("⬆"):
                cause = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", line)
                break
    if not cause:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        cause = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    kind = ""
    if "data-dependent" in cause or "GuardOnDataDependent" in cause:
        kind = "data-dependent control flow"
    elif "No ONNX function found" in cause or "DispatchError" in cause:
        kind = "an op with no ONNX translation"
    where = ""
    match = re.search(
        r'The following call raised this error:\s*File "([^"]+)", line (\d+), in \w+\s*\n\s*(.+)',
        text,
    )
    if match:
        where = f" at {Path(match.group(1)).name}:{match.group(2)} `{match.group(3).strip()}`"
    cause = cause.split(". ", 1)[0] if len(cause) > 160 else cause
    head = ": ".join(part for part in (step, kind) if part)
    line = f"{head} ({cause}){where}" if head else f"{cause}{where}"
    line = " ".join(line.split())
    return line if len(line) <= 400 else line[:397] + "..."


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence an exporter, quantizer or converter: its progress bars, graph dumps,
    warnings and log lines go nowhere (errors still propagate as exceptions)."""
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
