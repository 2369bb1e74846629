"""Reading image inputs safely: sniffing the format, the JPEG header, and bad input.

Bad input never crashes a vision stage and never silently shortens a result: a stage either
raises :class:`BadInput` (``on_error="raise"``, so the runtime counts the item as failed
with the reason) or returns a :class:`Skipped` marker in the item's place
(``on_error="skip"``), which downstream vision stages pass through unchanged.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import PipelineError

if TYPE_CHECKING:
    import numpy as np

#: Magic numbers of the formats we recognize (the first bytes of the file).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
#: Markers that start a JPEG frame (SOF0..SOF15 without DHT/JPG/DAC).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class BadInput(PipelineError):
    """An input that cannot be decoded: what it is and why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class Skipped:
    """Stands in for the output of an input that could not be processed.

    Equal markers compare equal, so a baseline and a candidate that skip the same input
    agree on it; :func:`count_skipped` tallies them by reason.
    """

    reason: str
    source: str = ""

    def __str__(self) -> str:
        return f"skipped ({self.reason})"


class BatchDecoder:
    """A decoder built around its batch call (DALI, nvJPEG): one image is a batch of one,
    whose :class:`BadInput` in the image's place is raised."""

    def decode_resize_batch(
        self, blobs: list[bytes], size: tuple[int, int], sources: list[str] | None = None
    ) -> list[Any]:
        """Each blob decoded and resized to ``size``, or a :class:`BadInput` in its place."""
        raise NotImplementedError

    def decode_resize(self, data: bytes, size: tuple[int, int], source: str = "") -> np.ndarray:
        (value,) = self.decode_resize_batch([data], size, [source])
        if isinstance(value, BadInput):
            raise value
        return value


def describe_source(item: Any) -> str:
    if isinstance(item, str | Path):
        return str(item)
    if isinstance(item, bytes | bytearray | memoryview):
        return f"<{len(item)} bytes>"
    return f"<{type(item).__name__}>"


def read_image_bytes(item: Any) -> bytes:
    """The encoded bytes of ``item`` (a path or bytes), checked for the obvious defects:
    missing or empty file, not an image, truncated JPEG. Raises :class:`BadInput`."""
    source = describe_source(item)
    if isinstance(item, str | Path):
        try:
            data = Path(item).read_bytes()
        except FileNotFoundError:
            raise BadInput(source, "file not found") from None
        except IsADirectoryError:
            raise BadInput(source, "is a directory, not an image file") from None
        except OSError as exc:
            raise BadInput(source, f"cannot read: {exc.strerror}") from None
    elif isinstance(item, bytes | bytearray | memoryview):
        data = bytes(item)
    else:
        raise BadInput(source, "expected an image path or encoded bytes")
    check_image_bytes(data, source)
    return data


def sniff_format(data: bytes) -> str | None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_image_bytes(data: bytes, source: str = "<bytes>") -> str:
    """The format of ``data``; raises :class:`BadInput` when it is empty, not an image,
    or a JPEG without its end-of-image marker (truncated: decoders would silently fill
    the missing rows with grey)."""
    if not data:
        raise BadInput(source, "empty file (0 bytes)")
    kind = sniff_format(data)
    if kind is None:
        raise BadInput(source, "not an image (unrecognized file signature)")
    # Entropy-coded JPEG data stuffs every 0xFF with 0x00, so FF D9 near the end can only be
    # the EOI marker; trailers some cameras append after it are tolerated.
    if kind == "jpeg" and b"\xff\xd9" not in data[-4096:]:
        raise BadInput(source, "truncated JPEG (no end-of-image marker)")
    return kind


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF header, without decoding; None if not found."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill bytes
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF_MARKERS and pos + 9 <= end:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return (width, height)
        if marker == 0xDA:  # start of scan before any SOF: malformed
            return None
        pos += 2 + length
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of an encoded image when the header tells it cheaply."""
    kind = sniff_format(data)
    if kind == "jpeg":
        return jpeg_size(data)
    if kind == "png" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return (width, height)
    return None


def count_skipped(outputs: Iterable[Any]) -> dict[str, int]:
    """How many outputs (or frames inside per-frame outputs) are :class:`Skipped`, by
    reason."""
    counts: Counter[str] = Counter()
    for output in outputs:
        if isinstance(output, Skipped):
            counts[output.reason] += 1
        elif isinstance(output, list):
            counts.update(o.reason for o in output if isinstance(o, Skipped))
    return dict(counts)
