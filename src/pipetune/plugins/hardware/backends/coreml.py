"""Core ML (Apple Silicon): convert to an ``.mlpackage`` anywhere, predict only on macOS.

coremltools converts on Linux; Core ML itself (the prediction engine, the Neural Engine)
exists only on macOS. So off macOS the conversion is done and checked here (the package's
spec read back: inputs, outputs, compute precision) and the trial is *deferred*: the tune
step raises :class:`~pipetune.core.kernel.errors.Deferred` with the package's path and the
command that finishes the validation on a Mac::

    python -m pipetune.plugins.hardware.backends.coreml validate PACKAGE_FOLDER

which predicts on the captured example inputs and compares with the eager outputs stored
beside the package (``sample.npz``).

The conversion goes through ``torch.export`` (core ATen decompositions), since the
TorchScript frontend misses ops that recent transformers emit (``new_ones``): batch and
sequence dimensions are flexible up to ``max_batch`` / ``max_length``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.artifacts import ArtifactStore, library_version
from pipetune.core.kernel.errors import Deferred, Rejected
from pipetune.core.kernel.registry import Availability, Backend, Dependency
from pipetune.plugins.hardware.backends.base import example_call
from pipetune.plugins.hardware.export import (
    ExportAdapter,
    ExportedModel,
    default_store,
    quiet,
    summarize_export_error,
    weights_digest,
)
from pipetune.plugins.hardware.fidelity import max_abs_diffs
from pipetune.plugins.hardware.signature import CallSignature, output_structure
from pipetune.plugins.hardware.wrappers import CompiledModel

DEPENDENCY = Dependency("coremltools", "apple", "converting models to Core ML")
PACKAGE = "model.mlpackage"
LIBRARIES = ("torch", "coremltools")
#: Compute precisions Core ML offers (the Neural Engine computes in fp16).
PRECISIONS = ("fp16", "fp32")


def on_macos() -> bool:
    return sys.platform == "darwin"


def validate_command(folder: Path) -> str:
    return f"python -m pipetune.plugins.hardware.backends.coreml validate {folder}"


@dataclass(frozen=True)
class CoreMLPackage:
    """A converted model: the package, how to call it, and what its spec says."""

    folder: Path
    exported: ExportedModel  # signature, output structure and the sample, beside it
    spec: Mapping[str, Any]

    @property
    def path(self) -> Path:
        return self.folder / PACKAGE


class CoreMLBackend(Backend):
    name = "coreml"
    target = "apple"
    precisions = PRECISIONS

    def available(self) -> Availability:
        found = DEPENDENCY.check()
        if not found:
            return found
        if not on_macos():
            return Availability(
                False,
                reason=(
                    f"Core ML predicts only on macOS (this is {platform.system()}): conversion "
                    "works here and the trial is deferred to a Mac"
                ),
            )
        return Availability(True)

    def can_convert(self) -> Availability:
        return DEPENDENCY.check()

    def compile(
        self,
        model: Any,
        example_inputs: Any,  # what base.example_call takes
        precision: str = "fp16",
        **options: Any,
    ) -> CompiledModel:
        """Convert, then load for prediction on macOS; elsewhere raise :class:`Deferred`
        with the package and the command that validates it on a Mac."""
        package = self.convert(model, example_inputs, precision, **options)
        if not on_macos():
            raise Deferred(
                f"Core ML package converted and checked ({describe_spec(package.spec)}); "
                "prediction needs macOS",
                artifact=str(package.path),
                command=validate_command(package.folder),
                details={"spec": dict(package.spec)},
            )
        return self.load(package, source=model, **options)

    def convert(
        self,
        model: Any,
        example_inputs: Any,
        precision: str = "fp16",
        *,
        store: ArtifactStore | None = None,
        name: str = "model",
        max_batch: int = 64,
        max_length: int = 512,
        **_: Any,
    ) -> CoreMLPackage:
        """The ``.mlpackage`` for ``model`` (reused when already converted)."""
        if precision not in PRECISIONS:
            raise Rejected(f"Core ML offers {', '.join(PRECISIONS)}, not {precision}")
        if not DEPENDENCY.check():
            from pipetune.core.kernel.errors import MissingDependency

            raise MissingDependency("coremltools", "apple", "converting models to Core ML")
        call = example_call(model, example_inputs)
        signature, tensors = CallSignature.capture(model, call.args, call.kwargs, name)
        store = store or default_store()
        key = store.key(
            "coreml-v1",
            weights_digest(model),
            signature.key(),
            precision,
            max_batch,
            max_length,
            libraries=LIBRARIES,
        )
        folder = store.folder(key)
        if (folder / "export.json").is_file() and (folder / PACKAGE).is_dir():
            exported = ExportedModel.load_meta(folder)
            return CoreMLPackage(folder, exported, inspect_package(folder / PACKAGE))
        structure, leaves = output_structure(call.output, name)
        values = [tensors[spec.name] for spec in signature.inputs]
        started = time.perf_counter()
        _convert(
            model,
            signature,
            values,
            len(leaves),
            folder / PACKAGE,
            precision,
            max_batch,
            max_length,
        )
        exported = ExportedModel(
            folder=folder,
            signature=signature,
            outputs=structure,
            output_names=tuple(f"output_{i}" for i in range(len(leaves))),
            info={
                "seconds": round(time.perf_counter() - started, 2),
                "precision": precision,
                "libraries": {lib: library_version(lib) for lib in LIBRARIES},
            },
        )
        exported.write_sample(values, leaves)
        exported.save()
        return CoreMLPackage(folder, exported, inspect_package(folder / PACKAGE))

    def load(self, package: CoreMLPackage, *, source: Any = None, **_: Any) -> CompiledModel:
        """Load a package for prediction (macOS only)."""
        if not on_macos():
            raise Deferred(
                "Core ML prediction needs macOS",
                artifact=str(package.path),
                command=validate_command(package.folder),
            )
        with quiet():
            import coremltools as ct

            mlmodel = ct.models.MLModel(str(package.path), compute_units=ct.ComputeUnit.ALL)
        names = list(package.exported.signature.input_names)
        outputs = list(package.exported.output_names)
        dtypes = {i["name"]: i["dtype"] for i in package.spec["inputs"]}

        def run(feeds: list[np.ndarray]) -> list[np.ndarray]:
            request = {
                n: f.astype(np.int32) if dtypes.get(n) == "int32" else f
                for n, f in zip(names, feeds, strict=True)
            }
            result = mlmodel.predict(request)
            return [np.asarray(result[o], dtype=np.float32) for o in outputs]

        return CompiledModel(
            run,
            package.exported.signature,
            package.exported.outputs,
            backend=self.name,
            precision=package.spec.get("precision", "fp16"),
            source=source,
            details={"package": str(package.path), "spec": dict(package.spec)},
            handle=mlmodel,
        )


def _convert(
    model: Any,
    signature: CallSignature,
    values: Sequence[Any],
    n_outputs: int,
    target: Path,
    precision: str,
    max_batch: int,
    max_length: int,
) -> None:
    """Convert ``model`` to an ML program package at ``target``: export it through
    ``torch.export`` (flexible batch and sequence dimensions), then convert the program
    with coremltools (imported first, so that a missing install fails before the export)."""
    with quiet():
        import coremltools as ct

    program = _export_program(model, signature, values, max_batch, max_length)
    _save_ml_program(ct, program, signature, n_outputs, target, precision)


def _export_program(
    model: Any,
    signature: CallSignature,
    values: Sequence[Any],
    max_batch: int,
    max_length: int,
) -> Any:
    """The model's exported program (core ATen decompositions), with a flexible batch
    and, for token ids and masks, a flexible sequence length; exported with the example's
    static shapes when the flexible export fails, Rejected when that fails too."""
    import torch
    from torch.export import Dim

    # A model with learned positions cannot take sequences longer than it has positions.
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        max_length = min(max_length, positions)
    adapter = ExportAdapter(model, signature)
    # A batch of one would be specialized (0/1 specialization): export on a batch of two.
    example = tuple(torch.cat([v, v]) if v.dim() and v.shape[0] == 1 else v for v in values)
    batch = Dim("batch", min=1, max=max_batch)
    length = Dim("length", min=1, max=max_length)
    attempts = [(tuple(_dynamic_dims(v, batch, length) for v in example),), None]
    program, last = None, None
    for dynamic in attempts:
        try:
            with quiet():
                program = torch.export.export(
                    adapter, example if dynamic else tuple(values), dynamic_shapes=dynamic
                ).run_decompositions()
            break
        except Exception as exc:
            last = exc
    if program is None:
        raise Rejected(f"Core ML conversion failed: {summarize_export_error(last)}")  # type: ignore[arg-type]
    return program


def _dynamic_dims(value: Any, batch: Any, length: Any) -> dict[int, Any]:
    """An input's flexible dimensions: the batch (dimension 0), and the sequence for a 2-d
    integer tensor (token ids, masks)."""
    spec: dict[int, Any] = {}
    if value.dim() >= 1:
        spec[0] = batch
    if value.dim() == 2 and not value.is_floating_point():
        spec[1] = length  # token ids, masks: (batch, sequence)
    return spec


def _save_ml_program(
    ct: Any,
    program: Any,
    signature: CallSignature,
    n_outputs: int,
    target: Path,
    precision: str,
) -> None:
    """Convert the exported program to an ML program at ``precision``, name its inputs
    after the eager call's and its outputs ``output_<i>``, and move the saved package into
    place at ``target``; any failure is Rejected with the converter's message."""
    try:
        with quiet():
            mlmodel = ct.convert(
                program,
                convert_to="mlprogram",
                compute_precision=ct.precision.FLOAT16
                if precision == "fp16"
                else ct.precision.FLOAT32,
                minimum_deployment_target=ct.target.macOS14,
            )
            spec = mlmodel.get_spec()
            # The exporter names inputs after the adapter's arguments (values_0...) and
            # outputs after their last op: give them the eager call's names.
            for old, new in zip(
                [i.name for i in spec.description.input], signature.input_names, strict=True
            ):
                ct.utils.rename_feature(spec, old, new)
            for old, index in zip(
                [o.name for o in spec.description.output], range(n_outputs), strict=True
            ):
                ct.utils.rename_feature(spec, old, f"output_{index}")
            renamed = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
            tmp = target.with_name(f"tmp{os.getpid()}.{target.name}")
            if tmp.exists():
                shutil.rmtree(tmp)
            renamed.save(str(tmp))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except Rejected:
        raise
    except Exception as exc:
        message = " ".join(str(exc).split())[:300]
        raise Rejected(f"Core ML conversion failed: {type(exc).__name__}: {message}") from None


# -- reading a package back -----------------------------------------------------------------


def load_package(folder: str | Path) -> CoreMLPackage:
    """A converted package from its folder (``model.mlpackage`` and ``export.json``)."""
    folder = Path(folder)
    return CoreMLPackage(folder, ExportedModel.load_meta(folder), inspect_package(folder / PACKAGE))


_ARRAY_TYPES = {
    65568: "float32",
    65552: "float16",
    65600: "float64",
    131104: "int32",
    131080: "int8",
}
_COMPUTE_OPS = ("linear", "matmul", "conv", "conv_transpose", "einsum")


def inspect_package(path: str | Path) -> dict[str, Any]:
    """What a ``.mlpackage``'s spec says, read without Core ML (works on Linux): inputs and
    outputs (name, dtype, shape, flexible ranges) and the compute precision (the dtype of
    the matrix products in its ML program)."""
    with quiet():
        import coremltools as ct

        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    from coremltools.proto import MIL_pb2

    def feature(description: Any) -> dict[str, Any]:
        array = description.type.multiArrayType
        ranges = [[int(r.lowerBound), int(r.upperBound)] for r in array.shapeRange.sizeRanges]
        return {
            "name": description.name,
            "dtype": _ARRAY_TYPES.get(array.dataType, str(array.dataType)),
            "shape": [int(d) for d in array.shape],
            "ranges": ranges,
        }

    compute: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    kind = spec.WhichOneof("Type")
    if kind == "mlProgram":
        function = spec.mlProgram.functions["main"]
        block = function.block_specializations[function.opset]
        for op in block.operations:
            ops[op.type] += 1
            if op.type in _COMPUTE_OPS:
                for output in op.outputs:
                    compute[MIL_pb2.DataType.Name(output.type.tensorType.dataType)] += 1
    if compute and set(compute) == {"FLOAT16"}:
        precision = "fp16"
    elif compute and set(compute) == {"FLOAT32"}:
        precision = "fp32"
    else:
        precision = "mixed" if compute else "unknown"
    return {
        "type": kind,
        "specification_version": int(spec.specificationVersion),
        "inputs": [feature(d) for d in spec.description.input],
        "outputs": [feature(d) for d in spec.description.output],
        "precision": precision,
        "compute_ops": dict(compute),
        "ops": sum(ops.values()),
    }


def describe_spec(spec: Mapping[str, Any]) -> str:
    inputs = ", ".join(f"{i['name']}:{i['dtype']}" for i in spec.get("inputs", ()))
    return (
        f"{spec.get('type')}, {spec.get('precision')} compute, inputs {inputs}, "
        f"{len(spec.get('outputs', ()))} outputs"
    )


# -- the validation that finishes a deferred trial on a Mac --------------------------------


def validate(folder: str | Path, repeats: int = 20) -> dict[str, Any]:
    """Predict on the stored example inputs and compare with the stored eager outputs."""
    folder = Path(folder)
    package = load_package(folder)
    exported = package.exported
    compiled = CoreMLBackend().load(package)
    inputs, expected = exported.sample()
    feeds = list(inputs)
    outputs = compiled._run(feeds)
    diffs = max_abs_diffs(outputs, expected)
    started = time.perf_counter()
    for _ in range(repeats):
        compiled._run(feeds)
    return {
        "package": str(package.path),
        "max_abs_diff": max(diffs) if diffs else 0.0,
        "per_output_max_abs_diff": diffs,
        "predict_ms": (time.perf_counter() - started) / repeats * 1000,
        "spec": package.spec,
    }


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipetune.plugins.hardware.backends.coreml")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="predict on the stored sample and compare (macOS)")
    check.add_argument("folder")
    check.add_argument("--repeats", type=int, default=20)
    show = sub.add_parser("inspect", help="print a package's spec (any OS)")
    show.add_argument("folder")
    args = parser.parse_args(argv)
    if args.command == "inspect":
        print(json.dumps(inspect_package(Path(args.folder) / PACKAGE), indent=2))
        return 0
    if not on_macos():
        print("Core ML prediction needs macOS; run this command on a Mac.", file=sys.stderr)
        return 2
    print(json.dumps(validate(args.folder, args.repeats), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
