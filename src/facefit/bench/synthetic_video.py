"""A synthetic camera video made of real face photos: faces pasted on a background, drifting slowly.

Used by ``facefit bench stream`` and the stream tests. Each face keeps to its
own vertical lane (so faces never overlap), sways on a smooth path, and may
enter or leave part-way; the true face box of every frame is returned, so
tracking can be scored. The video is written wherever the caller says (a
temporary folder): it is made from real photos and must not be kept.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.errors import ImageError, UsageError

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Actor:
    """One face in the video: who, from which photo, and when it is on screen."""

    name: str
    photo: Path
    enter: int = 0  # first frame on screen
    leave: int | None = None  # first frame off screen again (None: stays to the end)

    def visible(self, frame: int) -> bool:
        return frame >= self.enter and (self.leave is None or frame < self.leave)


@dataclass
class SyntheticVideo:
    path: Path
    frames: int
    width: int
    height: int
    fps: float
    truth: list[list[tuple[str, Box]]]  # per frame: (name, true face box) of each visible face


@dataclass
class _Sprite:
    rgb: np.ndarray  # (h, w, 3) float32
    alpha: np.ndarray  # (h, w, 1) float32 in [0, 1]
    face: Box  # the face box in sprite pixels


def _sprite(photo: Path, face_px: float) -> _Sprite:
    """The head in a photo, scaled so the detected face is ``face_px`` wide, with a soft oval edge."""
    import cv2

    from facefit.align.aligner import detect_and_align
    from facefit.io.images import load_image

    image = load_image(photo)
    faces = detect_and_align(image, faces="largest")
    if not faces:
        raise ImageError(photo, "no face found in this photo to put in the video")
    x0, y0, x1, y1 = faces[0].box
    w = x1 - x0
    # Head and some surroundings: HOG needs context around the face to fire.
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2 + 0.1 * w, 0.85 * w, 1.05 * w
    left, top = int(round(cx - hw)), int(round(cy - hh))
    right, bottom = int(round(cx + hw)), int(round(cy + hh))
    pad = max(0, -left, -top, right - image.shape[1], bottom - image.shape[0])
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    crop = padded[top + pad:bottom + pad, left + pad:right + pad]
    s = face_px / w
    size = (max(8, round(crop.shape[1] * s)), max(8, round(crop.shape[0] * s)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    alpha = np.zeros(crop.shape[:2], np.float32)
    cv2.ellipse(alpha, (size[0] // 2, size[1] // 2), (int(size[0] * 0.46), int(size[1] * 0.46)), 0, 0, 360, 1.0,
                cv2.FILLED)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.04 * size[0]))[..., None]
    face = ((x0 - left) * s, (y0 - top) * s, (x1 - left) * s, (y1 - top) * s)
    return _Sprite(crop.astype(np.float32), alpha, face)


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible wall: a soft gradient with large blotches, RGB uint8."""
    import cv2

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 70 + 80 * (xx / width) * 0.6 + 50 * (yy / height) * 0.4
    blotches = cv2.resize(rng.normal(0, 18, (6, 8, 3)).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)
    tint = np.array([1.0, 0.95, 0.85], np.float32)
    return np.clip(base[..., None] * tint + blotches, 0, 255).astype(np.uint8)


def _paste(frame: np.ndarray, sprite: _Sprite, x: int, y: int) -> None:
    h, w = sprite.alpha.shape[:2]
    fx0, fy0 = max(0, x), max(0, y)
    fx1, fy1 = min(frame.shape[1], x + w), min(frame.shape[0], y + h)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    sx0, sy0 = fx0 - x, fy0 - y
    a = sprite.alpha[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0]
    src = sprite.rgb[sy0:sy0 + fy1 - fy0, sx0:sx0 + fx1 - fx0]
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = (a * src + (1 - a) * region).astype(np.uint8)


def build_video(path: str | os.PathLike, actors: list[Actor], *, frames: int = 75,
                size: tuple[int, int] = (640, 480), fps: float = 25.0, face_px: float = 100.0,
                amplitude_px: float = 40.0, period_s: float = 4.0, noise: int = 3, seed: int = 0) -> SyntheticVideo:
    """Write the video (codec from the suffix: .avi MJPG, .mp4 mp4v) and return it with its true face boxes.

    Faces are about ``face_px`` wide (+-10%) and sway by up to ``amplitude_px``
    (less where their lane is narrow) once every ``period_s`` seconds, i.e. at
    most ``2 pi amplitude / period`` px/s; ``noise`` adds camera grain.
    """
    import cv2

    from facefit.stream.video_out import VideoOut

    if not actors:
        raise UsageError("a synthetic video needs at least one face")
    if frames < 1:
        raise UsageError("a synthetic video needs at least one frame")
    width, height = size
    rng = np.random.default_rng(seed)
    sprites = [_sprite(a.photo, face_px * rng.uniform(0.9, 1.1)) for a in actors]
    lane_w = width / len(actors)
    paths = []
    for k, sp in enumerate(sprites):
        h, w = sp.alpha.shape[:2]
        ax = min(amplitude_px, max(0.0, (lane_w - w) / 2 - 2))
        ay = min(amplitude_px, max(0.0, (height - h) / 2 - 2))
        paths.append((lane_w * (k + 0.5), height / 2, ax, ay, rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)))
    background = _background(width, height, rng)
    truth: list[list[tuple[str, Box]]] = []
    with VideoOut(path, fps, (width, height)) as out:
        for i in range(frames):
            frame = background.copy()
            seen = []
            t = i / fps
            for actor, sp, (cx, cy, ax, ay, px, py) in zip(actors, sprites, paths):
                if not actor.visible(i):
                    continue
                h, w = sp.alpha.shape[:2]
                x = int(round(cx + ax * math.sin(2 * math.pi * t / period_s + px) - w / 2))
                y = int(round(cy + ay * math.sin(2 * math.pi * t / (1.3 * period_s) + py) - h / 2))
                _paste(frame, sp, x, y)
                f = sp.face
                seen.append((actor.name, (f[0] + x, f[1] + y, f[2] + x, f[3] + y)))
            if noise:
                grain = rng.integers(-noise, noise + 1, frame.shape, dtype=np.int16)
                frame = np.clip(frame.astype(np.int16) + grain, 0, 255).astype(np.uint8)
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            truth.append(seen)
    return SyntheticVideo(Path(path), frames, width, height, fps, truth)
