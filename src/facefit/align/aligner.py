"""Detect faces, find 5 landmarks, and cut the aligned chip a model expects."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from facefit.align.detectors import Detection, FaceDetector, YuNetDetector, layout_points, make_detector
from facefit.align.recipe import DLIB_CHIP_150, KNOWN_RECIPES, AlignRecipe
from facefit.errors import UsageError
from facefit.io.assets import SHAPE_PREDICTOR_5, SHAPE_PREDICTOR_68, verified

Box = tuple[float, float, float, float]

# dlib's shape predictors were trained on HOG-style boxes; YuNet's reach higher up the forehead and are
# narrower. A YuNet box becomes the box sp5 expects by moving its edges by these fractions of its width
# (x0, x1) and height (y0, y1). Measured: the median over 2,221 faces found by both detectors (nearest the
# centre, IoU >= 0.3) on 600 LFW and 600 kfamily/train photos, each also mirrored. Against sp5 on the HOG box,
# sp5's points move 0.7-0.8% of the eye span with it instead of 1.3-1.7% on the raw YuNet box, and dlib's
# ResNet descriptor of the chip 0.048-0.050 instead of 0.062-0.075 (medians on 300 + 300 other photos).
YUNET_TO_SP5_BOX = (-0.053, 0.12, 0.022, -0.013)


class FacePolicy(enum.StrEnum):
    """Which faces to keep when an image holds several."""

    all = "all"
    largest = "largest"
    center = "center"  # the face whose box centre is nearest the image centre


@dataclass
class Face:
    """One aligned face: where it was found and the chip cut for the model."""

    box: Box  # x0, y0, x1, y1 in image pixels (x1, y1 exclusive)
    # (5, 2) float32 x, y in image pixels, in the order of the recipe's landmark source: YuNet's points
    # (ArcFace order: image-left eye, image-right eye, nose tip, image-left and image-right mouth corner)
    # for "yunet-5pt" recipes; dlib's shape_predictor_5 points for "dlib-5pt" and "dlib-68pt" ones (the
    # 68-point crop runs its own predictor on the box; these are the points the detection cache keeps).
    landmarks: np.ndarray
    chip: np.ndarray  # (size, size, 3) uint8 RGB, under the aligner's recipe
    score: float
    detector: str
    # Chips of the same face under the config's other recipes (an ensemble's members), by recipe.
    views: dict[AlignRecipe, np.ndarray] = field(default_factory=dict)
    recipe: AlignRecipe | None = None  # the recipe of ``chip``

    def chip_for(self, recipe: AlignRecipe) -> np.ndarray:
        """This face's chip under ``recipe``; a recipe the aligner was not configured with is an error."""
        if recipe == self.recipe or (self.recipe is None and not self.views):
            return self.chip
        try:
            return self.views[recipe]
        except KeyError:
            raise ValueError(f"no {recipe.label} chip was cut for this face; align with "
                             f"AlignConfig.for_model(model) so every recipe the model needs is cut") from None


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
    """Everything that decides which faces come out and how they are cut.

    ``detector`` None means the recipe's own (``recipe.own_detector``: YuNet for YuNet's
    points, else HOG); it is resolved on creation, so ``config.detector`` is always a name.
    """

    detector: str | None = None
    faces: FacePolicy = FacePolicy.all
    recipe: AlignRecipe = field(default=DLIB_CHIP_150)
    # More chips of each face, e.g. for an ensemble whose members need other crops; their landmarks are
    # found on the same box (``FaceAligner.cut``).
    extra_recipes: tuple[AlignRecipe, ...] = ()

    def __post_init__(self) -> None:
        if self.detector is None:
            object.__setattr__(self, "detector", self.recipe.own_detector)
        object.__setattr__(self, "extra_recipes", tuple(r for r in dict.fromkeys(self.extra_recipes)
                                                        if r != self.recipe))

    @property
    def recipes(self) -> tuple[AlignRecipe, ...]:
        return (self.recipe, *self.extra_recipes)

    @classmethod
    def for_model(cls, model: Any, *, detector: str | None = None, faces: FacePolicy | str = FacePolicy.all
                  ) -> AlignConfig:
        """How ``model`` (anything with ``recipes``, e.g. a FaceEmbedder) wants faces found and cut.

        ``detector`` None is the model's own: its first recipe's detector.
        """
        recipes = tuple(model.recipes)
        return cls(detector=detector, faces=FacePolicy(faces), recipe=recipes[0], extra_recipes=recipes[1:])


POINT_FAMILIES = ("sp5", "yunet")


def points_family(recipe: AlignRecipe) -> str:
    """Which five points a recipe's chips are cut from: YuNet's ("yunet") or dlib's sp5 ("sp5").

    The 68-point recipe belongs to the sp5 family: its faces keep sp5's points (and the
    detection cache its key), and its crop runs the 68-point predictor on the box.
    """
    return "yunet" if recipe.landmarks == "yunet-5pt" else "sp5"


def sp5_box(det: Detection) -> Box:
    """The box to give dlib's shape predictors for a detection: YuNet's boxes mapped to HOG-like ones."""
    if not det.source.startswith("yunet"):
        return det.box
    w, h = det.x1 - det.x0, det.y1 - det.y0
    a, b, c, d = YUNET_TO_SP5_BOX
    return (det.x0 + a * w, det.y0 + b * h, det.x1 + c * w, det.y1 + d * h)


class FaceAligner:
    """A detector, a landmark source and a chip recipe, loaded once.

    Landmarks come from the recipe: YuNet's five points ("yunet-5pt": the detection's own
    when YuNet found the face, else YuNet run around the box) or dlib's shape_predictor_5
    on the box ("dlib-5pt", and the "dlib-68pt" opt-in, whose crop runs the 68-point
    predictor on the box). Model files load on first use.
    """

    def __init__(self, config: AlignConfig = AlignConfig(), detector: FaceDetector | None = None) -> None:
        _check_recipe(config.recipe)
        self.config = config
        self.detector = detector or make_detector(config.detector)
        self._predictor: Any = None
        self._predictor68: Any = None
        self._yunet: YuNetDetector | None = None

    @property
    def family(self) -> str:
        """The landmark family of this aligner's faces and of the landmarks ``cut`` takes."""
        return points_family(self.config.recipe)

    # ------------------------------------------------------------------ landmarks

    def _sp5(self, image: np.ndarray, box: Box):  # a dlib.full_object_detection
        import dlib

        if self._predictor is None:
            path, _ = verified(SHAPE_PREDICTOR_5)
            self._predictor = dlib.shape_predictor(str(path))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return self._predictor(image, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))

    def _box_yunet(self) -> YuNetDetector:
        if self._yunet is None:
            self._yunet = self.detector if isinstance(self.detector, YuNetDetector) else YuNetDetector()
        return self._yunet

    def yunet_points(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, bool]:
        """YuNet's five points for a face known only by its box, and whether YuNet found them.

        YuNet runs on a crop around the box and the face best overlapping it is taken; when
        there is none, the points are placed where YuNet typically puts them in a box.
        """
        found = self._box_yunet().detect_near(image, box)
        if found is not None and found.landmarks is not None:
            return np.array(found.landmarks, np.float32), True
        return layout_points(box), False

    def landmarks_for(self, image: np.ndarray, det: Detection, family: str | None = None) -> np.ndarray:
        """The five points of a detected (or only boxed) face, in ``family`` (default: this aligner's)."""
        if (family or self.family) == "yunet":
            if det.landmarks is not None:
                return np.array(det.landmarks, np.float32)
            return self.yunet_points(image, det.box)[0]
        shape = self._sp5(image, sp5_box(det))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    # ------------------------------------------------------------------ faces

    def align_detection(self, image: np.ndarray, det: Detection) -> Face:
        """Landmarks and chip for one detection."""
        image = _as_rgb(image)
        points = self.landmarks_for(image, det)
        views = self.cut_views(image, det.box, points, source=det.source)
        return Face(tuple(float(v) for v in det.box), points, views[self.config.recipe], det.score, det.source,
                    views if self.config.extra_recipes else {}, self.config.recipe)

    def align_box(self, image: np.ndarray, box: Box, score: float = 0.0, source: str = "box") -> Face:
        """Landmarks and chip for a face at a known box (e.g. from a tracker or a fallback box)."""
        return self.align_detection(image, Detection(*(float(v) for v in box), score, source))

    def cut_views(self, image: np.ndarray, box: Box, landmarks: np.ndarray, points_of: AlignRecipe | None = None,
                  *, source: str = "box", family: str | None = None) -> dict[AlignRecipe, np.ndarray]:
        """The face's chip under every recipe of the config.

        ``landmarks`` are of ``family`` ("sp5", "yunet"), else of ``points_of``'s family, else of this
        aligner's, e.g. those stored by a gallery made with another model; a recipe of another family
        finds its own.
        """
        given = family or (points_family(points_of) if points_of is not None else self.family)
        image = _as_rgb(image)
        out = {}
        for recipe in self.config.recipes:
            if points_family(recipe) == given:
                out[recipe] = self.cut(image, box, landmarks, recipe, source=source, family=given)
            else:
                out[recipe] = self.cut(image, box, None, recipe, source=source)
        return out

    def cut(self, image: np.ndarray, box: Box, landmarks: np.ndarray | None, recipe: AlignRecipe | None = None, *,
            source: str = "box", family: str | None = None) -> np.ndarray:
        """The chip for known landmarks (e.g. from a cache), under ``recipe`` (default: the config's).

        ``landmarks`` are of ``family`` (default: this aligner's, as ``Face.landmarks``); for a
        recipe of another family, or without landmarks, its own points are found on the box.
        ``source`` names the detector that found the box (YuNet's boxes are reshaped for sp5).
        """
        recipe = recipe or self.config.recipe
        _check_recipe(recipe)
        image = _as_rgb(image)
        needed = points_family(recipe)
        if recipe.landmarks == "dlib-68pt":
            return self._template68_chip(image, box, recipe.size)
        if landmarks is None or needed != (family or self.family):
            landmarks = self.landmarks_for(image, Detection(*(float(v) for v in box), 0.0, source), needed)
        if recipe.method == "arcface-5pt":
            return _template_chip(image, landmarks, recipe.size)
        return self._dlib_chip(image, box, landmarks, recipe)

    def _dlib_chip(self, image: np.ndarray, box: Box, landmarks: np.ndarray, recipe: AlignRecipe) -> np.ndarray:
        import dlib

        x0, y0, x1, y1 = (int(round(v)) for v in box)
        points = [dlib.point(int(round(x)), int(round(y))) for x, y in np.asarray(landmarks)]
        shape = dlib.full_object_detection(dlib.rectangle(x0, y0, x1 - 1, y1 - 1), points)
        chip = dlib.get_face_chip(image, shape, size=recipe.size, padding=recipe.padding)
        return np.ascontiguousarray(chip, dtype=np.uint8)

    def _template68_chip(self, image: np.ndarray, box: Box, size: int) -> np.ndarray:
        """insightface's crop from dlib's 68 landmarks found in the box (the non-commercial opt-in)."""
        import dlib

        from facefit.align.template import five_points

        if self._predictor68 is None:
            path, _ = verified(SHAPE_PREDICTOR_68)  # loaded only when the 68-point recipe is asked for
            self._predictor68 = dlib.shape_predictor(str(path))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor68(image, dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return _template_chip(image, five_points(pts), size)

    def __call__(self, image: np.ndarray, faces: FacePolicy | str | None = None) -> list[Face]:
        """All faces in an RGB uint8 image under the multi-face policy, aligned."""
        image = _as_rgb(image)
        dets = select_faces(self.detector.detect(image), faces or self.config.faces, image.shape)
        return [self.align_detection(image, d) for d in dets]


def _template_chip(image: np.ndarray, points: np.ndarray, size: int) -> np.ndarray:
    """insightface's crop: five points (ArcFace order) moved onto the template by a similarity."""
    import cv2

    from facefit.align.template import similarity, template_for

    m = similarity(np.asarray(points, np.float64), template_for(size))
    chip = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.ascontiguousarray(chip, dtype=np.uint8)


def _check_recipe(recipe: AlignRecipe) -> None:
    if (recipe.method, recipe.landmarks) not in KNOWN_RECIPES:
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
    detector: str | None = None,
    recipe: AlignRecipe = DLIB_CHIP_150,
    model: Any = None,
) -> list[Face]:
    """Detect the faces in an image (array or file) and return them aligned.

    ``model`` (a FaceEmbedder) cuts every crop that model needs with its own detector, in place of
    ``recipe`` (dlib's 150 px chip by default): pass it, or ``recipe=model.contract.align``, so a
    model never gets another model's chips.

    ``faces`` picks ``all`` faces, the ``largest`` or the most ``center``-al one;
    ``detector`` is ``hog``, ``yunet``, ``mmod`` or ``auto`` (HOG, HOG on a padded canvas,
    YuNet, then MMOD); None (default) is the recipe's own: HOG for dlib's chip, YuNet for
    the YuNet template crop. Returns an empty list when no face is found.
    """
    if not isinstance(image, np.ndarray):
        from facefit.io.images import load_image

        image = load_image(image)
    if model is not None and not hasattr(model, "recipes"):
        raise TypeError(f"model must be a loaded model (facefit.create_model({model!r})), not {type(model).__name__}")
    config = AlignConfig.for_model(model, detector=detector, faces=FacePolicy(faces)) if model is not None else \
        AlignConfig(detector=detector, faces=FacePolicy(faces), recipe=recipe)
    return _default_aligner(config)(image)
