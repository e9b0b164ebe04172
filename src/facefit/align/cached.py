"""Aligned chips for many files through the detection cache, with the no-face fallback.

Shared by evaluation and training so that both cut exactly the same chips: the
face nearest the centre (or the largest) per image, landmarks cached by image
content and detector settings, and for images without a detection the median
relative face box of the detected images in the same set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, FacePolicy, points_family
from facefit.align.batch import CutTask, run_cut_tasks
from facefit.errors import FacefitError
from facefit.io.cache import CachedDetection, EvalCache

DETECTION_VERSION = 1
# "auto" gained YuNet (before MMOD), so its cached detections from before differ: they get a key of their own.
AUTO_DETECTION_VERSION = 2
MIN_BOXES_FOR_MEDIAN = 10
DEFAULT_FALLBACK = (0.25, 0.25, 0.75, 0.75)

ProgressFactory = Callable[[str, int], AbstractContextManager]


class _NoBar:
    def advance(self, n: int = 1) -> None:
        pass


def no_progress(_desc: str, _total: int) -> AbstractContextManager:
    return nullcontext(_NoBar())


def det_key(config: AlignConfig) -> str:
    """Cache key of a detection setup: detector, face policy and the landmark source cached with the boxes.

    Independent of the chip recipe otherwise: dlib's chip and the 68-point crop share the
    sp5 key (the 68-point predictor runs on the box at cut time); YuNet-point recipes use
    "yn5". The sp5 keys are unchanged from before YuNet, so existing caches stay valid.
    """
    points = "yn5" if points_family(config.recipe) == "yunet" else "sp5"
    version = AUTO_DETECTION_VERSION if config.detector == "auto" else DETECTION_VERSION
    return f"{config.detector}|{FacePolicy(config.faces).value}|{points}|v{version}"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def hash_files(paths: Sequence[Path], progress: ProgressFactory = no_progress) -> dict[Path, str]:
    """sha256 of every file; an unreadable one is an error naming it (a set is never silently shrunk)."""
    out: dict[Path, str] = {}
    bad: list[str] = []
    with progress("hashing images", len(paths)) as bar:
        for p in paths:
            try:
                out[p] = sha256_of(p)
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


def detect_cached(paths: Sequence[Path], shas: dict[Path, str], config: AlignConfig, cache: EvalCache, *,
                  workers: int | None = None, progress: ProgressFactory = no_progress
                  ) -> tuple[dict[str, CachedDetection], int]:
    """Detections for every file (from the cache or computed now); returns (by sha, number computed now)."""
    key = det_key(config)
    dets = cache.get_detections([shas[p] for p in paths], key)
    todo = [p for p in dict.fromkeys(paths) if shas[p] not in dets]
    errors, fresh = [], []
    with progress("detecting faces", len(todo)) as bar:
        for p, res in zip(todo, run_cut_tasks([CutTask(p, True) for p in todo], config, workers=workers)):
            if res.error is not None:
                errors.append(str(res.error))
            else:
                d = CachedDetection(res.status, res.box, res.landmarks, res.score, res.detector, res.n_faces,
                                    res.size)
                dets[shas[p]] = d
                fresh.append((shas[p], d))
                if len(fresh) >= 256:
                    cache.put_detections(key, fresh)
                    fresh = []
            bar.advance()
    cache.put_detections(key, fresh)
    if errors:
        raise FacefitError(f"{len(errors)} image(s) could not be decoded: {'; '.join(errors[:5])}")
    return dets, len(todo)


@dataclass
class ChipSet:
    chips: np.ndarray  # (N, S, S, 3) uint8, in the order of the paths given
    no_face: list[Path] = field(default_factory=list)
    detected_now: int = 0


def cached_chips(paths: Sequence[Path], config: AlignConfig, cache: EvalCache, *, workers: int | None = None,
                 progress: ProgressFactory = no_progress) -> ChipSet:
    """The aligned chip of every file (one face each), cutting from cached landmarks."""
    shas = hash_files(paths, progress)
    dets, fresh = detect_cached(paths, shas, config, cache, workers=workers, progress=progress)
    fallback = fallback_relative(list(dets.values()))
    tasks, no_face = [], []
    for p in paths:
        d = dets[shas[p]]
        if d.status == "face":
            tasks.append(CutTask(p, False, d.box, d.landmarks, (config.recipe,)))
        else:
            no_face.append(p)
            tasks.append(CutTask(p, False, absolute_box(fallback, d.size), None, (config.recipe,)))
    size = config.recipe.size
    chips = np.empty((len(paths), size, size, 3), np.uint8)
    with progress("cutting chips", len(tasks)) as bar:
        for i, res in enumerate(run_cut_tasks(tasks, config, workers=workers)):
            if res.error is not None or not res.chips:
                raise FacefitError(f"{tasks[i].path}: alignment failed: {res.error or 'no chip'}")
            chips[i] = res.chips[config.recipe]
            bar.advance()
    return ChipSet(chips, no_face, fresh)
