"""Recognizing vision steps in a pipeline, without running it.

* **decode-and-resize**: the plugin's own block (``meta["block"]``); or a stage whose
  ``decoder=`` slot holds a library decoder (``cv2.imread``, ``cv2.imdecode``,
  ``PIL.Image.open``, imageio's or scikit-image's ``imread``,
  ``torchvision.io.read_image``/``decode_jpeg``) or a decoder object, with the target
  size from a ``size=`` slot; or plain code whose own source decodes with one of them
  (found by the scan rule's matcher, :mod:`.code_decode`), reduced by rebinding the
  decoder's module-level name (:mod:`.rebind`) where that is reachable; or, for hints
  only, a ``decode``/``preprocess`` stage whose code calls such functions.
* **video frame loops**: the plugin's classify-frames block (a ``gate=`` slot), or plain
  code with an injected ``capture=`` slot (``cv2.VideoCapture`` or a factory) and an
  injected ``model=`` slot; code that mentions ``VideoCapture`` gets a hint.
* **the model's input size**: a ``size=`` slot, a block's ``input_size`` note, a model's
  ``input_size`` / ``default_cfg["input_size"]`` attribute, else (at profile time) the shape
  of what the decode step outputs.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.vision.blocks import (
    CLASSIFY,
    CLASSIFY_FRAMES,
    DECODE_RESIZE,
    FRAME_SOURCE,
)
from pipetune.plugins.vision.code_decode import CodeDecode, find_code_decodes
from pipetune.plugins.vision.reduced_decode import LIBRARY_DECODERS, as_size, library_decoder

#: Library functions that decode images, by qualified name -> library.
DECODER_LIBRARIES = {
    "cv2.imread": "opencv",
    "cv2.imdecode": "opencv",
    "PIL.Image.open": "pillow",
    "torchvision.io.read_image": "torchvision",
    "torchvision.io.image.read_image": "torchvision",
    "torchvision.io.decode_jpeg": "torchvision",
    "torchvision.io.image.decode_jpeg": "torchvision",
    "torchvision.io.decode_image": "torchvision",
    "torchvision.io.image.decode_image": "torchvision",
}
#: Names in a function's code that suggest it decodes images or reads video.
_DECODE_NAMES = {"imread", "imdecode", "decode_jpeg", "read_image", "decode_image"}
_RESIZE_NAMES = {"resize", "thumbnail", "Resize", "interpolate"}


def qualified_name(obj: Any) -> str:
    """``module.qualname`` of a function or class (``cv2.imread``, ``PIL.Image.open``)."""
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if name is None:
        kind = type(obj)
        return f"{kind.__module__}.{kind.__qualname__}"
    if module.startswith("cv2"):
        module = "cv2"
    if not module and _is_cv2_function(obj, name):
        # OpenCV's functions are builtins without a __module__: identify them by identity.
        module = "cv2"
    return f"{module}.{name}" if module else name


def _is_cv2_function(obj: Any, name: str) -> bool:
    import sys

    cv2 = sys.modules.get("cv2")  # never import OpenCV just to compare names
    return cv2 is not None and getattr(cv2, name, None) is obj


@dataclass(frozen=True)
class DecodeStep:
    stage: str
    how: str  # "block", "slot" or "code" (hint only)
    library: str  # opencv, pillow, torchvision, dali, nvjpeg, own, unknown
    decoder: str
    target: tuple[int, int] | None
    transformable: bool  # the decoder slot is injected: replacing it changes what runs
    reduced: bool = False  # already decodes at reduced resolution
    code: tuple[CodeDecode, ...] = field(default=(), repr=False)  # plain decode code found
    unreachable: str | None = None  # why the code's decoder cannot be swapped

    @property
    def rebind(self) -> tuple[str, ...]:
        """The module-level names reduced decode rebinds for plain code."""
        return tuple(sorted({d.written for d in self.code}))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = list(self.target) if self.target else None
        data["code"] = [d.to_dict() for d in self.code]
        return data


@dataclass(frozen=True)
class FrameLoop:
    stage: str
    how: str  # "block", "slots" or "code" (hint only)
    transformable: bool
    gated: bool = False
    source_stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _code_names(fn: Any) -> set[str]:
    code = getattr(fn, "__code__", None)
    if code is None:
        call = vars(type(fn)).get("__call__")  # a callable object: its method's code
        code = getattr(call, "__code__", None)
    return set(code.co_names) if code is not None else set()


def _slot_size(stage: Stage) -> tuple[int, int] | None:
    for name in ("size", "input_size", "target_size", "image_size"):
        value = stage.slots.get(name)
        if value is not None:
            try:
                return as_size(value)
            except ValueError:
                return None
    return None


def describe_decoder(decoder: Any) -> tuple[str, str, bool]:
    """(library, name, reduced) of a decoder found in a slot."""
    describe = getattr(decoder, "describe", None)
    if callable(describe) and hasattr(decoder, "decode_resize"):
        text = str(describe())
        library = getattr(decoder, "name", "own")
        return library, text, bool(getattr(decoder, "reduce", False))
    canonical = library_decoder(decoder)
    if canonical is not None:
        return _library_of(canonical), canonical, False
    name = qualified_name(decoder)
    if name in DECODER_LIBRARIES:
        return DECODER_LIBRARIES[name], name, False
    if type(decoder).__name__ in {t.__name__ for t in LIBRARY_DECODERS.values()}:
        return "pipetune", type(decoder).__name__, True
    return "unknown", name, False


def find_decode_steps(pipeline: Pipeline) -> list[DecodeStep]:
    steps = []
    for stage in pipeline.stages:
        block = stage.meta.get("block")
        decoder = stage.slots.get("decoder")
        if block == DECODE_RESIZE or decoder is not None:
            library, name, reduced = describe_decoder(decoder)
            steps.append(
                DecodeStep(
                    stage=stage.name,
                    how="block" if block == DECODE_RESIZE else "slot",
                    library=library,
                    decoder=name,
                    target=_slot_size(stage) or model_input_size(pipeline, stage),
                    transformable=stage.injects("decoder") and library != "unknown",
                    reduced=reduced,
                )
            )
        elif code := [d for d in find_code_decodes(stage.fn) if d.decoder]:
            steps.append(_code_step(pipeline, stage, code))
        elif stage.kind in ("decode", "preprocess") and _code_names(stage.fn) & _DECODE_NAMES:
            steps.append(DecodeStep(stage.name, "code", "unknown", "", _slot_size(stage), False))
    return steps


def _library_of(canonical: str) -> str:
    head = canonical.split(".")[0]
    return {"cv2": "opencv", "PIL": "pillow"}.get(head, head)


def wrapped_chain(fn: Any) -> list[Any]:
    """``fn`` and what it wraps (``__wrapped__``), outermost first."""
    chain = [fn]
    while hasattr(chain[-1], "__wrapped__") and len(chain) < 16:
        chain.append(chain[-1].__wrapped__)
    return chain


def _code_step(pipeline: Pipeline, stage: Stage, code: list[CodeDecode]) -> DecodeStep:
    """A stage whose own code decodes: reachable when each decoder's module-level name
    can be rebound for its function (and for its ``batch_fn``, when it has one)."""
    from pipetune.plugins.vision.rebind import Rebound, reachable

    chain = wrapped_chain(stage.fn)
    written = sorted({d.written for d in code})
    reason = reachable(chain[-1], written)
    if reason is None and stage.batch_fn is not None:
        batch_reason = reachable(stage.batch_fn, written)
        if batch_reason is not None:
            reason = f"its batch_fn: {batch_reason}"
    reduced = any(isinstance(fn, Rebound) for fn in chain) or (
        stage.meta.get("vision") == "vision.reduced_decode"
    )
    return DecodeStep(
        stage=stage.name,
        how="code",
        library=_library_of(code[0].decoder),
        decoder=code[0].decoder,
        target=_code_size(stage, chain[-1], code) or model_input_size(pipeline, stage),
        transformable=reason is None,
        reduced=reduced,
        code=tuple(code),
        unreachable=reason,
    )


def _code_size(stage: Stage, fn: Any, code: list[CodeDecode]) -> tuple[int, int] | None:
    """The resize's size: a literal in the code, else the slot (or the parameter's
    default) the code reads it from."""
    for decode in code:
        if decode.size:
            return decode.size
    for decode in code:
        if decode.size_name is None:
            continue
        value = stage.slots.get(decode.size_name)
        if value is None:
            try:
                param = inspect.signature(fn).parameters.get(decode.size_name)
            except (TypeError, ValueError):
                param = None
            if param is not None and param.default is not inspect.Parameter.empty:
                value = param.default
        try:
            size = as_size(value[:2] if isinstance(value, list | tuple) else value)
        except (ValueError, TypeError):
            continue
        return (size[1], size[0]) if decode.order == "hw" else size
    return _slot_size(stage)


def find_frame_loops(pipeline: Pipeline) -> list[FrameLoop]:
    loops = []
    source = None
    for stage in pipeline.stages:
        block = stage.meta.get("block")
        if block == FRAME_SOURCE:
            source = stage.name
            continue
        if block == CLASSIFY_FRAMES:
            loops.append(
                FrameLoop(
                    stage.name,
                    "block",
                    stage.injects("gate"),
                    stage.slots.get("gate") is not None,
                    source,
                )
            )
        elif "capture" in stage.slots and "model" in stage.slots:
            ok = stage.injects("capture") and stage.injects("model")
            loops.append(FrameLoop(stage.name, "slots", ok, False, None))
        elif "VideoCapture" in _code_names(stage.fn):
            loops.append(FrameLoop(stage.name, "code", False))
    return loops


def model_input_size(pipeline: Pipeline, after: Stage | None = None) -> tuple[int, int] | None:
    """The input size of the first model at or after ``after`` that declares one."""
    start = pipeline.index(after.name) if after is not None else 0
    for stage in pipeline.stages[start:]:
        noted = stage.meta.get("input_size")
        if noted:
            return as_size(noted)
        if stage.meta.get("block") in (CLASSIFY, CLASSIFY_FRAMES):
            size = _slot_size(stage)
            if size:
                return size
        model = stage.slots.get("model")
        if model is not None:
            size = getattr(model, "input_size", None)
            cfg = getattr(model, "default_cfg", None) or getattr(model, "pretrained_cfg", None)
            if size is None and isinstance(cfg, dict):
                size = cfg.get("input_size")
            if isinstance(size, list | tuple) and len(size) == 3:  # timm: (C, H, W)
                return (int(size[2]), int(size[1]))
            if size is not None:
                try:
                    return as_size(size)
                except ValueError:
                    pass
    return None


def torch_model_device(model: Any) -> str | None:
    """The device of a torch module's first parameter, without importing torch."""
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return None
    try:
        first = next(iter(parameters()))
    except (StopIteration, TypeError):
        return None
    device = getattr(first, "device", None)
    return getattr(device, "type", None)


def inference_after(pipeline: Pipeline, stage: str) -> Stage | None:
    for candidate in pipeline.stages[pipeline.index(stage) + 1 :]:
        if "model" in candidate.slots:
            return candidate
    return None


def hints_for(stage: Stage, pipeline: Pipeline) -> list[str]:
    """How to declare ``stage`` more fully so the vision changes can apply to it."""
    hints = []
    for step in find_decode_steps(pipeline):
        if step.stage != stage.name:
            continue
        if step.how == "code" and step.code and step.unreachable:
            first = step.code[0]
            hints.append(
                f"stage {stage.name!r} decodes with {first.written} ({first.where()}) but "
                f"pipetune cannot swap that decoder: {step.unreachable}. Declare it as a "
                "slot (decoder=...), or make the one-line change the vision.reduced_decode "
                "proposal shows"
            )
        elif step.how == "code" and not step.code:
            hints.append(
                f"stage {stage.name!r} seems to decode images inside its code: declare the "
                "decoder as a slot (decoder=cv2.imread, or PIL.Image.open) and the model "
                "input as size=(w, h) to unlock reduced-resolution JPEG decode "
                "(vision.reduced_decode)"
            )
        elif not step.transformable and step.library != "unknown":
            hints.append(
                f"stage {stage.name!r} has a decoder slot its function does not take: accept "
                "decoder= as a keyword argument so it can be replaced"
            )
        elif step.target is None and step.how != "code":
            hints.append(
                f"stage {stage.name!r}: declare size=(w, h) (the model input) so the "
                "reduced-decode factor is chosen without observing outputs"
            )
    for loop in find_frame_loops(pipeline):
        if loop.stage == stage.name and not loop.transformable:
            hints.append(
                f"stage {stage.name!r} reads video frames inside its code: declare "
                "capture=cv2.VideoCapture and model= as slots (keyword arguments) to unlock "
                "frame skipping (vision.motion_gate)"
            )
    return hints
