"""One-call functions: a photo in, embeddings, a verdict or names out.

Each picks the alignment from the model's own contract, so a model is never fed another
model's chips, and loads a model once per process (by name or path).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from facefit.gallery.search import Identification
    from facefit.models.base import FaceEmbedder

@dataclass
class FaceEmbedding:
    """One face of a photo: where it is and its embedding under ``contract_id``."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    embedding: np.ndarray
    contract_id: str
    score: float
    detector: str


@dataclass
class Verification:
    """Whether two photos show the same person, and how that was decided."""

    same: bool
    distance: float
    threshold: float
    threshold_source: str
    metric: str
    faces: tuple[FaceEmbedding, FaceEmbedding] = field(repr=False, default=None)  # type: ignore[assignment]


@lru_cache(maxsize=4)
def _cached_model(name: str) -> FaceEmbedder:
    from facefit.models import create_model

    return create_model(name)


def _model(model: FaceEmbedder | str | os.PathLike | None) -> FaceEmbedder:
    from facefit.defaults import default_model
    from facefit.models.base import FaceEmbedder

    if isinstance(model, FaceEmbedder):
        return model
    return _cached_model(os.fspath(model) if model is not None else default_model())


def _load(image: Any) -> np.ndarray:
    from facefit.io.images import ImageBytes, load_image

    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, bytes | bytearray):
        return load_image(ImageBytes("<bytes>", bytes(image)))
    return load_image(image)


def represent(image: Any, model: FaceEmbedder | str | None = None, faces: str = "all",
              detector: str | None = None) -> list[FaceEmbedding]:
    """Every face (``faces``: all, largest or center) of a photo with its embedding.

    ``image`` is a path, bytes or an RGB uint8 array; ``model`` a model, a registered name or a
    path (default: facefit's default model); ``detector`` None is the model's own.
    """
    from facefit.engine import FaceEngine

    net = _model(model)
    found = FaceEngine(net, detector=detector, faces=faces).represent(_load(image))
    return [FaceEmbedding(f.box, f.landmarks, e, net.contract.id, f.score, f.detector) for f, e in found]


def verify(image_a: Any, image_b: Any, model: FaceEmbedder | str | None = None,
           threshold: float | None = None, calibration: str | os.PathLike | None = None) -> Verification:
    """Whether the largest faces of two photos are the same person.

    The threshold: ``threshold``, else the one an evaluation of this model calibrated (``calibration``: its
    metrics.json), else the model's own 1:1 threshold (``facefit.models.thresholds``).
    """
    from facefit.distances import paired_distances
    from facefit.errors import NoFaceError
    from facefit.models.thresholds import choose_threshold

    net = _model(model)
    metric = net.contract.distance if net.contract.distance in ("euclidean", "cosine") else "euclidean"
    chosen = choose_threshold(net.contract, "verify", metric=metric, given=threshold, calibration=calibration)
    value = chosen.require()  # before any work: a model without one fails at once
    pair = []
    for name, image in (("image_a", image_a), ("image_b", image_b)):
        got = represent(image, net, faces="largest")
        if not got:
            shown = image if isinstance(image, str | os.PathLike) else name
            raise NoFaceError(shown, "no face found")
        pair.append(got[0])
    d = float(paired_distances(pair[0].embedding[None], pair[1].embedding[None], metric)[0])
    return Verification(d <= value, d, value, chosen.source, metric, (pair[0], pair[1]))


def identify(image: Any, gallery: Any = None, model: FaceEmbedder | str | None = None, top_k: int = 3,
             threshold: float | None = None) -> list[Identification]:
    """Who each face of a photo is, from a face database (a Gallery, a path or URL, or the default one).

    The model defaults to the one the gallery's embeddings were made with; strangers come back
    with ``name`` None.
    """
    from facefit.gallery.gallery import Gallery, gallery_model

    own = not isinstance(gallery, Gallery)
    g = Gallery.open(gallery, create=False) if own else gallery  # a misspelt path must not make a new one
    try:
        net = _model(model) if model is not None else gallery_model(g, None)
        faces = represent(image, net)
        if not faces:
            return []
        return g.identify(np.stack([f.embedding for f in faces]), net, threshold=threshold, top_k=top_k)
    finally:
        if own:
            g.close()
