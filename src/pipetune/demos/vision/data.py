"""Generated data for the vision demos: camera-sized JPEGs and security-camera clips.

Nothing can be downloaded here, so the images come from scikit-image's bundled photographs
(``skimage.data``: real photos, a few hundred pixels wide). The generators keep their
natural-image statistics and add what a 12-megapixel camera adds:

* **photos** (:func:`render_photo`): a random 4:3 crop (25-80 % of the photo's area,
  random flip) is upscaled to 4000×3000 (or 3000×4000, portrait) with bicubic
  interpolation; fine detail is added at full resolution — the high-pass band of a real
  texture photograph (gravel, grass or brick, tiled at native scale) modulated by the local
  brightness — plus luminance-dependent sensor noise; then JPEG at quality 90 with 4:2:0
  chroma subsampling like a camera. The files are 2-4 MB, like a phone's, and their
  entropy-coded data is as expensive to parse as a real photo's (flat noise or plain
  upscaling would make decode unrealistically cheap or expensive). The label is the source
  photograph (10 classes).
* **clips** (:func:`render_clip`): a static camera looking at a scene (a photograph as
  background) with per-frame Gaussian sensor noise and a slow global lighting drift; motion
  events are objects (person, cat, vehicle: soft-edged cut-outs of other photographs)
  crossing the view, sometimes pausing, covering at least ``min_event_fraction`` of the
  frames. Written with OpenCV's ``VideoWriter`` (MPEG-4 part 2) and read back with
  ``VideoCapture``. Per-frame ground truth: the object's class while at least 40 % of it is
  in view, else ``empty``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.loop.paths import cache_dir

#: The photo classes: name -> how to load it from skimage.data as RGB uint8.
PHOTO_CLASSES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "hubble",
    "immunohistochemistry",
    "motorcycle",
    "retina",
    "rocket",
)
TEXTURES = ("gravel", "grass", "brick")
VIDEO_CLASSES = ("empty", "person", "cat", "vehicle")
VIDEO_BACKGROUNDS = ("rocket", "coffee", "moon", "coins")
GENERATOR_VERSION = "v2"


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photograph as RGB uint8."""
    from skimage import data

    if name == "motorcycle":
        image = data.stereo_motorcycle()[0]
    elif name == "hubble":
        image = data.hubble_deep_field()
    else:
        image = getattr(data, name)()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float64) / max(float(image.max()), 1e-9))).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def sample_crop(image: np.ndarray, rng: np.random.Generator, portrait: bool) -> np.ndarray:
    """A random crop with a 4:3 (or 3:4) aspect covering 25-80 % of the photo's area,
    randomly flipped."""
    height, width = image.shape[:2]
    aspect = 3 / 4 if portrait else 4 / 3  # width / height
    area = rng.uniform(0.25, 0.8) * height * width
    crop_h = int(min(height, np.sqrt(area / aspect)))
    crop_w = int(min(width, crop_h * aspect))
    crop_h = int(min(crop_h, crop_w / aspect))
    y = int(rng.integers(0, height - crop_h + 1))
    x = int(rng.integers(0, width - crop_w + 1))
    crop = image[y : y + crop_h, x : x + crop_w]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def render_photo(
    crop: np.ndarray, size: tuple[int, int], rng: np.random.Generator, texture: np.ndarray
) -> np.ndarray:
    """Upscale ``crop`` to ``size`` (width, height) and add camera-scale detail and noise.
    Returns RGB uint8."""
    import cv2

    width, height = size
    big = cv2.resize(crop, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    # Fine detail: the high-pass band of a real texture photo at its native scale, tiled
    # from a random offset, stronger in bright areas (like real micro-contrast).
    tex = texture.astype(np.float32)
    high = tex - cv2.GaussianBlur(tex, (0, 0), 2.0)
    reps = (height // tex.shape[0] + 2, width // tex.shape[1] + 2)
    oy, ox = (int(v) for v in rng.integers(0, tex.shape[0], 2))
    tiled = np.tile(high, reps)[oy : oy + height, ox : ox + width]
    luma = cv2.GaussianBlur(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (0, 0), 1.0)
    gain = cv2.resize(luma, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    detail = (tiled * (0.15 + 0.35 * gain / 255.0)).astype(np.int16)
    noise = np.empty((height, width, 3), dtype=np.int16)
    cv2.randn(noise, 0, float(rng.uniform(1.5, 3.0)))  # type: ignore[call-overload]  # scalars work
    big += detail[:, :, None]
    big += noise
    return np.clip(big, 0, 255).astype(np.uint8)


def _manifest(folder: Path) -> Path:
    return folder / "manifest.json"


def _cached(folder: Path) -> tuple[list[Path], list[Any]] | None:
    """The files and labels a generated set left in ``folder``, when its manifest is there
    and every file it lists still is; ``None`` when the set must be generated."""
    manifest = _manifest(folder)
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text())
    paths = [folder / name for name in data["files"]]
    if not all(p.is_file() for p in paths):
        return None
    return paths, data["labels"]


def photo_set(
    count: int,
    size: tuple[int, int] = (4000, 3000),
    seed: int = 0,
    quality: int = 90,
    portrait_every: int = 4,
) -> tuple[list[Path], list[str]]:
    """``count`` generated camera JPEGs (cached under ``cache_dir("vision")``) and their
    labels. Classes are balanced; every ``portrait_every``-th image is portrait."""
    import cv2

    key = hashlib.sha1(
        f"{GENERATOR_VERSION}-{count}-{size}-{seed}-{quality}-{portrait_every}".encode()
    ).hexdigest()[:12]
    folder = cache_dir("vision", f"photos-{size[0]}x{size[1]}-{count}-{key}")
    cached = _cached(folder)
    if cached is not None:
        return cached[0], list(cached[1])
    manifest = _manifest(folder)
    rng = np.random.default_rng(seed)
    photos = {name: load_photo(name) for name in PHOTO_CLASSES}
    textures = [load_photo(name)[:, :, 0] for name in TEXTURES]
    files, labels = [], []
    for i in range(count):
        label = PHOTO_CLASSES[i % len(PHOTO_CLASSES)]
        portrait = portrait_every > 0 and i % portrait_every == portrait_every - 1
        dims = (size[1], size[0]) if portrait else size
        crop = sample_crop(photos[label], rng, portrait)
        image = render_photo(crop, dims, rng, textures[int(rng.integers(len(textures)))])
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise RuntimeError("OpenCV could not encode a generated JPEG")
        name = f"img{i:04d}-{label}.jpg"
        (folder / name).write_bytes(buf.tobytes())
        files.append(name)
        labels.append(label)
    manifest.write_text(json.dumps({"files": files, "labels": labels, "size": list(size)}))
    return [folder / name for name in files], labels


def photo_views(
    per_class: int, size: int, seed: int, classes: tuple[str, ...] = PHOTO_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Training views for the photo classifier: crops drawn like :func:`photo_set`'s,
    resized straight to the model input (what decode + resize of a generated photo gives,
    up to the added fine detail), with brightness/contrast jitter and a little noise."""
    import cv2

    rng = np.random.default_rng(seed)
    photos = {name: load_photo(name) for name in classes}
    xs, ys = [], []
    for index, name in enumerate(classes):
        for j in range(per_class):
            crop = sample_crop(photos[name], rng, portrait=j % 4 == 3)
            view = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
            view = view * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)
            view += rng.normal(0, 2.0, view.shape)
            xs.append(np.clip(view, 0, 255).astype(np.uint8))
            ys.append(index)
    return np.stack(xs), np.asarray(ys)


# -- video ---------------------------------------------------------------------------------

_SPRITES: dict[str, Callable[[], np.ndarray]] = {
    "person": lambda: load_photo("astronaut")[20:360, 110:400],
    "cat": lambda: load_photo("chelsea")[0:300, 60:380],
    "vehicle": lambda: load_photo("motorcycle")[60:470, 20:720],
}


def _sprite(name: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A cut-out scaled to ``height`` pixels and its soft elliptical alpha mask."""
    import cv2

    image = _SPRITES[name]()
    width = max(2, round(image.shape[1] * height / image.shape[0]))
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:height, 0:width]
    r = ((yy - height / 2) / (height / 2)) ** 2 + ((xx - width / 2) / (width / 2)) ** 2
    alpha = np.clip((1.0 - r) * 4.0, 0.0, 1.0).astype(np.float32)
    return image.astype(np.float32), alpha


def _background(name: str, size: tuple[int, int]) -> np.ndarray:
    import cv2

    photo = load_photo(name)
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def compose_frame(
    background: np.ndarray,
    gain: float,
    sprite: tuple[np.ndarray, np.ndarray] | None,
    x: int,
    y: int,
    noise: np.ndarray,
) -> tuple[np.ndarray, float]:
    """One RGB frame, and the fraction of the sprite's area in view."""
    frame = background * gain
    visible = 0.0
    if sprite is not None:
        image, alpha = sprite
        h, w = alpha.shape
        height, width = frame.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 > x0 and y1 > y0:
            a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
            region = frame[y0:y1, x0:x1]
            frame[y0:y1, x0:x1] = (
                region * (1 - a) + image[y0 - y : y1 - y, x0 - x : x1 - x] * gain * a
            )
            visible = float(alpha[y0 - y : y1 - y, x0 - x : x1 - x].sum() / alpha.sum())
    return np.clip(frame + noise, 0, 255).astype(np.uint8), visible


def _plan_events(
    rng: np.random.Generator, frames: int, width: int, min_fraction: float
) -> list[dict[str, Any]]:
    """Non-overlapping crossings (class, start frame, speed, pause) until they cover about
    ``min_fraction`` of the frames; :func:`render_clip` checks the real share."""
    events: list[dict[str, Any]] = []
    busy = np.zeros(frames, dtype=bool)
    covered = 0.0
    attempts = 0
    while covered < min_fraction * frames and attempts < 400:
        attempts += 1
        speed = float(rng.uniform(0.04, 0.08) * width)  # pixels per frame: 1-2 s crossings
        pause = int(rng.integers(5, 20)) if rng.random() < 0.4 else 0
        span = int((width * 1.6) / speed) + pause
        start = int(rng.integers(5, max(6, frames - span - 5)))
        if start + span >= frames or busy[max(0, start - 15) : start + span + 15].any():
            continue
        busy[start : start + span] = True
        events.append(
            {
                "label": str(rng.choice(VIDEO_CLASSES[1:])),
                "start": start,
                "speed": speed,
                "pause": pause,
                "direction": 1 if rng.random() < 0.5 else -1,
            }
        )
        covered += width * 1.1 / speed + pause  # frames with the object mostly in view
    return sorted(events, key=lambda e: e["start"])


def render_clip(
    path: Path,
    frames: int,
    size: tuple[int, int],
    seed: int,
    fps: float = 15.0,
    min_event_fraction: float = 0.10,
    noise_sigma: float = 3.0,
) -> list[str]:
    """Write a security-camera clip to ``path``; return per-frame ground-truth labels."""
    import cv2

    rng = np.random.default_rng(seed)
    width, height = size
    background = _background(VIDEO_BACKGROUNDS[seed % len(VIDEO_BACKGROUNDS)], size)
    events = _plan_events(rng, frames, width, min_event_fraction)
    for _ in range(20):  # objects partly out of view count as empty: check the real share
        if _event_share(events, frames, size) >= min_event_fraction:
            break
        events = _plan_events(rng, frames, width, min_event_fraction * 1.2)
    sprite_h = int(height * 0.45)
    sprites = {name: _sprite(name, sprite_h) for name in VIDEO_CLASSES[1:]}
    phase, drift = rng.uniform(0, 2 * np.pi), rng.uniform(-0.06, 0.06)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]  # not in cv2's stubs
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise RuntimeError("OpenCV's VideoWriter cannot write MPEG-4 (mp4v) here")
    labels: list[str] = []
    noise = np.empty((height, width, 3), dtype=np.float32)
    try:
        for t in range(frames):
            sprite, x, y, label = _placement(events, sprites, t, size, sprite_h)
            gain = 1.0 + 0.06 * np.sin(2 * np.pi * t / max(frames, 1) + phase) + drift * t / frames
            cv2.randn(noise, 0, noise_sigma)  # type: ignore[call-overload]  # scalars work
            frame, visible = compose_frame(background, gain, sprite, x, y, noise)
            labels.append(label if visible >= 0.4 else "empty")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return labels


def _placement(
    events: list[dict[str, Any]],
    sprites: dict[str, tuple[np.ndarray, np.ndarray]],
    t: int,
    size: tuple[int, int],
    sprite_h: int,
) -> tuple[Any, int, int, str]:
    """Which object is where at frame ``t``: (sprite, x, y, label), or no sprite."""
    width, height = size
    for event in events:
        offset = t - event["start"]
        w = sprites[event["label"]][1].shape[1]
        travel = width + w
        moving = offset * event["speed"]
        half = travel / 2
        if event["pause"] and moving > half:
            moving = max(half, moving - event["pause"] * event["speed"])
        if offset >= 0 and moving <= travel:
            pos = int(moving) - w
            x = pos if event["direction"] > 0 else width - pos - w
            y = height - sprite_h - int(height * 0.08)
            return sprites[event["label"]], x, y, event["label"]
    return None, 0, 0, "empty"


def _event_share(events: list[dict[str, Any]], frames: int, size: tuple[int, int]) -> float:
    """Share of frames whose ground truth is an object (>= 40 % of it in view)."""
    height = size[1]
    sprite_h = int(height * 0.45)
    sprites = {name: _sprite(name, sprite_h) for name in VIDEO_CLASSES[1:]}
    count = 0
    for t in range(frames):
        sprite, x, _, _ = _placement(events, sprites, t, size, sprite_h)
        if sprite is not None:
            w = sprite[1].shape[1]
            inside = max(0, min(x + w, size[0]) - max(x, 0)) / w
            count += inside >= 0.4
    return count / frames


def clip_set(
    count: int, frames: int, size: tuple[int, int] = (640, 360), seed: int = 100, fps: float = 15.0
) -> tuple[list[Path], list[list[str]]]:
    """``count`` generated clips (cached) and their per-frame labels."""
    key = hashlib.sha1(f"{GENERATOR_VERSION}-{count}-{frames}-{size}-{seed}-{fps}".encode())
    folder = cache_dir("vision", f"clips-{count}x{frames}-{key.hexdigest()[:12]}")
    cached = _cached(folder)
    if cached is not None:
        return cached[0], [list(v) for v in cached[1]]
    manifest = _manifest(folder)
    files, labels = [], []
    for i in range(count):
        name = f"clip{i:02d}.mp4"
        labels.append(render_clip(folder / name, frames, size, seed + i, fps))
        files.append(name)
    manifest.write_text(json.dumps({"files": files, "labels": labels}))
    return [folder / name for name in files], labels


def video_training_frames(
    count: int, size: tuple[int, int], model_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training frames for the camera classifier, drawn like :func:`render_clip`'s (same
    scenes, objects, noise and drift; JPEG round trip for compression artefacts), resized
    to the model input. Objects are either well in view or absent, so labels are clear."""
    import cv2

    rng = np.random.default_rng(seed)
    width, height = size
    backgrounds = [_background(name, size) for name in VIDEO_BACKGROUNDS]
    sprite_h = int(height * 0.45)
    sprites = {name: _sprite(name, sprite_h) for name in VIDEO_CLASSES[1:]}
    noise = np.empty((height, width, 3), dtype=np.float32)
    xs, ys = [], []
    for i in range(count):
        label_index = i % len(VIDEO_CLASSES)
        label = VIDEO_CLASSES[label_index]
        gain = float(rng.uniform(0.88, 1.12))
        sprite, x, y = None, 0, height - sprite_h - int(height * 0.08)
        if label != "empty":
            sprite = sprites[label]
            w = sprite[1].shape[1]
            # from 55 % in view at either edge to fully inside
            x = int(rng.uniform(-0.45 * w, width - 0.55 * w))
        cv2.randn(noise, 0, 3.0)  # type: ignore[call-overload]  # scalars work
        frame: Any
        frame, _ = compose_frame(
            backgrounds[int(rng.integers(len(backgrounds)))], gain, sprite, x, y, noise
        )
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 75])
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else frame
        xs.append(cv2.resize(frame, (model_size, model_size), interpolation=cv2.INTER_AREA))
        ys.append(label_index)
    return np.stack(xs), np.asarray(ys)


def frame_files(
    clips: list[Path], labels: list[list[str]], quality: int = 90
) -> tuple[list[list[Path]], list[list[str]]]:
    """Each clip's frames as JPEG files (``frame_00000.jpg``...; cached beside the clip),
    as ``ffmpeg -i clip.mp4 frame_%05d.jpg`` would extract them, with the clip's per-frame
    labels: the input of a pipeline fed one frame per item."""
    import cv2

    files: list[list[Path]] = []
    for clip in clips:
        folder = clip.with_suffix("")
        folder = folder.parent / f"{folder.name}-frames-q{quality}"
        manifest = _manifest(folder)
        if manifest.is_file():
            names = json.loads(manifest.read_text())["files"]
            if all((folder / n).is_file() for n in names):
                files.append([folder / n for n in names])
                continue
        folder.mkdir(parents=True, exist_ok=True)
        capture = cv2.VideoCapture(str(clip))
        names = []
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                name = f"frame_{len(names):05d}.jpg"
                cv2.imwrite(str(folder / name), frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                names.append(name)
        finally:
            capture.release()
        manifest.write_text(json.dumps({"files": names}))
        files.append([folder / n for n in names])
    return files, [
        list(clip_labels[: len(f)]) for clip_labels, f in zip(labels, files, strict=True)
    ]
