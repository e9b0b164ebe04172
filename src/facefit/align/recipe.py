"""Alignment recipes as data: what an aligned chip is, independent of how it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AlignRecipe:
    """How a face is cut out of a photo before a model sees it.

    ``method="dlib-chip"`` is dlib's ``get_face_chip(img, shape5, size, padding)``:
    a similarity transform from the 5 landmarks of ``shape_predictor_5`` to dlib's
    mean face, sampled bilinearly with dlib's own pyramid for large faces.
    """

    method: str = "dlib-chip"
    size: int = 150
    padding: float = 0.25
    landmarks: str = "dlib-5pt"
    version: int = 1

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        return f"{self.method}/{self.landmarks}/{self.size}px/pad{self.padding:g}/v{self.version}"


DLIB_CHIP_150 = AlignRecipe()
