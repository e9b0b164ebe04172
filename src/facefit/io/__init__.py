"""Image loading, input discovery, safe output writing and asset lookup."""

from facefit.io.images import load_image

__all__ = ["load_image"]
