"""Static rules of the vision plugin for ``pipetune scan`` (docs/scan.md has the entries).

Read with ``ast`` only. Image sizes are unknown statically: a full decode before a resize
to 224 px costs a lot on a 12-megapixel photo and nothing on a thumbnail, hence the
confidences.
"""

from __future__ import annotations

import ast

from pipetune.scan.context import MISSING, FileContext, literal, target_names
from pipetune.scan.heuristics import model_call
from pipetune.scan.rules import Finding, Rule

#: Resizes to at most this many pixels on the long side count as "small".
SMALL_SIDE = 512


def _decoder(expr: ast.AST, ctx: FileContext) -> str | None:
    """``cv2.imread`` (full resolution) or ``PIL.Image.open`` at the root of ``expr``
    (through ``.convert(...)`` chains); ``None`` otherwise."""
    while isinstance(expr, ast.Call) and ctx.callee(expr) in {"convert", "copy"}:
        expr = ctx.receiver(expr)  # type: ignore[assignment]
    if not isinstance(expr, ast.Call):
        return None
    resolved = ctx.resolve(expr.func) or ""
    if resolved == "cv2.imread":
        flag = expr.args[1] if len(expr.args) > 1 else ctx.keyword(expr, "flags")
        if flag is not None and "REDUCED" in ast.unparse(flag):
            return None
        return "cv2.imread"
    if resolved in {"PIL.Image.open", "Image.open"}:
        return "Image.open"
    return None


def _decoded(ctx: FileContext) -> dict[str, str]:
    return ctx.state.setdefault("decoded", {}).setdefault(ctx.scope_key(), {})


def _small(size: ast.AST | None) -> int | None:
    value = literal(size) if size is not None else None
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    ):
        side = max(value)
        return side if 0 < side <= SMALL_SIDE else None
    return None


def check_reduced_decode(node: ast.AST, ctx: FileContext) -> Finding | None:
    decoded = _decoded(ctx)
    if isinstance(node, ast.Assign):
        kind = _decoder(node.value, ctx)
        for target in node.targets:
            for name in target_names(target):
                if kind:
                    decoded[name] = kind
                else:
                    decoded.pop(name, None)
        return None
    assert isinstance(node, ast.Call)
    callee = ctx.callee(node)
    receiver = ctx.receiver(node)
    if callee == "draft" and isinstance(receiver, ast.Name):
        decoded.pop(receiver.id, None)  # PIL's draft() already decodes at reduced size
        return None
    if callee == "resize" and ctx.resolve(node.func) == "cv2.resize":
        source = node.args[0] if node.args else None
        size = node.args[1] if len(node.args) > 1 else ctx.keyword(node, "dsize")
    elif callee in {"resize", "thumbnail"} and receiver is not None:
        source = receiver
        size = node.args[0] if node.args else ctx.keyword(node, "size")
    else:
        return None
    side = _small(size)
    if side is None or source is None:
        return None
    kind = decoded.get(source.id) if isinstance(source, ast.Name) else _decoder(source, ctx)
    if kind is None:
        return None
    hint = (
        "cv2.imread(path, cv2.IMREAD_REDUCED_COLOR_2/4/8)"
        if kind == "cv2.imread"
        else "img.draft('RGB', (w, h)) before resizing"
    )
    return ctx.finding(
        node,
        f"the image is decoded at full resolution ({kind}) and then resized to {side} px: a "
        f"JPEG can be decoded directly at 1/2, 1/4 or 1/8 size, skipping most of the "
        f"decode work ({hint})",
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
    needs=("imread", "Image.open"),
    description=(
        "JPEG decoding is dominated by the inverse DCT and colour conversion at full "
        "resolution. libjpeg can scale during the DCT (1/2, 1/4, 1/8), so a 4000x3000 photo "
        "headed for a 224x224 model can be decoded at 500x375 for a fraction of the time."
    ),
    fix="cv2.IMREAD_REDUCED_COLOR_{2,4,8} or PIL's Image.draft(); pipetune picks the "
    "largest reduction that keeps the model's outputs.",
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
