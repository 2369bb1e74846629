"""Batched nvJPEG decode through ``torchvision.io.decode_jpeg(device="cuda")``, for
machines with a GPU but without DALI.

torchvision is imported only here, only when this decoder runs; a machine without CUDA or
without torchvision gets the proposal as unavailable with the reason (plugin.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune.core.kernel.registry import Availability, Dependency
from pipetune.plugins.vision.inputs import BadInput, BatchDecoder, sniff_format

# Not in the ``vision`` extra: PyPI's torchvision must match the installed torch build
# exactly (a CUDA machine installs both together), so the hint names it alone.
TORCHVISION = Dependency("torchvision", None, "nvJPEG decode on the GPU")


def nvjpeg_availability() -> Availability:
    from pipetune.plugins.vision.dali import cuda_available

    found = TORCHVISION.check()
    if not found:
        return found
    if not cuda_available():
        return Availability(False, reason="no CUDA device: nvJPEG decodes on an NVIDIA GPU")
    return Availability(True)


@dataclass(frozen=True)
class NvJpegDecoder(BatchDecoder):
    """Decode a batch of JPEGs on the GPU with nvJPEG, resize with antialiasing on the
    GPU, and return RGB uint8 HWC arrays (or normalized float32 CHW with ``normalize``)."""

    device: str = "cuda"
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    name: str = "nvjpeg"

    def describe(self) -> str:
        return "torchvision-nvjpeg"

    def decode_resize_batch(
        self, blobs: list[bytes], size: tuple[int, int], sources: list[str] | None = None
    ) -> list[Any]:
        import torch
        import torchvision.io as tvio

        sources = sources or ["<bytes>"] * len(blobs)
        outputs: list[Any] = [None] * len(blobs)
        jpeg = [i for i, b in enumerate(blobs) if sniff_format(b) == "jpeg"]
        tensors = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpeg]
        try:
            decoded = tvio.decode_jpeg(tensors, device=self.device) if tensors else []
        except RuntimeError:  # isolate the bad image
            decoded = []
            for t, i in zip(tensors, jpeg, strict=True):
                try:
                    decoded.append(tvio.decode_jpeg(t, device=self.device))
                except RuntimeError as exc:
                    decoded.append(BadInput(sources[i], f"corrupt JPEG: nvJPEG: {exc}"))
        for i, image in zip(jpeg, decoded, strict=True):
            outputs[i] = image if isinstance(image, BadInput) else self._finish(image, size)
        for i, blob in enumerate(blobs):  # PNG and others: decoded on the CPU
            if outputs[i] is None:
                try:
                    image = tvio.decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8))
                    outputs[i] = self._finish(image.to(self.device), size)
                except RuntimeError as exc:
                    outputs[i] = BadInput(sources[i], f"corrupt image: torchvision: {exc}")
        return outputs

    def _finish(self, image: Any, size: tuple[int, int]) -> np.ndarray:
        import torch.nn.functional as F

        image = image[:3] if image.shape[0] >= 3 else image.expand(3, -1, -1)
        resized = F.interpolate(
            image[None].float(), size=(size[1], size[0]), mode="bilinear", antialias=True
        )[0]
        if self.normalize is not None:
            import torch

            mean = torch.tensor(self.normalize[0], device=resized.device)[:, None, None]
            std = torch.tensor(self.normalize[1], device=resized.device)[:, None, None]
            return ((resized / 255.0 - mean) / std).cpu().numpy().astype(np.float32)
        return resized.round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
