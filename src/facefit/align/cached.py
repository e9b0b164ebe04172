"""Aligned chips for many files through the detection cache, with the no-face fallback.

Shared by evaluation and training so that both cut exactly the same chips: the
face nearest the centre (or the largest) per image, landmarks cached by image
content and detector settings, and for images without a detection the median
relative face box of the detected images in the same set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, FacePolicy, points_family
from facefit.align.batch import CutTask, run_cut_tasks
from facefit.align.recipe import AlignRecipe
from facefit.errors import FacefitError
from facefit.io.assets import sha256_file
from facefit.io.cache import CachedDetection, EvalCache
from facefit.io.progress import ProgressFactory, no_progress

DETECTION_VERSION = 1
# "auto" gained YuNet (before MMOD), so its cached detections from before differ: they get a key of their own.
AUTO_DETECTION_VERSION = 2
MIN_BOXES_FOR_MEDIAN = 10
DEFAULT_FALLBACK = (0.25, 0.25, 0.75, 0.75)

def det_key(config: AlignConfig) -> str:
    """Cache key of a detection setup: detector, face policy and the landmark source cached with the boxes.

    Independent of the chip recipe otherwise: dlib's chip and the 68-point crop share the
    sp5 key (the 68-point predictor runs on the box at cut time); YuNet-point recipes use
    "yn5". The sp5 keys are unchanged from before YuNet, so existing caches stay valid.
    """
    points = "yn5" if points_family(config.recipe) == "yunet" else "sp5"
    version = AUTO_DETECTION_VERSION if config.detector == "auto" else DETECTION_VERSION
    return f"{config.detector}|{FacePolicy(config.faces).value}|{points}|v{version}"


def hash_files(paths: Sequence[Path], progress: ProgressFactory = no_progress) -> dict[Path, str]:
    """sha256 of every file; an unreadable one is an error naming it (a set is never silently shrunk)."""
    out: dict[Path, str] = {}
    bad: list[str] = []
    with progress("hashing images", len(paths)) as bar:
        for p in paths:
            try:
                out[p] = sha256_file(p)
            except OSError as exc:
                bad.append(f"{p} ({exc.strerror or exc})")
            bar.advance()
    if bad:
        raise FacefitError(f"{len(bad)} image(s) cannot be read: {'; '.join(bad[:5])}")
    return out


def content_digest(shas: dict[Path, str], root: Path | None = None) -> str:
    """One digest for a set of images: their (relative) paths and contents."""
    def name(p: Path) -> str:
        return str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)

    return hashlib.sha256("".join(f"{name(p)}\t{shas[p]}\n" for p in sorted(shas)).encode()).hexdigest()


def fallback_relative(dets: Sequence[CachedDetection]) -> tuple[float, float, float, float]:
    rel = [(d.box[0] / d.size[1], d.box[1] / d.size[0], d.box[2] / d.size[1], d.box[3] / d.size[0])
           for d in dets if d.status == "face" and d.box is not None and d.size[0] > 0]
    if len(rel) < MIN_BOXES_FOR_MEDIAN:
        return DEFAULT_FALLBACK
    return tuple(float(v) for v in np.median(np.asarray(rel), axis=0))  # type: ignore[return-value]


def absolute_box(rel: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    h, w = size
    return (round(rel[0] * w), round(rel[1] * h), round(rel[2] * w), round(rel[3] * h))


Wanted = Callable[[str, str], tuple[AlignRecipe, ...]]


@dataclass
class ImageChips:
    """The chips of one image's face: detected (``provenance`` "det") or from the fallback box ("fb...")."""

    path: Path
    sha: str
    provenance: str
    views: dict[AlignRecipe, np.ndarray]


def _all_of(config: AlignConfig) -> Wanted:
    recipes = config.recipes
    return lambda _sha, _provenance: recipes


class CachedCuts:
    """One pass from image files to chips through the detection cache: the only such pass in facefit.

    Detection (box + landmarks, per image content and ``det_key(config)``) is read from the cache or run
    now, in the same decode as the image's chips; images without a detection get a chip from the
    fallback box (the median relative face box of the set). ``wanted(sha, provenance)`` says which
    recipes each image still needs (none: skip it, e.g. because its embeddings are cached); by default
    every recipe of ``config``. Iterate once; ``dets``, ``no_face``, ``fallback`` and ``detected_now``
    describe the set afterwards. Unreadable images are collected and raised, naming them, after the
    detection stage, so one bad file never hides the others.
    """

    def __init__(self, paths: Sequence[Path], sha: dict[Path, str], config: AlignConfig, cache: EvalCache, *,
                 wanted: Wanted | None = None, workers: int | None = None,
                 progress: ProgressFactory = no_progress) -> None:
        self.paths = list(dict.fromkeys(paths))
        self.sha, self.config, self.cache = sha, config, cache
        self.key = det_key(config)
        self.wanted = wanted or _all_of(config)
        self.workers, self.progress = workers, progress
        self.dets = cache.get_detections([sha[p] for p in self.paths], self.key)
        self.undetected = [p for p in self.paths if sha[p] not in self.dets]
        self.fallback: tuple[float, float, float, float] = DEFAULT_FALLBACK
        self.no_face: list[Path] = []

    @property
    def detected_now(self) -> int:
        return len(self.undetected)

    def provenance(self, sha: str) -> str:
        """Where an image's chip comes from: "det" or the absolute fallback box it was cut from."""
        d = self.dets[sha]
        return "det" if d.status == "face" else "fb{},{},{},{}".format(*absolute_box(self.fallback, d.size))

    def __iter__(self) -> Iterator[ImageChips]:
        yield from self._detected()
        # Over distinct contents: a photo given twice does not pull the median box towards itself.
        self.fallback = fallback_relative([self.dets[s] for s in dict.fromkeys(self.sha[p] for p in self.paths)])
        self.no_face = [p for p in self.paths if self.dets[self.sha[p]].status != "face"]
        yield from self._fallbacks()

    def _detected(self) -> Iterator[ImageChips]:
        """Stage A: detect where the cache has nothing (cutting in the same decode); cut detected faces."""
        every = self.config.recipes
        tasks = [CutTask(p, True, recipes=every) for p in self.undetected]
        for p in self.paths:
            d = self.dets.get(self.sha[p])
            if d is not None and d.status == "face" and (want := self.wanted(self.sha[p], "det")):
                tasks.append(CutTask(p, False, d.box, d.landmarks, want, source=d.detector))
        errors: list[str] = []
        fresh: list[tuple[str, CachedDetection]] = []
        with self.progress(f"aligning faces ({self.config.detector})", len(tasks)) as bar:
            for task, res in zip(tasks, run_cut_tasks(tasks, self.config, workers=self.workers)):
                s = self.sha[task.path]
                if res.error is not None:
                    errors.append(str(res.error))
                elif task.detect:
                    d = CachedDetection(res.status, res.box, res.landmarks, res.score, res.detector, res.n_faces,
                                        res.size)
                    self.dets[s] = d
                    fresh.append((s, d))
                    if len(fresh) >= 256:
                        self.cache.put_detections(self.key, fresh)
                        fresh = []
                if res.status == "face" and res.chips:
                    want = self.wanted(s, "det") if task.detect else task.recipes
                    if want:
                        yield ImageChips(task.path, s, "det", {r: res.chips[r] for r in want})
                bar.advance()
        self.cache.put_detections(self.key, fresh)
        if errors:
            raise FacefitError(f"{len(errors)} image(s) could not be decoded: {'; '.join(errors[:5])}")

    def _fallbacks(self) -> Iterator[ImageChips]:
        """Stage B: a chip from the fallback box for every image without a detection that needs one."""
        tasks = []
        for p in self.no_face:
            s = self.sha[p]
            if want := self.wanted(s, self.provenance(s)):
                tasks.append(CutTask(p, False, absolute_box(self.fallback, self.dets[s].size), None, want))
        for task, res in zip(tasks, run_cut_tasks(tasks, self.config, workers=self.workers)):
            if res.error is not None or not res.chips:
                raise FacefitError(f"{task.path}: fallback alignment failed: {res.error or 'no chip'}")
            s = self.sha[task.path]
            yield ImageChips(task.path, s, self.provenance(s), res.chips)


@dataclass
class ChipSet:
    chips: np.ndarray  # (N, S, S, 3) uint8, in the order of the paths given
    no_face: list[Path] = field(default_factory=list)
    detected_now: int = 0


def cached_chips(paths: Sequence[Path], config: AlignConfig, cache: EvalCache, *, workers: int | None = None,
                 progress: ProgressFactory = no_progress) -> ChipSet:
    """The aligned chip (``config.recipe``) of every file, one face each, through ``CachedCuts``."""
    shas = hash_files(paths, progress)
    cuts = CachedCuts(paths, shas, replace(config, extra_recipes=()), cache, workers=workers, progress=progress)
    by_path = {got.path: got.views[config.recipe] for got in cuts}
    size = config.recipe.size
    chips = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        chips[i] = by_path[p]
    return ChipSet(chips, cuts.no_face, cuts.detected_now)
