"""Aligning many image files, in parallel worker processes, without losing any failure."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, Face, FaceAligner
from facefit.align.detectors import Detection
from facefit.align.recipe import AlignRecipe
from facefit.errors import ImageError, NoFaceError


@dataclass
class AlignResult:
    """The outcome for one file: its faces, or the error that stopped it."""

    path: Path
    faces: list[Face]
    error: ImageError | None = None
    image_shape: tuple[int, int] | None = None


_WORKER: FaceAligner | None = None


def _init_worker(config: AlignConfig) -> None:
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)  # parallelism comes from the worker processes; OpenCV's own threads would oversubscribe
    _WORKER = FaceAligner(config)


def _check_chip(path: Path, recipe: AlignRecipe) -> AlignResult:
    """Take a file as an already aligned chip of ``recipe``, checking only its size."""
    from facefit.io.images import load_image

    try:
        image = load_image(path)
        h, w = image.shape[:2]
        size = recipe.size
        if (h, w) != (size, size):
            raise ImageError(path, f"the model takes {size}x{size} chips ({recipe.label}), this is {w}x{h}: a chip "
                                   f"cut for another model? Drop --aligned to detect and align faces")
        face = Face((0.0, 0.0, float(w), float(h)), np.full((5, 2), np.nan, np.float32), image, 1.0, "aligned-input")
        return AlignResult(path, [face], image_shape=(h, w))
    except ImageError as exc:
        return AlignResult(path, [], exc)


def _align_one(path: Path, aligner: FaceAligner | None = None) -> AlignResult:
    from facefit.io.images import load_image

    aligner = aligner or _WORKER
    assert aligner is not None, "worker not initialised"
    try:
        image = load_image(path)
        faces = aligner(image)
        if not faces:
            raise NoFaceError(path, "no face found")
        return AlignResult(path, faces, image_shape=image.shape[:2])
    except ImageError as exc:
        return AlignResult(path, [], exc)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def align_files(paths: Sequence[Path], config: AlignConfig = AlignConfig(), *, workers: int | None = None,
                aligned_input: bool = False) -> Iterator[AlignResult]:
    """Yield one AlignResult per path, in input order.

    Detection runs in ``workers`` processes (spawned, so torch state in the
    parent is never forked); with one worker or few files it runs in-process.
    With ``aligned_input`` the files are taken as ready chips and only checked.
    """
    workers = default_workers() if workers is None else max(1, workers)
    if aligned_input:
        for p in paths:
            yield _check_chip(p, config.recipe)
        return
    yield from _map_aligned(_align_one, paths, config, workers, min_parallel=8)


def _map_aligned(fn: Callable, items: Sequence, config: AlignConfig, workers: int, min_parallel: int) -> Iterator:
    """``fn(item, aligner)`` over items in order: in-process for little work, else in spawned workers.

    Spawned (not forked) so torch's thread pools in the parent are never copied into a child.
    """
    if workers == 1 or len(items) < min_parallel:
        aligner = FaceAligner(config)
        for item in items:
            yield fn(item, aligner)
        return
    ctx = mp.get_context("spawn")
    chunk = max(1, min(16, len(items) // (workers * 8)))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.map(fn, items, chunksize=chunk)


@dataclass(frozen=True)
class CutTask:
    """Work for one image: detect (unless the face is known), then cut chips for some recipes.

    With ``detect=False`` the face is given by ``box`` and, when known (e.g. cached),
    ``landmarks`` (in the aligner's landmark source, as ``Face.landmarks``); without
    landmarks they are found on the box (sp5, or YuNet around the box with a fixed
    layout as the last resort): this is how a fallback box for an image with no
    detection becomes a chip.
    """

    path: Path
    detect: bool
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    recipes: tuple[AlignRecipe, ...] = ()
    source: str = "box"  # the detector that found ``box`` (landmarks of another family are found on it)


@dataclass
class CutResult:
    path: Path
    status: str = "error"  # "face", "none" (no face detected) or "error"
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    score: float = 0.0
    detector: str = ""
    n_faces: int = 0
    size: tuple[int, int] = (0, 0)
    chips: dict[AlignRecipe, np.ndarray] | None = None
    error: ImageError | None = None


def _cut_one(task: CutTask, aligner: FaceAligner | None = None) -> CutResult:
    from facefit.align.aligner import select_faces
    from facefit.io.images import load_image

    aligner = aligner or _WORKER
    assert aligner is not None, "worker not initialised"
    res = CutResult(task.path)
    try:
        image = load_image(task.path)
    except ImageError as exc:
        res.error = exc
        return res
    res.size = image.shape[:2]
    box, landmarks = task.box, task.landmarks
    if task.detect:
        found = aligner.detector.detect(image)
        res.n_faces = len(found)
        picked = select_faces(found, aligner.config.faces, image.shape)
        if not picked:
            res.status = "none"
            return res
        d = picked[0]
        box, res.score, res.detector = d.box, d.score, d.source
        landmarks = aligner.landmarks_for(image, d)
    if box is None:
        raise ValueError(f"{task.path}: a task without detection needs a box")
    if landmarks is None:
        landmarks = aligner.landmarks_for(image, Detection(*(float(v) for v in box), 0.0, "box"))
    res.status, res.box, res.landmarks = "face", tuple(float(v) for v in box), np.asarray(landmarks, np.float32)
    source = res.detector if task.detect else task.source
    res.chips = {r: aligner.cut(image, box, landmarks, r, source=source) for r in task.recipes}
    return res


def run_cut_tasks(tasks: Sequence[CutTask], config: AlignConfig, *, workers: int | None = None) -> Iterator[CutResult]:
    """Yield one CutResult per task, in order; detection runs in ``workers`` spawned processes."""
    workers = default_workers() if workers is None else max(1, workers)
    yield from _map_aligned(_cut_one, tasks, config, workers, min_parallel=16)
