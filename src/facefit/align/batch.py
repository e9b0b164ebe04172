"""Aligning many image files, in parallel worker processes, without losing any failure."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, Face, FaceAligner
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
    _WORKER = FaceAligner(config)


def _check_chip(path: Path, size: int) -> AlignResult:
    """Take a file as an already aligned chip, checking only its size."""
    from facefit.io.images import load_image

    try:
        image = load_image(path)
        h, w = image.shape[:2]
        if (h, w) != (size, size):
            raise ImageError(path, f"expected an aligned {size}x{size} chip, got {w}x{h}; "
                                   f"drop --aligned to detect and align faces")
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
            yield _check_chip(p, config.recipe.size)
        return
    if workers == 1 or len(paths) < 8:
        aligner = FaceAligner(config)
        for p in paths:
            yield _align_one(p, aligner)
        return
    ctx = mp.get_context("spawn")
    chunk = max(1, min(16, len(paths) // (workers * 8)))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.map(_align_one, paths, chunksize=chunk)
