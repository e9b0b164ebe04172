"""Face detectors behind one small protocol: an RGB image in, boxes with scores out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facefit.errors import UsageError
from facefit.io.assets import MMOD_DETECTOR, verified


@dataclass(frozen=True)
class Detection:
    """A face box in image pixels, ``x1``/``y1`` exclusive, with the detector's confidence."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    source: str  # which detector (and pass) found it, e.g. "hog", "hog-up2", "hog-pad", "mmod"

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def shifted(self, dx: float, dy: float, scale: float = 1.0, source: str | None = None) -> Detection:
        return Detection((self.x0 + dx) * scale, (self.y0 + dy) * scale, (self.x1 + dx) * scale,
                         (self.y1 + dy) * scale, self.score, source or self.source)


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in an RGB uint8 image, in image coordinates."""
        ...


def _resize_for_detection(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink very large images before detection; returns (image, factor back to the original)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image, 1.0
    import cv2

    f = max_side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return small, 1.0 / f


class HogDetector:
    """dlib's HOG + linear SVM frontal face detector.

    Runs with ``upsample`` (1 finds faces down to about 40 px) and, when nothing
    is found on an image no larger than ``retry_max_side``, once more with
    ``retry_upsample`` for small faces. Images larger than ``max_side`` are
    detected on a shrunken copy.
    """

    name = "hog"

    def __init__(self, upsample: int = 1, retry_upsample: int | None = 2, retry_max_side: int = 1000,
                 max_side: int = 2000, threshold: float = 0.0) -> None:
        import dlib

        if upsample < 0 or (retry_upsample is not None and retry_upsample < 0):
            raise UsageError("upsample must be >= 0")
        self.upsample = upsample
        self.retry_upsample = retry_upsample
        self.retry_max_side = retry_max_side
        self.max_side = max_side
        self.threshold = threshold
        self._detector = dlib.get_frontal_face_detector()

    def _run(self, image: np.ndarray, upsample: int, source: str) -> list[Detection]:
        rects, scores, _ = self._detector.run(image, upsample, self.threshold)
        return [Detection(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s), source)
                for r, s in zip(rects, scores)]

    def detect(self, image: np.ndarray) -> list[Detection]:
        small, back = _resize_for_detection(image, self.max_side)
        found = self._run(small, self.upsample, "hog")
        if not found and self.retry_upsample is not None and self.retry_upsample > self.upsample \
                and max(small.shape[:2]) <= self.retry_max_side:
            found = self._run(small, self.retry_upsample, f"hog-up{self.retry_upsample}")
        return [d.shifted(0, 0, back) for d in found] if back != 1.0 else found


class MmodDetector:
    """dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``): slower, finds harder faces."""

    name = "mmod"

    def __init__(self, upsample: int = 1, max_side: int = 1000) -> None:
        import dlib

        path, _ = verified(MMOD_DETECTOR)
        self.upsample = upsample
        self.max_side = max_side
        self._detector = dlib.cnn_face_detection_model_v1(str(path))

    def detect(self, image: np.ndarray) -> list[Detection]:
        small, back = _resize_for_detection(image, self.max_side)
        found = [Detection(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1,
                           float(d.confidence), "mmod") for d in self._detector(small, self.upsample)]
        return [d.shifted(0, 0, back) for d in found] if back != 1.0 else found


class PaddedDetector:
    """Runs another detector on the image padded by a border, for faces that fill the frame.

    HOG needs some context around a face; tightly cropped photos (the face
    touching every edge) are often missed until the canvas is enlarged.
    """

    def __init__(self, inner: FaceDetector, pad_fraction: float = 0.3) -> None:
        self.inner = inner
        self.pad_fraction = pad_fraction
        self.name = f"{inner.name}-pad"

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        h, w = image.shape[:2]
        py, px = round(h * self.pad_fraction), round(w * self.pad_fraction)
        padded = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return [d.shifted(-px, -py, source=f"{d.source}-pad") for d in self.inner.detect(padded)]


class ChainDetector:
    """Tries detectors in order and returns the first non-empty result."""

    def __init__(self, detectors: list[FaceDetector]) -> None:
        self.detectors = detectors
        self.name = "+".join(d.name for d in detectors)

    def detect(self, image: np.ndarray) -> list[Detection]:
        for det in self.detectors:
            found = det.detect(image)
            if found:
                return found
        return []


DETECTORS = ("hog", "mmod", "auto")


def make_detector(name: str) -> FaceDetector:
    """``hog`` (default), ``mmod``, or ``auto``: HOG, then HOG on a padded canvas, then MMOD."""
    if name == "hog":
        return HogDetector()
    if name == "mmod":
        return MmodDetector()
    if name == "auto":
        hog = HogDetector()
        return ChainDetector([hog, PaddedDetector(hog), MmodDetector()])
    raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
