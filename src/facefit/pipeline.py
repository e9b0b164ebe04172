"""Files in, embeddings out: alignment in worker processes, batched embedding in this one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facefit.align.aligner import AlignConfig, Face, FacePolicy
from facefit.align.batch import align_files
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


def embed_files(
    files: Sequence[Path],
    model: FaceEmbedder,
    *,
    faces: FacePolicy | str = FacePolicy.all,
    detector: str | None = None,
    aligned: bool = False,
    workers: int | None = None,
    batch_size: int = 64,
    keep_chips: bool = False,
    on_image: Callable[[], None] | None = None,
) -> EmbeddedFaces:
    """Detect, align and embed the faces of ``files``; never stops on a bad file.

    ``detector`` None uses the model's own; each face is cut as every recipe of the model needs.
    """
    config = AlignConfig.for_model(model, detector=detector, faces=FacePolicy(faces))
    if aligned and len(model.recipes) > 1:
        raise UsageError(f"{model.contract.name or 'this ensemble'} needs {len(model.recipes)} kinds of chips of "
                         f"each face; already aligned chips fit one model only")
    result = EmbeddedFaces(chips=[] if keep_chips else None)
    pending: list[Face] = []
    parts: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            parts.append(model.embed_faces(pending, batch_size=batch_size))
            pending.clear()

    for res in align_files(list(files), config, workers=workers, aligned_input=aligned):
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
            pending.append(face)
            if result.chips is not None:
                result.chips.append(face.chip)
        if len(pending) >= batch_size:
            flush()
        if on_image is not None:
            on_image()
    flush()
    dim = model.embedding_dim
    result.embeddings = np.concatenate(parts) if parts else np.empty((0, dim), np.float32)
    return result
