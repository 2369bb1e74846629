"""Small torch CNN classifiers for the demos, trained at set-up and cached.

No pretrained vision weights can be downloaded here, so the demos train their own: a plain
conv-BN-ReLU network with global average pooling, trained with Adam on generated views
(data.py). Weights and the training report (held-out accuracy, prediction entropy) are
cached under ``cache_dir("vision")/models`` keyed by the spec, so set-up trains once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipetune.core.kernel.registry import require
from pipetune.core.loop.paths import cache_dir

MODEL_VERSION = "v1"


@dataclass(frozen=True)
class CNNSpec:
    """Architecture and training recipe. ``widths``: channels of the strided stages (the
    stem strides by ``stem_stride``, the others by 2); ``double``: a second 3×3 conv in
    each middle stage (more compute per frame, like a real backbone)."""

    name: str
    classes: tuple[str, ...]
    input_size: int
    widths: tuple[int, ...] = (24, 48, 96, 128)
    double: bool = False
    stem_stride: int = 2
    epochs: int = 6
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    data: str = ""  # describes the training data (part of the cache key)

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": MODEL_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def build_cnn(spec: CNNSpec) -> Any:
    torch = require("torch", "vision", "the demo classifiers")
    nn = torch.nn
    layers: list[Any] = []
    channels = 3
    last = len(spec.widths) - 1
    for i, width in enumerate(spec.widths):
        stride = spec.stem_stride if i == 0 else 2
        kernel = 2 * stride + 1 if i == 0 else 3  # stem: 5x5 at stride 2, 9x9 at stride 4
        layers += [
            nn.Conv2d(channels, width, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        if spec.double and 0 < i < last:
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, len(spec.classes))]
    return nn.Sequential(*layers)


def _tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> Any:
    import torch

    x: Any = images.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def predict(
    model: Any, images: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), 64):
            out.append(model(_tensor(images[i : i + 64], mean, std)).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def train(
    spec: CNNSpec,
    x: np.ndarray,
    y: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    log: Callable[[str], None] | None = None,
) -> Any:
    """Train a fresh :func:`build_cnn` on uint8 NHWC images (random horizontal flips)."""
    torch = require("torch", "vision", "the demo classifiers")
    # One intra-op thread: these small convolutions gain little from a second thread and,
    # on a shared machine, oversubscribed OpenMP threads spin and run several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(torch, spec, x, y, mean, std, log)
    finally:
        torch.set_num_threads(threads)


def _train(
    torch: Any,
    spec: CNNSpec,
    x: np.ndarray,
    y: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    log: Callable[[str], None] | None,
) -> Any:
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    model = build_cnn(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    steps = spec.epochs * int(np.ceil(len(x) / spec.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec.lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for epoch in range(spec.epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), spec.batch_size):
            idx = order[start : start + spec.batch_size]
            batch = x[idx]
            flip = rng.random(len(idx)) < 0.5
            batch = np.where(flip[:, None, None, None], batch[:, :, ::-1], batch)
            logits = model(_tensor(batch, mean, std))
            loss = loss_fn(logits, torch.from_numpy(y[idx]).long())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        if log:
            log(f"{spec.name}: epoch {epoch + 1}/{spec.epochs} loss {total / len(x):.3f}")
    model.eval()
    return model


def trained_classifier(
    spec: CNNSpec,
    make_data: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    mean: Sequence[float],
    std: Sequence[float],
    log: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The classifier for ``spec``: loaded from the cache, or trained on
    ``make_data() -> (x_train, y_train, x_val, y_val)`` and cached. Returns the model (eval
    mode) and its report: held-out accuracy and prediction entropy."""
    torch = require("torch", "vision", "the demo classifiers")
    from pipetune.plugins.vision.fidelity import prediction_entropy

    folder = cache_dir("vision", "models")
    weights = folder / f"{spec.name}-{spec.key()}.pt"
    report_path = weights.with_suffix(".json")
    model = build_cnn(spec)
    if weights.is_file() and report_path.is_file():
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        model.eval()
        return model, json.loads(report_path.read_text())
    x_train, y_train, x_val, y_val = make_data()
    model = train(spec, x_train, y_train, mean, std, log)
    predicted = predict(model, x_val, mean, std)
    labels = [spec.classes[i] for i in predicted]
    report = {
        "spec": asdict(spec),
        "train_examples": len(x_train),
        "validation_examples": len(x_val),
        "validation_accuracy": float((predicted == y_val).mean()) if len(y_val) else None,
        "validation_entropy": prediction_entropy(labels),
    }
    torch.save(model.state_dict(), weights)
    report_path.write_text(json.dumps(report, indent=2))
    return model, report
