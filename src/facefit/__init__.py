"""facefit: adapt face recognition to the people it is used on.

The public API is loaded lazily so that ``import facefit`` (and the CLI's
``--help``) does not pay for torch, dlib or OpenCV.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "facefit.models",
    "list_models": "facefit.models",
    "register_model": "facefit.models",
    "save_model": "facefit.models",
    "EmbeddingContract": "facefit.models",
    "FaceEmbedder": "facefit.models",
    "detect_and_align": "facefit.align",
    "Face": "facefit.align",
    "FaceAligner": "facefit.align",
    "load_image": "facefit.io",
    "standardize_": "facefit.models.standardize",
    "pairwise_distances": "facefit.distances",
    "Gallery": "facefit.gallery.gallery",
    "Identification": "facefit.gallery.records",
    "FaceEngine": "facefit.engine",
    "verification_metrics": "facefit.eval",
    "represent": "facefit.api",
    "verify": "facefit.api",
    "identify": "facefit.api",
    "FaceEmbedding": "facefit.api",
    "Verification": "facefit.api",
    "DEFAULT_MODEL": "facefit.defaults",
}

__all__ = [
    "DEFAULT_MODEL", "EmbeddingContract", "Face", "FaceAligner", "FaceEmbedder", "FaceEmbedding", "FaceEngine",
    "Gallery", "Identification", "Verification", "__version__", "create_model", "detect_and_align", "identify",
    "list_models", "load_image", "pairwise_distances", "register_model", "represent", "save_model",
    "standardize_", "verification_metrics", "verify",
]

if TYPE_CHECKING:
    from facefit.align import Face, FaceAligner, detect_and_align
    from facefit.api import FaceEmbedding, Verification, identify, represent, verify
    from facefit.defaults import DEFAULT_MODEL
    from facefit.distances import pairwise_distances
    from facefit.engine import FaceEngine
    from facefit.eval import verification_metrics
    from facefit.gallery.gallery import Gallery
    from facefit.gallery.records import Identification
    from facefit.io import load_image
    from facefit.models import EmbeddingContract, FaceEmbedder, create_model, list_models, register_model, save_model
    from facefit.models.standardize import standardize_


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'facefit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
