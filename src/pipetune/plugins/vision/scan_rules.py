"""Static rules of the vision plugin for ``pipetune scan`` (docs/scan.md has the entries).

Read with ``ast`` only. Image sizes are unknown statically: a full decode before a resize
to 224 px costs a lot on a 12-megapixel photo and nothing on a thumbnail, hence the
confidences.

:func:`match_decode_resize` is the detection PT-VIS001 is built on; the plugin's stage
recognizer (``code_decode.py``) runs the same matcher over a stage's own source, so a
stage is recognized exactly where ``scan`` flags it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from pipetune.scan.context import MISSING, FileContext, literal, target_names
from pipetune.scan.heuristics import model_call
from pipetune.scan.rules import Finding, Rule

#: Resizes to at most this many pixels on the long side count as "small".
SMALL_SIDE = 512
#: Library calls that decode a whole image, by resolved name -> canonical name.
DECODE_CALLS = {
    "cv2.imread": "cv2.imread",
    "cv2.imdecode": "cv2.imdecode",
    "PIL.Image.open": "PIL.Image.open",
    "Image.open": "PIL.Image.open",
    "imageio.imread": "imageio.imread",
    "imageio.v2.imread": "imageio.v2.imread",
    "imageio.v3.imread": "imageio.v3.imread",
    "skimage.io.imread": "skimage.io.imread",
}
#: What each canonical decoder returns: a PIL image (resized by its methods) or an array.
PIL_DECODERS = frozenset({"PIL.Image.open"})
#: Calls a decoded image passes through unchanged in kind (``.convert("RGB")``,
#: ``np.asarray(img)``).
_PASS_METHODS = frozenset({"convert", "copy", "astype"})
_PASS_FUNCTIONS = frozenset({"numpy.asarray", "numpy.array", "np.asarray", "np.array"})
_FROMARRAY = frozenset({"PIL.Image.fromarray", "Image.fromarray"})


@dataclass(frozen=True)
class DecodeCall:
    """A library decode call in the source: its canonical name (``PIL.Image.open``), the
    name as the code writes it (``Image.open``, ``iio.imread``), the call node and the
    statement that holds it."""

    decoder: str
    written: str
    node: ast.Call
    statement: ast.stmt | None


@dataclass(frozen=True)
class DecodeResize:
    """A decode whose image then goes to a resize: the resize call, its size expression
    and whether that size reads (width, height) (``wh``: OpenCV, Pillow) or (rows, cols)
    (``hw``: scikit-image)."""

    decode: DecodeCall
    resize: ast.Call
    size: ast.expr | None
    order: str


def _statement(ctx: FileContext) -> ast.stmt | None:
    """The statement being visited, or the innermost one around the visited node."""
    if isinstance(ctx.node, ast.stmt):
        return ctx.node
    for node in reversed(ctx.ancestors):
        if isinstance(node, ast.stmt):
            return node
    return None


def decode_call(expr: ast.AST | None, ctx: FileContext) -> DecodeCall | None:
    """The library decode at the root of ``expr`` (through ``.convert(...)``,
    ``.astype(...)``, ``np.asarray(...)`` and subscripts), a name assigned one earlier in
    the same function, or ``None``. A ``cv2.imread`` that already asks for a reduced size
    is not one."""
    while True:
        if isinstance(expr, ast.Call) and ctx.callee(expr) in _PASS_METHODS:
            expr = ctx.receiver(expr)
        elif isinstance(expr, ast.Call) and (ctx.resolve(expr.func) or "") in _PASS_FUNCTIONS:
            expr = expr.args[0] if expr.args else None
        elif isinstance(expr, ast.Subscript):
            expr = expr.value
        else:
            break
    if isinstance(expr, ast.Name):
        return decoded_names(ctx).get(expr.id)
    if not isinstance(expr, ast.Call):
        return None
    decoder = DECODE_CALLS.get(ctx.resolve(expr.func) or "")
    if decoder is None:
        return None
    if decoder.startswith("cv2."):
        flag = expr.args[1] if len(expr.args) > 1 else ctx.keyword(expr, "flags")
        if flag is not None and "REDUCED" in ast.unparse(flag):
            return None
    return DecodeCall(decoder, ctx.dotted(expr.func) or "", expr, _statement(ctx))


def decoded_names(ctx: FileContext) -> dict[str, DecodeCall]:
    """Names assigned a decoded image in the function being walked."""
    return ctx.state.setdefault("decoded", {}).setdefault(ctx.scope_key(), {})


def track_assignment(node: ast.Assign, ctx: FileContext) -> None:
    """Remember which names hold a decoded image in this function (or forget them)."""
    decoded = decoded_names(ctx)
    found = decode_call(node.value, ctx)
    for target in node.targets:
        for name in target_names(target):
            if found is not None:
                decoded[name] = found
            else:
                decoded.pop(name, None)


def match_decode_resize(node: ast.Call, ctx: FileContext) -> DecodeResize | None:
    """A resize (``cv2.resize``, ``skimage.transform.resize``, a PIL image's ``resize`` or
    ``thumbnail``) whose image comes from a full-resolution library decode. A PIL image
    on which ``draft()`` was called no longer counts (it decodes at reduced size)."""
    callee = ctx.callee(node)
    receiver = ctx.receiver(node)
    if callee == "draft" and isinstance(receiver, ast.Name):
        decoded_names(ctx).pop(receiver.id, None)
        return None
    resolved = ctx.resolve(node.func) or ""
    order = "wh"
    if callee == "resize" and resolved == "cv2.resize":
        source = node.args[0] if node.args else ctx.keyword(node, "src")
        size = node.args[1] if len(node.args) > 1 else ctx.keyword(node, "dsize")
    elif callee == "resize" and resolved == "skimage.transform.resize":
        source = node.args[0] if node.args else ctx.keyword(node, "image")
        size = node.args[1] if len(node.args) > 1 else ctx.keyword(node, "output_shape")
        order = "hw"
    elif callee in {"resize", "thumbnail"} and receiver is not None:
        source = receiver
        if isinstance(receiver, ast.Call) and (ctx.resolve(receiver.func) or "") in _FROMARRAY:
            source = receiver.args[0] if receiver.args else None  # Image.fromarray(decoded)
        size = node.args[0] if node.args else ctx.keyword(node, "size")
    else:
        return None
    found = decode_call(source, ctx)
    if found is None:
        return None
    if source is receiver and found.decoder not in PIL_DECODERS:
        return None  # ndarray.resize reshapes in place: not an image resize
    return DecodeResize(found, node, size, order)


def _small(size: ast.AST | None) -> int | None:
    value = literal(size) if size is not None else None
    if (
        isinstance(value, tuple | list)
        and len(value) in (2, 3)
        and all(isinstance(v, int) for v in value[:2])
    ):
        side = max(value[:2])
        return side if 0 < side <= SMALL_SIDE else None
    return None


#: How to decode at reduced size instead, per decoder.
_HINTS = {
    "cv2.imread": "cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_2/4/8)",
    "cv2.imdecode": "cv2.imdecode(buf, cv2.IMREAD_REDUCED_COLOR_2/4/8)",
    "PIL.Image.open": "img.draft('RGB', (w, h)) before resizing",
}
_ARRAY_HINT = (
    "cv2.cvtColor(cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_2/4/8), cv2.COLOR_BGR2RGB): "
    "the same RGB array"
)


def check_reduced_decode(node: ast.AST, ctx: FileContext) -> Finding | None:
    if isinstance(node, ast.Assign):
        track_assignment(node, ctx)
        return None
    assert isinstance(node, ast.Call)
    match = match_decode_resize(node, ctx)
    if match is None:
        return None
    side = _small(match.size)
    if side is None:
        return None
    decoder = match.decode.decoder
    written = match.decode.written or decoder
    return ctx.finding(
        node,
        f"the image is decoded at full resolution ({written}) and then resized to {side} px: "
        f"a JPEG can be decoded directly at 1/2, 1/4 or 1/8 size, skipping most of the "
        f"decode work ({_HINTS.get(decoder, _ARRAY_HINT)})",
    )


REDUCED_DECODE = Rule(
    id="PT-VIS001",
    name="full-decode-then-downscale",
    summary="An image decoded at full resolution, then resized small",
    proposal="vision.reduced_decode",
    node_types=(ast.Assign, ast.Call),
    call_names=frozenset({"resize", "thumbnail", "draft"}),
    check=check_reduced_decode,
    confidence=0.7,
    needs=("imread", "imdecode", "Image.open"),
    description=(
        "JPEG decoding is dominated by the inverse DCT and colour conversion at full "
        "resolution. libjpeg can scale during the DCT (1/2, 1/4, 1/8), so a 4000x3000 photo "
        "headed for a 224x224 model can be decoded at 500x375 for a fraction of the time."
    ),
    fix="cv2.IMREAD_REDUCED_COLOR_{2,4,8} or PIL's Image.draft() (for imageio or "
    "skimage.io.imread: cv2.imread with the reduced flag, converted to RGB); pipetune picks "
    "the largest reduction that keeps the model's outputs.",
    tags=("image", "decode"),
)


def check_every_frame(node: ast.AST, ctx: FileContext) -> Finding | None:
    assert isinstance(node, ast.While | ast.For)
    reads = False
    model = None
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            callee = ctx.callee(child)
            if callee == "read" and _is_capture(ctx.receiver(child)):
                reads = True
            elif callee == "grab" or callee == "set":
                return None  # skips frames (grab) or seeks (set CAP_PROP_POS_FRAMES)
            elif model is None and model_call(child) is not None:
                model = child
        elif isinstance(child, ast.BinOp) and isinstance(child.op, ast.Mod):
            return None  # `if i % stride` style frame skipping
        elif isinstance(child, ast.Continue):
            return None  # some frames are skipped (a motion gate, a stride)
    if not reads or model is None:
        return None
    return ctx.finding(
        model,
        f"every frame read in this loop (line {node.lineno}) goes to "
        f"{ast.unparse(model.func)}: consecutive frames are nearly identical; a frame "
        "stride or a motion gate reuses the last result for frames that did not change",
    )


def _is_capture(expr: ast.AST | None) -> bool:
    name = (FileContext.dotted(expr) or "").rsplit(".", 1)[-1].lower()
    return any(word in name for word in ("cap", "video", "stream", "camera", "cam"))


EVERY_FRAME = Rule(
    id="PT-VIS002",
    name="every-frame-to-model",
    summary="Every frame of a video sent to the model",
    proposal="vision.frame_stride",
    node_types=(ast.While, ast.For),
    check=check_every_frame,
    confidence=0.6,
    needs=("VideoCapture", "cap.read()", "video.read()", "camera.read()", "stream.read()"),
    description=(
        "Video at 30 fps repeats itself: most consecutive frames differ by little. Running "
        "the model on each costs 30 inferences a second for a handful of distinct answers."
    ),
    fix="process every Nth frame (vision.frame_stride) or only frames whose pixels changed "
    "past a tuned threshold (vision.motion_gate), reusing the last result in between.",
    tags=("video",),
)


def _dataloader(node: ast.Call, ctx: FileContext) -> bool:
    resolved = ctx.resolve(node.func) or ""
    return resolved.endswith("DataLoader") and (
        resolved.startswith("torch.") or resolved == "DataLoader"
    )


def check_single_process_loader(node: ast.Call, ctx: FileContext) -> Finding | None:
    if not _dataloader(node, ctx) or ctx.has_star_kwargs(node):
        return None
    workers = ctx.keyword_value(node, "num_workers")
    if workers is not MISSING and workers != 0:
        return None
    return ctx.finding(
        node,
        "DataLoader without worker processes (num_workers=0): decoding and augmentation "
        "run on the main thread, between model calls, instead of overlapping with them",
    )


SINGLE_PROCESS_LOADER = Rule(
    id="PT-VIS003",
    name="dataloader-single-process",
    summary="A DataLoader that decodes on the main process (num_workers=0)",
    proposal="vision.parallel_decode",
    node_types=(ast.Call,),
    call_names=frozenset({"DataLoader"}),
    check=check_single_process_loader,
    confidence=0.7,
    needs=("DataLoader",),
    description=(
        "With num_workers=0 the model waits while each batch is decoded and transformed; "
        "worker processes prepare the next batches while the model runs on this one."
    ),
    fix="num_workers = a few per core left over (pipetune's parallel decode stage tunes "
    "the count on your images).",
    tags=("image", "dataloader"),
)


def check_pin_memory(node: ast.Call, ctx: FileContext) -> Finding | None:
    if not _dataloader(node, ctx) or ctx.has_star_kwargs(node):
        return None
    if ctx.keyword_value(node, "pin_memory") is True:
        return None
    state = ctx.state
    if "gpu" not in state:
        state["gpu"] = ctx.mentions(".cuda(") or ctx.mentions("'cuda") or ctx.mentions('"cuda')
    if not state["gpu"]:
        return None
    return ctx.finding(
        node,
        "DataLoader without pin_memory=True feeding a CUDA model: each batch is copied to "
        "a pinned staging buffer before the transfer, and the copy cannot overlap compute",
    )


PIN_MEMORY = Rule(
    id="PT-VIS004",
    name="dataloader-without-pin-memory",
    summary="A DataLoader feeding a GPU model without pin_memory=True",
    proposal="vision.parallel_decode",
    node_types=(ast.Call,),
    call_names=frozenset({"DataLoader"}),
    check=check_pin_memory,
    confidence=0.6,
    needs=("DataLoader",),
    description=(
        "Host-to-device copies from pageable memory go through a staging buffer and block; "
        "from pinned memory they are direct DMA and can run asynchronously "
        "(.to('cuda', non_blocking=True)) while the GPU computes. No pipetune proposal "
        "applies pinned memory yet: the nearest is the parallel input pipeline."
    ),
    fix="DataLoader(..., pin_memory=True) and .to('cuda', non_blocking=True).",
    tags=("gpu", "dataloader"),
)

RULES: tuple[Rule, ...] = (REDUCED_DECODE, EVERY_FRAME, SINGLE_PROCESS_LOADER, PIN_MEMORY)
