"""How an eager module is called, and what it returns, as JSON-serializable records.

A compiled graph (ONNX, OpenVINO, TensorRT, Core ML) takes a flat, ordered list of arrays
and returns a flat list. The user's code calls ``model(**encoded)`` and reads
``.last_hidden_state``. :class:`CallSignature` maps the user's call onto the graph's inputs
(and checks that the non-tensor arguments are the ones the graph was exported with);
:func:`output_structure` / :func:`rebuild_output` map the graph's outputs back onto the
eager module's output structure (a tensor, a tuple, a dict, a transformers
``ModelOutput``). Both are recorded at capture time, stored beside the exported model,
and reloaded by ``materialize_change`` without running the eager model.

torch is imported lazily; this module imports without it.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import PipelineError, Rejected

#: Structure node tags.
TENSOR, NONE, TUPLE, LIST, DICT, MODEL_OUTPUT, NAMEDTUPLE, CONST = (
    "tensor",
    "none",
    "tuple",
    "list",
    "dict",
    "model_output",
    "namedtuple",
    "const",
)


def is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def numpy_dtype_name(tensor: Any) -> str:
    """``torch.int64`` -> ``"int64"``; ``torch.bfloat16`` has no numpy dtype: refused."""
    name = str(tensor.dtype).removeprefix("torch.")
    if name in ("bfloat16", "complex32"):
        raise Rejected(f"a {name} input cannot be fed to an exported graph; pass float32")
    return name


@dataclass(frozen=True)
class TensorSpec:
    """One graph input: the argument it comes from, its dtype and rank."""

    name: str
    dtype: str
    rank: int
    example_shape: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "rank": self.rank,
            "example_shape": list(self.example_shape),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(data["name"], data["dtype"], int(data["rank"]), tuple(data["example_shape"]))


@dataclass(frozen=True)
class CallSignature:
    """The eager call, normalized: tensor arguments (graph inputs, in order) and constants.

    ``params`` are the names of ``forward``'s positional parameters in order, so a
    positional call ``model(ids, mask)`` binds the same way as ``model(input_ids=ids,
    attention_mask=mask)``. ``constants`` are the non-tensor arguments the graph was
    exported with (``return_dict=True``); a call with other values is refused with a clear
    error, because the graph has them baked in.
    """

    inputs: tuple[TensorSpec, ...]
    constants: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[str, ...] = ()
    positional_only: tuple[str, ...] = ()
    module: str = "model"

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    # -- capture -----------------------------------------------------------------------------
    @classmethod
    def capture(
        cls, module: Any, args: Sequence[Any], kwargs: Mapping[str, Any], name: str = "model"
    ) -> tuple[CallSignature, dict[str, Any]]:
        """Normalize one real call; returns the signature and the bound tensors by name."""
        params, positional_only = _forward_params(module)
        bound = _bind(params, args, kwargs, name)
        inputs, constants, tensors = [], {}, {}
        for arg, value in bound.items():
            if is_tensor(value):
                inputs.append(
                    TensorSpec(arg, numpy_dtype_name(value), value.dim(), tuple(value.shape))
                )
                tensors[arg] = value
            elif value is None or isinstance(value, bool | int | float | str):
                constants[arg] = value
            else:
                raise Rejected(
                    f"{name} is called with {arg}={type(value).__name__}: only tensor and "
                    "plain (bool, int, float, str, None) arguments can be compiled"
                )
        if not inputs:
            raise Rejected(f"{name} is called without tensor arguments: nothing to compile")
        signature = cls(tuple(inputs), constants, params, positional_only, name)
        return signature, tensors

    # -- calling the graph -------------------------------------------------------------------
    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return _bind(self.params, args, kwargs, self.module)

    def feeds(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[np.ndarray]:
        """The graph's input arrays for a call, in graph order; a call that does not match
        the exported one raises :class:`PipelineError` saying how."""
        bound = self.bind(args, kwargs)
        arrays = []
        for spec in self.inputs:
            if spec.name not in bound or bound[spec.name] is None:
                raise PipelineError(
                    f"compiled {self.module} was exported with a tensor {spec.name!r}; "
                    f"this call does not pass it (passed: {', '.join(bound) or 'nothing'})"
                )
            arrays.append(_as_array(bound.pop(spec.name), spec, self.module))
        for arg, value in bound.items():
            if arg not in self.constants:
                raise PipelineError(
                    f"compiled {self.module} was exported without argument {arg!r}; "
                    "recompile it for calls that pass it"
                )
            if not _same_constant(self.constants[arg], value):
                raise PipelineError(
                    f"compiled {self.module} was exported with {arg}={self.constants[arg]!r}; "
                    f"this call passes {arg}={_short(value)}"
                )
        return arrays

    def call(self, values: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The eager call (args, kwargs) for graph inputs ``values``, constants added:
        what an export adapter passes to the eager module."""
        named = dict(zip(self.input_names, values, strict=True))
        named.update(self.constants)
        args = tuple(named.pop(p) for p in self.positional_only if p in named)
        return args, named

    def key(self) -> str:
        """Identifies the input signature in artifact keys (names, dtypes, ranks,
        constants: not the example sizes, which the graph does not depend on)."""
        return json.dumps(
            {
                "inputs": [(s.name, s.dtype, s.rank) for s in self.inputs],
                "constants": dict(sorted(self.constants.items())),
            },
            sort_keys=True,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [spec.to_dict() for spec in self.inputs],
            "constants": dict(self.constants),
            "params": list(self.params),
            "positional_only": list(self.positional_only),
            "module": self.module,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallSignature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(d) for d in data["inputs"]),
            constants=dict(data.get("constants", {})),
            params=tuple(data.get("params", ())),
            positional_only=tuple(data.get("positional_only", ())),
            module=data.get("module", "model"),
        )


# -- outputs --------------------------------------------------------------------------------


def output_structure(output: Any, where: str = "output") -> tuple[dict[str, Any], list[Any]]:
    """(structure, tensor leaves) of an eager output. The leaves are in the order the
    export adapter returns them, so graph output *i* is leaf *i*."""
    leaves: list[Any] = []
    return _describe(output, leaves, where), leaves


def flatten_output(output: Any) -> list[Any]:
    return output_structure(output)[1]


def rebuild_output(structure: Mapping[str, Any], leaves: Sequence[Any]) -> Any:
    """The eager output structure, filled with ``leaves`` (tensors or arrays)."""
    iterator = iter(leaves)
    value = _build(structure, iterator)
    if next(iterator, None) is not None:
        raise PipelineError("the compiled graph returned more outputs than the eager model")
    return value


def count_leaves(structure: Mapping[str, Any]) -> int:
    tag = structure["t"]
    if tag == TENSOR:
        return 1
    if tag in (TUPLE, LIST, DICT, MODEL_OUTPUT, NAMEDTUPLE):
        return sum(count_leaves(item) for item in structure["items"])
    return 0


def _describe(value: Any, leaves: list[Any], where: str) -> dict[str, Any]:
    if is_tensor(value):
        leaves.append(value)
        return {"t": TENSOR}
    if value is None:
        return {"t": NONE}
    if _is_model_output(value):
        keys = [k for k, v in value.items() if v is not None]
        cls = type(value)
        return {
            "t": MODEL_OUTPUT,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "keys": keys,
            "items": [_describe(value[k], leaves, f"{where}.{k}") for k in keys],
        }
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        cls = type(value)
        return {
            "t": NAMEDTUPLE,
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "items": [
                _describe(v, leaves, f"{where}.{f}")
                for f, v in zip(value._fields, value, strict=True)
            ],
        }
    if isinstance(value, tuple | list):
        return {
            "t": TUPLE if isinstance(value, tuple) else LIST,
            "items": [_describe(v, leaves, f"{where}[{i}]") for i, v in enumerate(value)],
        }
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise Rejected(f"{where} is a dict with non-string keys: cannot compile its output")
        return {
            "t": DICT,
            "keys": list(value),
            "items": [_describe(v, leaves, f"{where}[{k!r}]") for k, v in value.items()],
        }
    if isinstance(value, bool | int | float | str):
        return {"t": CONST, "value": value}
    raise Rejected(
        f"{where} is a {type(value).__name__}: a compiled graph can return tensors, "
        "tuples, lists, dicts and transformers ModelOutputs"
    )


def _build(node: Mapping[str, Any], leaves: Any) -> Any:
    tag = node["t"]
    if tag == TENSOR:
        try:
            return next(leaves)
        except StopIteration:
            raise PipelineError(
                "the compiled graph returned fewer outputs than the eager model"
            ) from None
    if tag == NONE:
        return None
    if tag == CONST:
        return node["value"]
    items = [_build(item, leaves) for item in node["items"]]
    if tag == TUPLE:
        return tuple(items)
    if tag == LIST:
        return items
    if tag == DICT:
        return dict(zip(node["keys"], items, strict=True))
    cls = _import_class(node["class"])
    if tag == MODEL_OUTPUT:
        return cls(**dict(zip(node["keys"], items, strict=True)))
    if tag == NAMEDTUPLE:
        return cls(*items)
    raise PipelineError(f"unknown output structure node {tag!r}")


def _is_model_output(value: Any) -> bool:
    return isinstance(value, Mapping) and any(
        klass.__name__ == "ModelOutput" and klass.__module__.startswith("transformers")
        for klass in type(value).__mro__
    )


def _import_class(path: str) -> Any:
    module, _, qualname = path.partition(":")
    try:
        value: Any = importlib.import_module(module)
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"cannot rebuild the model output type {path}: {exc}") from None
    return value


# -- binding --------------------------------------------------------------------------------


def _forward_params(module: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    forward = getattr(module, "forward", module)
    try:
        parameters = list(inspect.signature(forward).parameters.values())
    except (TypeError, ValueError):
        return (), ()
    positional = tuple(
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    positional_only = tuple(
        p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_ONLY
    )
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        # forward(*inputs): positional arguments beyond the named ones get stable names,
        # and are passed positionally again by the export adapter.
        extra = tuple(f"input_{i}" for i in range(16))
        return positional + extra, positional_only + positional + extra
    return positional, positional_only


def _bind(
    params: Sequence[str], args: Sequence[Any], kwargs: Mapping[str, Any], name: str
) -> dict[str, Any]:
    if len(args) > len(params):
        raise PipelineError(
            f"{name} takes at most {len(params)} positional arguments, got {len(args)}"
        )
    bound = dict(zip(params, args, strict=False))  # fewer args than params is normal
    for key, value in kwargs.items():
        if key in bound:
            raise PipelineError(f"{name} got argument {key!r} both by position and by name")
        bound[key] = value
    return bound


def _as_array(value: Any, spec: TensorSpec, module: str) -> np.ndarray:
    if is_tensor(value):
        if value.requires_grad:
            value = value.detach()
        array = value.cpu().numpy() if value.device.type != "cpu" else value.numpy()
    elif isinstance(value, np.ndarray):
        array = value
    else:
        raise PipelineError(
            f"compiled {module}: argument {spec.name!r} must be a tensor, got "
            f"{type(value).__name__}"
        )
    if array.ndim != spec.rank:
        raise PipelineError(
            f"compiled {module}: argument {spec.name!r} has {array.ndim} dimensions, "
            f"the exported graph takes {spec.rank}"
        )
    wanted = np.dtype(spec.dtype)
    if array.dtype != wanted:
        array = array.astype(wanted)
    return np.ascontiguousarray(array)


def _same_constant(expected: Any, value: Any) -> bool:
    if is_tensor(value):
        return False
    try:
        return bool(expected == value) and type(expected) is type(value)
    except Exception:
        return False


def _short(value: Any) -> str:
    text = repr(value) if not is_tensor(value) else f"a tensor of shape {tuple(value.shape)}"
    return text if len(text) < 60 else text[:57] + "..."
