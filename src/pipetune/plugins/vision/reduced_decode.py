"""Reduced-resolution JPEG decode (DCT scaling) and the decoders built on it.

A JPEG stores 8×8 blocks of DCT coefficients; libjpeg(-turbo) can run a smaller inverse
transform per block and produce the image at 1/2, 1/4 or 1/8 of its size directly, skipping
most of the IDCT, the colour conversion and the upsampling work. OpenCV exposes it as
``IMREAD_REDUCED_COLOR_{2,4,8}``, Pillow as ``Image.draft``. The factor is chosen per image
from its header: the largest reduction that keeps the decoded image at least the model's
input size in both dimensions (:func:`choose_factor`), so the resize that follows only ever
shrinks.

Two kinds of objects live here:

* decoders for the plugin's own decode-and-resize block (``decode_resize(data, size)``),
* drop-in replacements for library decoders found in a user's ``decoder=`` slot or called
  by a stage's own code (``cv2.imread``, ``cv2.imdecode``, ``PIL.Image.open``, imageio's
  and scikit-image's ``imread``, ``torchvision.io.read_image``), with the same call
  signature and return type, so plain user code runs them unchanged (:func:`drop_in`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune.plugins.vision.inputs import BadInput, image_size, sniff_format

#: DCT scaling factors libjpeg supports through OpenCV and Pillow, largest first.
FACTORS = (8, 4, 2)


def as_size(size: Any) -> tuple[int, int]:
    """A target size as (width, height): ``224`` → (224, 224); ``(w, h)`` as is."""
    if isinstance(size, int | np.integer):
        return (int(size), int(size))
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"expected a size as an int or (width, height), got {size!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"a size must be positive, got {size!r}")
    return (width, height)


def choose_factor(
    width: int, height: int, target: tuple[int, int] | int, max_factor: int = 8
) -> int:
    """The largest DCT scaling factor (8, 4, 2, else 1) whose decoded image is still at
    least ``target`` (width, height) in both dimensions. libjpeg rounds scaled dimensions
    up, hence the ceilings."""
    target_w, target_h = as_size(target)
    for factor in FACTORS:
        if (
            factor <= max_factor
            and math.ceil(width / factor) >= target_w
            and math.ceil(height / factor) >= target_h
        ):
            return factor
    return 1


def _cv2() -> Any:
    from pipetune.core.kernel.registry import require

    return require("cv2", "vision", "OpenCV image decoding")


def _reduced_flag(cv2: Any, factor: int, grayscale: bool = False) -> int:
    if factor == 1:
        return cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    kind = "GRAYSCALE" if grayscale else "COLOR"
    return getattr(cv2, f"IMREAD_REDUCED_{kind}_{factor}")


_CV2_INTERPOLATION = {"area": "INTER_AREA", "linear": "INTER_LINEAR", "cubic": "INTER_CUBIC"}


# -- decoders for the plugin's decode-and-resize block ------------------------------------


@dataclass(frozen=True)
class OpenCVDecoder:
    """OpenCV (libjpeg-turbo) decode, then ``cv2.resize``. ``reduce=True`` decodes JPEGs
    with DCT scaling at the largest factor that keeps the target size (at most
    ``max_factor``). Returns RGB uint8 (height, width, 3)."""

    reduce: bool = False
    max_factor: int = 8
    interpolation: str = "area"
    name: str = "opencv"

    def factor_for(self, data: bytes, size: tuple[int, int]) -> int:
        if not self.reduce or sniff_format(data) != "jpeg":
            return 1
        dims = image_size(data)
        return 1 if dims is None else choose_factor(*dims, size, self.max_factor)

    def decode_resize(self, data: bytes, size: tuple[int, int], source: str = "") -> np.ndarray:
        cv2 = _cv2()
        flag = _reduced_flag(cv2, self.factor_for(data, size))
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
        if image is None:
            raise BadInput(source or "<bytes>", "corrupt image: OpenCV could not decode it")
        if image.shape[1] != size[0] or image.shape[0] != size[1]:
            inter = getattr(cv2, _CV2_INTERPOLATION.get(self.interpolation, "INTER_AREA"))
            image = cv2.resize(image, size, interpolation=inter)
        # Convert after the resize: the colour conversion then touches 224×224 pixels, not
        # 12 million (what a competent baseline does too).
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def describe(self) -> str:
        return f"opencv{'-reduced' if self.reduce else ''}"


@dataclass(frozen=True)
class PillowDecoder:
    """Pillow decode (``draft`` for DCT scaling when ``reduce=True``), then
    ``Image.resize`` with an antialiasing filter. Returns RGB uint8 (height, width, 3)."""

    reduce: bool = False
    max_factor: int = 8
    resample: str = "bilinear"
    name: str = "pillow"

    def decode_resize(self, data: bytes, size: tuple[int, int], source: str = "") -> np.ndarray:
        from io import BytesIO

        from pipetune.core.kernel.registry import require

        pil = require("PIL.Image", "vision", "Pillow image decoding")
        try:
            image = pil.open(BytesIO(data))
            if self.reduce and image.format == "JPEG":
                image.draft(None, _draft_request(image.size, size, self.max_factor))
            image = image.convert("RGB")
            filt = getattr(pil.Resampling, self.resample.upper())
            if image.size != size:
                image = image.resize(size, filt)
            return np.asarray(image)
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadInput(source or "<bytes>", f"corrupt image: Pillow: {exc}") from None

    def describe(self) -> str:
        return f"pillow{'-draft' if self.reduce else ''}"


def _draft_request(
    source: tuple[int, int], target: tuple[int, int], max_factor: int
) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for: Pillow picks the largest scale whose result is
    at least the request, so asking for the target (raised to honour ``max_factor``)
    selects the same factor as :func:`choose_factor`."""
    width, height = source
    return (
        max(target[0], math.ceil(width / max_factor)),
        max(target[1], math.ceil(height / max_factor)),
    )


# -- drop-in replacements for library decoders in a user's slot ----------------------------


@dataclass(frozen=True)
class ReducedImread:
    """A drop-in for ``cv2.imread(filename, flags)`` that decodes JPEGs at the largest DCT
    factor keeping ``target``. Like ``cv2.imread`` it returns None for unreadable files."""

    target: tuple[int, int]
    max_factor: int = 8

    def __call__(self, filename: Any, flags: int | None = None) -> Any:
        cv2 = _cv2()
        try:
            with open(filename, "rb") as handle:
                data = handle.read()
        except OSError:
            return None
        return _reduced_imdecode(cv2, data, flags, self.target, self.max_factor)


@dataclass(frozen=True)
class ReducedImdecode:
    """A drop-in for ``cv2.imdecode(buf, flags)`` with DCT scaling for JPEGs."""

    target: tuple[int, int]
    max_factor: int = 8

    def __call__(self, buf: Any, flags: int | None = None) -> Any:
        data = buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf)
        return _reduced_imdecode(_cv2(), data, flags, self.target, self.max_factor)


def _reduced_imdecode(
    cv2: Any, data: bytes, flags: int | None, target: tuple[int, int], max_factor: int
) -> Any:
    flags = cv2.IMREAD_COLOR if flags is None else flags
    array = np.frombuffer(data, dtype=np.uint8)
    plain = {cv2.IMREAD_COLOR: False, cv2.IMREAD_GRAYSCALE: True}
    # Other flags (unchanged, any-depth, already reduced) keep their exact meaning.
    if flags not in plain or sniff_format(data) != "jpeg":
        return cv2.imdecode(array, flags)
    dims = image_size(data)
    factor = 1 if dims is None else choose_factor(*dims, target, max_factor)
    return cv2.imdecode(array, _reduced_flag(cv2, factor, grayscale=plain[flags]))


@dataclass(frozen=True)
class DraftOpen:
    """A drop-in for ``PIL.Image.open`` that sets ``draft`` on JPEGs, so the pixels are
    decoded at the largest DCT factor keeping ``target`` when the caller loads them."""

    target: tuple[int, int]
    max_factor: int = 8

    def __call__(self, fp: Any, mode: str = "r", formats: Any = None) -> Any:
        from pipetune.core.kernel.registry import require

        pil = require("PIL.Image", "vision", "Pillow image decoding")
        image = pil.open(fp, mode, formats)
        if image.format == "JPEG":
            image.draft(None, _draft_request(image.size, self.target, self.max_factor))
        return image


@dataclass(frozen=True)
class ReducedReadImage:
    """A drop-in for ``torchvision.io.read_image(path)`` (a uint8 CHW RGB tensor) that
    decodes JPEGs with DCT scaling through OpenCV. Needs torch, not torchvision."""

    target: tuple[int, int]
    max_factor: int = 8

    def __call__(self, path: Any, mode: Any = None, apply_exif_orientation: bool = False) -> Any:
        from pipetune.core.kernel.registry import require

        torch = require("torch", "vision", "tensor output")
        cv2 = _cv2()
        with open(path, "rb") as handle:
            data = handle.read()
        gray = str(mode).upper().endswith("GRAY")
        flags = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        image = _reduced_imdecode(cv2, data, flags, self.target, self.max_factor)
        if image is None:
            raise RuntimeError(f"could not decode {path}")
        if gray:
            return torch.from_numpy(np.ascontiguousarray(image[None]))
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


@dataclass(frozen=True)
class ReducedArrayRead:
    """A drop-in for imageio's ``imread`` (v2 and v3) and ``skimage.io.imread``: a JPEG
    path or bytes with no other argument is decoded by Pillow with ``draft`` at the
    largest DCT factor keeping ``target`` and returned as the same kind of array (RGB or
    grey uint8, writable); every other call goes to ``original`` unchanged."""

    original: Any
    target: tuple[int, int]
    max_factor: int = 8

    def __call__(self, uri: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(uri, str | bytes | os.PathLike):
            return self.original(uri, *args, **kwargs)
        if isinstance(uri, bytes):
            data = uri
        else:
            try:
                with open(uri, "rb") as handle:
                    data = handle.read()
            except OSError:
                return self.original(uri)  # the library's own error, as before
        if sniff_format(data) != "jpeg":
            return self.original(uri)
        from io import BytesIO

        from pipetune.core.kernel.registry import require

        pil = require("PIL.Image", "vision", "Pillow image decoding")
        image = pil.open(BytesIO(data))
        if image.mode not in ("RGB", "L"):
            return self.original(uri)
        image.draft(None, _draft_request(image.size, self.target, self.max_factor))
        return np.array(image)


#: Library decoders by canonical name, and the module each is found in.
_LIBRARY_FUNCTIONS = {
    "cv2.imread": ("cv2", "imread"),
    "cv2.imdecode": ("cv2", "imdecode"),
    "PIL.Image.open": ("PIL.Image", "open"),
    "imageio.imread": ("imageio", "imread"),
    "imageio.v2.imread": ("imageio.v2", "imread"),
    "imageio.v3.imread": ("imageio.v3", "imread"),
    "skimage.io.imread": ("skimage.io", "imread"),
}


def library_decoder(obj: Any) -> str | None:
    """The canonical name of a library decode function (``PIL.Image.open``), by
    identity with the loaded library's own function; ``None`` for anything else. Never
    imports a library to compare."""
    import sys

    for canonical, (module_name, attr) in _LIBRARY_FUNCTIONS.items():
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attr, None) is obj:
            return canonical
    return None


def drop_in(canonical: str, original: Any, target: tuple[int, int], max_factor: int = 8) -> Any:
    """The reduced-decode drop-in for library decoder ``canonical``: same call, same
    return type."""
    if canonical == "cv2.imread":
        return ReducedImread(target=target, max_factor=max_factor)
    if canonical == "cv2.imdecode":
        return ReducedImdecode(target=target, max_factor=max_factor)
    if canonical == "PIL.Image.open":
        return DraftOpen(target=target, max_factor=max_factor)
    if canonical in ("torchvision.io.read_image", "torchvision.io.image.read_image"):
        return ReducedReadImage(target=target, max_factor=max_factor)
    if canonical in _LIBRARY_FUNCTIONS:
        return ReducedArrayRead(original, target, max_factor)
    raise ValueError(f"no reduced-decode drop-in for {canonical}")


#: Library decoders recognized in a ``decoder=`` slot by qualified name (those
#: :func:`library_decoder` does not know by identity).
LIBRARY_DECODERS: dict[str, type] = {
    "cv2.imread": ReducedImread,
    "cv2.imdecode": ReducedImdecode,
    "PIL.Image.open": DraftOpen,
    "torchvision.io.read_image": ReducedReadImage,
    "torchvision.io.image.read_image": ReducedReadImage,
}


def replacement_for(decoder: Any, target: tuple[int, int], max_factor: int = 8) -> Any | None:
    """The reduced-decode replacement for a library decoder found in a slot, or None."""
    from pipetune.plugins.vision.recognize import qualified_name

    canonical = library_decoder(decoder)
    if canonical is None and qualified_name(decoder) in LIBRARY_DECODERS:
        canonical = qualified_name(decoder)
    if canonical is not None:
        return drop_in(canonical, decoder, target, max_factor)
    if isinstance(decoder, OpenCVDecoder | PillowDecoder):
        return type(decoder)(reduce=True, max_factor=max_factor, **_keep(decoder))
    return None


def _keep(decoder: Any) -> dict[str, Any]:
    if isinstance(decoder, OpenCVDecoder):
        return {"interpolation": decoder.interpolation}
    return {"resample": decoder.resample}
