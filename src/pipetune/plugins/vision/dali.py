"""NVIDIA DALI decode → resize → normalize pipelines.

On a CPU-only machine DALI's CPU operators run (the pipeline is created with
``device_id=None``: no CUDA context at all); with a GPU the decoder is ``mixed`` — nvJPEG,
Huffman decoding on the CPU threads and the IDCT on the GPU — and resize and normalize run
on the GPU. Inputs are fed as encoded bytes through ``external_source``, in batches.

A corrupt image makes a DALI run fail as a whole (and can invalidate the pipeline), so the
bytes are checked before feeding (inputs.py), and a batch that still fails is re-run one
image at a time on a fresh pipeline to isolate the bad item.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune.core.kernel.registry import Availability, Dependency
from pipetune.plugins.vision.inputs import BadInput, BatchDecoder

DALI = Dependency("nvidia.dali", "vision", "DALI decode pipelines", "nvidia-dali-cuda130")


def dali_availability() -> Availability:
    return DALI.check()


def cuda_available() -> bool:
    """Whether a CUDA device is usable, without importing torch when it is absent."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class DaliDecoder(BatchDecoder):
    """Decode-and-resize with a DALI pipeline. ``device``: ``cpu`` or ``gpu`` (mixed
    nvJPEG decoder). ``normalize``: ``(mean, std)`` in 0-1 units to output float32 CHW
    normalized tensors (folding the classifier's normalization into the pipeline), or None
    for RGB uint8 HWC like the other decoders."""

    device: str = "cpu"
    threads: int = 2
    max_batch: int = 16
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    name: str = "dali"

    def describe(self) -> str:
        return f"dali-{self.device}"

    def decode_resize_batch(
        self, blobs: list[bytes], size: tuple[int, int], sources: list[str] | None = None
    ) -> list[Any]:
        sources = sources or ["<bytes>"] * len(blobs)
        outputs: list[Any] = []
        for start in range(0, len(blobs), self.max_batch):
            chunk = blobs[start : start + self.max_batch]
            names = sources[start : start + self.max_batch]
            try:
                outputs.extend(self._run(chunk, size))
            except Exception:
                # One bad image fails the whole run: isolate it on fresh pipelines.
                _forget(self, size)
                for blob, source in zip(chunk, names, strict=True):
                    try:
                        outputs.extend(self._run([blob], size))
                    except Exception as exc:
                        _forget(self, size)
                        outputs.append(BadInput(source, f"corrupt image: DALI: {_first_line(exc)}"))
        return outputs

    def _run(self, blobs: list[bytes], size: tuple[int, int]) -> list[np.ndarray]:
        pipe = _pipeline(self, size)
        pipe.feed_input("encoded", [np.frombuffer(b, dtype=np.uint8) for b in blobs])
        (batch,) = pipe.run()
        if self.device == "gpu":
            batch = batch.as_cpu()
        return [np.array(batch[i]) for i in range(len(blobs))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


_local = threading.local()  # DALI pipelines are not thread-safe: one set per thread


def _forget(decoder: DaliDecoder, size: tuple[int, int]) -> None:
    getattr(_local, "pipes", {}).pop((decoder, size), None)


def _pipeline(decoder: DaliDecoder, size: tuple[int, int]) -> Any:
    pipes = getattr(_local, "pipes", None)
    if pipes is None:
        pipes = _local.pipes = {}
    key = (decoder, size)
    if key not in pipes:
        pipes[key] = build_pipeline(decoder, size)
    return pipes[key]


def build_pipeline(decoder: DaliDecoder, size: tuple[int, int]) -> Any:
    """A built DALI pipeline: encoded bytes → decoded RGB → resized (antialiased linear) →
    optionally normalized to float32 CHW."""
    from pipetune.core.kernel.registry import require

    require("nvidia.dali", "vision", "DALI decode pipelines")
    from nvidia.dali import fn, pipeline_def
    from nvidia.dali import types as dali_types

    types: Any = dali_types  # DALI's stubs leave out the enum members (UINT8, RGB...)

    gpu = decoder.device == "gpu"
    width, height = size

    # Synchronous, unpipelined execution: outputs come back for exactly the batch fed
    # (a prefetching pipeline would wait for more input than one call has).
    @pipeline_def(
        batch_size=decoder.max_batch,
        num_threads=max(1, decoder.threads),
        device_id=0 if gpu else None,  # type: ignore[arg-type]  # None: CPU only, as DALI documents
        prefetch_queue_depth=1,
        exec_async=False,
        exec_pipelined=False,
    )
    def pipe() -> Any:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        images: Any = fn.decoders.image(
            encoded, device="mixed" if gpu else "cpu", output_type=types.RGB
        )
        images = fn.resize(
            images,
            resize_x=width,
            resize_y=height,
            interp_type=types.INTERP_LINEAR,
            antialias=True,
        )
        if decoder.normalize is not None:
            mean, std = decoder.normalize
            images = fn.crop_mirror_normalize(
                images,
                dtype=types.FLOAT,
                output_layout="CHW",
                mean=[255.0 * m for m in mean],
                std=[255.0 * s for s in std],
            )
        return images

    built = pipe()
    built.build()
    return built
