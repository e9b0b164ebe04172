"""The engine: a model with the way its faces are found, from photos to embeddings.

Every path from a photo to an embedding goes through a ``FaceEngine``: one photo in memory
(``find``, ``represent``: the Python API, enrolment, the REST API, video frames), many files
without a cache (``embed_files``: embed, compare, identify, the demo), and many files through
the detection and embedding cache (``engine.cached.embed_images``: eval, eval-1n, ensembles).
Faces are always found with ``AlignConfig.for_model``, so a model gets its own crops (several
for an ensemble), and embedded in batches with ``model.embed_views``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, Face, FaceAligner, FacePolicy
from facefit.align.batch import align_files
from facefit.engine.batcher import ViewBatcher
from facefit.errors import UsageError
from facefit.models.base import FaceEmbedder


@dataclass
class EmbeddedFaces:
    """One row per face found; failures per file that yielded no face."""

    paths: list[str] = field(default_factory=list)
    face_index: list[int] = field(default_factory=list)  # index of the face within its image
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    detectors: list[str] = field(default_factory=list)
    chips: list[np.ndarray] | None = None  # kept only when asked for
    embeddings: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    failures: list[tuple[str, str]] = field(default_factory=list)
    n_images: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> list[str]:
        """Short names: the file name, with ``#k`` when an image gave several faces."""
        counts: dict[str, int] = {}
        for p in self.paths:
            counts[p] = counts.get(p, 0) + 1
        return [Path(p).name + (f"#{i}" if counts[p] > 1 else "") for p, i in zip(self.paths, self.face_index)]


_POOLS: dict[AlignConfig, queue.SimpleQueue[FaceAligner]] = {}
_POOLS_LOCK = threading.Lock()
MAX_IDLE = 4  # idle aligners kept per setup: each may hold ~115 MB of dlib scratch after a large photo


def _pool(config: AlignConfig) -> queue.SimpleQueue[FaceAligner]:
    with _POOLS_LOCK:
        return _POOLS.setdefault(config, queue.SimpleQueue())


SETTLE_FACES = 32  # real faces ``auto`` precision is measured on (precision.MEASURE_BATCH: all distinct)
SETTLE_TRIES = 64  # photos tried to find them


def settle_precision(models: Sequence[FaceEmbedder], files: Sequence[Path], config: AlignConfig) -> None:
    """Measure ``auto`` precision of ``models`` now, in this process alone, on faces of the first photos
    (found once for all of them: ``config`` cuts every crop they need).

    Left to the first batch, the measurement would run while alignment workers keep every core busy
    (and, in evaluation, with torch cut to the cores they leave), which hides bf16's gain: a machine's
    choice is cached, so a measurement skewed once stays wrong.
    """
    from facefit.io.images import load_image

    units = [u for m in models for u in (getattr(m, "members", None) or [m])]
    if all(m.known_precision() is not None for m in units):
        return
    faces: list[Face] = []
    with _borrow(config) as aligner:
        for path in list(files)[:SETTLE_TRIES]:
            try:
                found = aligner(load_image(path), "largest")
            except Exception:  # a bad photo is reported by the run itself, not here
                continue
            faces += found[:1]
            if len(faces) >= SETTLE_FACES:
                break
    if not faces:
        return  # measured at the first batch instead
    for m in units:
        if m.known_precision() is None:
            m.resolve_precision(np.stack([f.chip_for(m.contract.align) for f in faces]))


@contextmanager
def _borrow(config: AlignConfig) -> Iterator[FaceAligner]:
    pool = _pool(config)
    try:
        aligner = pool.get_nowait()
    except queue.Empty:
        aligner = FaceAligner(config)
    try:
        yield aligner
    finally:
        if pool.qsize() < MAX_IDLE:
            pool.put(aligner)


class FaceEngine:
    """``model`` with its face finding: detector (None: the model's own), face policy, workers, batch size.

    Cheap to make and thread-safe: each thread that finds faces borrows an aligner of its own from
    a process-wide pool per alignment setup (aligners load their landmark models once; dlib's
    detectors are not re-entrant and keep scratch buffers sized to the last image).
    """

    def __init__(self, model: FaceEmbedder, *, detector: str | None = None, faces: FacePolicy | str = FacePolicy.all,
                 workers: int | None = None, batch_size: int = 64) -> None:
        self.model = model
        self.config = AlignConfig.for_model(model, detector=detector, faces=FacePolicy(faces))
        self.workers, self.batch_size = workers, batch_size

    @contextmanager
    def aligner(self) -> Iterator[FaceAligner]:
        """An aligner for this thread's use while the block runs."""
        with _borrow(self.config) as aligner:
            yield aligner

    def find(self, image: np.ndarray, faces: FacePolicy | str | None = None) -> list[Face]:
        """The faces of an RGB image under ``faces`` (default: the engine's policy), aligned for the model."""
        with self.aligner() as aligner:
            return aligner(image, faces)

    def align_box(self, image: np.ndarray, box: tuple[float, float, float, float]) -> Face:
        """The face inside a known box (a tracked face in a video frame), aligned for the model."""
        with self.aligner() as aligner:
            return aligner.align_box(image, box)

    def embed(self, faces: Sequence[Face]) -> np.ndarray:
        """Embeddings of aligned faces, in batches."""
        if not faces:
            return np.empty((0, self.model.embedding_dim), np.float32)
        return self.model.embed_faces(list(faces), batch_size=self.batch_size)

    def represent(self, image: np.ndarray, faces: FacePolicy | str | None = None) -> list[tuple[Face, np.ndarray]]:
        """Each face of an RGB image with its embedding."""
        found = self.find(image, faces)
        return list(zip(found, self.embed(found)))

    def embed_files(self, files: Sequence[Path], *, aligned: bool = False, keep_chips: bool = False,
                    on_image: Callable[[], None] | None = None) -> EmbeddedFaces:
        """Detect, align and embed the faces of ``files`` (aligning in worker processes); never stops on a
        bad file: each becomes a failure with its reason. ``aligned``: the files are the model's chips."""
        model = self.model
        if isinstance(files, str | Path):
            raise TypeError(f"embed_files takes a list of paths, not one path ({files!r}): pass [{files!r}]")
        if aligned and len(model.recipes) > 1:
            raise UsageError(f"{model.contract.name or 'this ensemble'} needs {len(model.recipes)} kinds of chips "
                             f"of each face; already aligned chips fit one model only")
        if not aligned:
            settle_precision([model], files, self.config)
        result = EmbeddedFaces(chips=[] if keep_chips else None)
        parts: list[np.ndarray] = []
        batcher: ViewBatcher[int] = ViewBatcher(model, lambda _k, emb, flipped: parts.append(emb),
                                                batch_size=self.batch_size)
        for res in align_files(list(files), self.config, workers=self.workers, aligned_input=aligned):
            result.n_images += 1
            if res.error is not None:
                result.failures.append((str(res.path), res.error.reason))
            for k, face in enumerate(res.faces):
                result.paths.append(str(res.path))
                result.face_index.append(k)
                result.boxes.append(face.box)
                result.landmarks.append(face.landmarks)
                result.scores.append(face.score)
                result.detectors.append(face.detector)
                batcher.add(len(result.paths), {r: face.chip_for(r) for r in model.recipes})
                if result.chips is not None:
                    result.chips.append(face.chip)
            if on_image is not None:
                on_image()
        batcher.flush()
        dim = model.embedding_dim
        result.embeddings = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
        return result
