"""Detect faces, find 5 landmarks, and cut the aligned chip a model expects."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from facefit.align.detectors import Detection, FaceDetector, make_detector
from facefit.align.recipe import DLIB_CHIP_150, AlignRecipe
from facefit.errors import UsageError
from facefit.io.assets import SHAPE_PREDICTOR_5, SHAPE_PREDICTOR_68, verified


class FacePolicy(enum.StrEnum):
    """Which faces to keep when an image holds several."""

    all = "all"
    largest = "largest"
    center = "center"  # the face whose box centre is nearest the image centre


@dataclass
class Face:
    """One aligned face: where it was found and the chip cut for the model."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels (x1, y1 exclusive)
    landmarks: np.ndarray  # (5, 2) float32 x, y in image pixels (dlib's 5-point order)
    chip: np.ndarray  # (size, size, 3) uint8 RGB
    score: float
    detector: str


def select_faces(dets: list[Detection], policy: FacePolicy | str, image_shape: tuple[int, ...]) -> list[Detection]:
    """Apply a multi-face policy; ``all`` keeps detector order (left to right by dlib)."""
    policy = FacePolicy(policy)
    if not dets or policy is FacePolicy.all:
        return list(dets)
    if policy is FacePolicy.largest:
        return [max(dets, key=lambda d: d.area)]
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
    return [min(dets, key=lambda d: ((d.x0 + d.x1) / 2 - cx) ** 2 + ((d.y0 + d.y1) / 2 - cy) ** 2)]


@dataclass(frozen=True)
class AlignConfig:
    """Everything that decides which faces come out and how they are cut."""

    detector: str = "hog"
    faces: FacePolicy = FacePolicy.all
    recipe: AlignRecipe = field(default=DLIB_CHIP_150)


class FaceAligner:
    """A detector, dlib's 5-point shape predictor and a chip recipe, loaded once."""

    def __init__(self, config: AlignConfig = AlignConfig(), detector: FaceDetector | None = None) -> None:
        import dlib

        _check_recipe(config.recipe)
        self.config = config
        self.detector = detector or make_detector(config.detector)
        path, _ = verified(SHAPE_PREDICTOR_5)
        self._predictor = dlib.shape_predictor(str(path))
        self._predictor68 = None
        self._dlib = dlib

    def _shape(self, image: np.ndarray, box: tuple[float, float, float, float]):  # noqa: ANN202
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return self._predictor(image, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))

    def align_box(self, image: np.ndarray, box: tuple[float, float, float, float],
                  score: float = 0.0, source: str = "box") -> Face:
        """Landmarks and chip for a face at a known box (e.g. from a tracker or a central crop)."""
        shape = self._shape(image, box)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        chip = self._chip(image, shape, self.config.recipe)
        return Face(tuple(float(v) for v in box), pts, chip, score, source)

    def cut(self, image: np.ndarray, box: tuple[float, float, float, float], landmarks: np.ndarray,
            recipe: AlignRecipe | None = None) -> np.ndarray:
        """The chip for known landmarks (e.g. from a cache), under ``recipe`` (default: the config's)."""
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        points = [self._dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(landmarks)]
        shape = self._dlib.full_object_detection(self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1), points)
        return self._chip(image, shape, recipe or self.config.recipe)

    def _chip(self, image: np.ndarray, shape, recipe: AlignRecipe) -> np.ndarray:  # noqa: ANN001
        _check_recipe(recipe)
        if recipe.method == "arcface-5pt":
            return self._template_chip(image, shape.rect, recipe.size)
        chip = self._dlib.get_face_chip(image, shape, size=recipe.size, padding=recipe.padding)
        return np.ascontiguousarray(chip, dtype=np.uint8)

    def _template_chip(self, image: np.ndarray, rect, size: int) -> np.ndarray:  # noqa: ANN001
        """insightface's crop: 68 landmarks in the face box -> 5 points -> similarity onto the template."""
        import cv2

        from facefit.align.template import five_points, similarity, template_for

        if self._predictor68 is None:
            path, _ = verified(SHAPE_PREDICTOR_68)  # loaded only when a template recipe is asked for
            self._predictor68 = self._dlib.shape_predictor(str(path))
        shape = self._predictor68(image, rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        m = similarity(five_points(pts), template_for(size))
        chip = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return np.ascontiguousarray(chip, dtype=np.uint8)

    def __call__(self, image: np.ndarray, faces: FacePolicy | str | None = None) -> list[Face]:
        """All faces in an RGB uint8 image under the multi-face policy, aligned."""
        image = _as_rgb(image)
        dets = select_faces(self.detector.detect(image), faces or self.config.faces, image.shape)
        return [self.align_box(image, (d.x0, d.y0, d.x1, d.y1), d.score, d.source) for d in dets]


def _check_recipe(recipe: AlignRecipe) -> None:
    known = {("dlib-chip", "dlib-5pt"), ("arcface-5pt", "dlib-68pt")}
    if (recipe.method, recipe.landmarks) not in known:
        raise UsageError(f"unsupported alignment recipe {recipe.label}")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {arr.dtype}; load files with facefit.io.load_image")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {arr.shape}")
    return np.ascontiguousarray(arr[..., :3])


@lru_cache(maxsize=4)
def _default_aligner(config: AlignConfig) -> FaceAligner:
    return FaceAligner(config)


def detect_and_align(
    image: np.ndarray | str | os.PathLike,
    *,
    faces: FacePolicy | str = FacePolicy.all,
    detector: str = "hog",
    recipe: AlignRecipe = DLIB_CHIP_150,
) -> list[Face]:
    """Detect the faces in an image (array or file) and return them aligned.

    ``faces`` picks ``all`` faces, the ``largest`` or the most ``center``-al one;
    ``detector`` is ``hog`` (default), ``mmod`` or ``auto`` (HOG, then HOG on a
    padded canvas, then MMOD). Returns an empty list when no face is found.
    """
    if not isinstance(image, np.ndarray):
        from facefit.io.images import load_image

        image = load_image(image)
    aligner = _default_aligner(AlignConfig(detector=detector, faces=FacePolicy(faces), recipe=recipe))
    return aligner(image)
