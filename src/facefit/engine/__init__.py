"""The one path from photos to embeddings: ``FaceEngine`` (in memory, files) and ``embed_images`` (cached)."""

from facefit.engine.cached import EmbeddedImages, EmbedOptions, embed_images
from facefit.engine.engine import EmbeddedFaces, FaceEngine

__all__ = ["EmbedOptions", "EmbeddedFaces", "EmbeddedImages", "FaceEngine", "embed_images"]
