"""Alignment recipes as data: what an aligned chip is, independent of how it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AlignRecipe:
    """How a face is cut out of a photo before a model sees it.

    ``method="dlib-chip"`` is dlib's ``get_face_chip(img, shape5, size, padding)``:
    a similarity transform from the 5 landmarks of ``shape_predictor_5`` to dlib's
    mean face, sampled bilinearly with dlib's own pyramid for large faces.

    ``method="arcface-5pt"`` (``landmarks="dlib-68pt"``) is insightface's crop: eye
    centres, nose tip and mouth corners from dlib's 68-point predictor, moved onto
    insightface's 112x112 template (scaled to ``size``) by a least-squares
    similarity, sampled bilinearly (``padding`` is unused).
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
ARCFACE_TEMPLATE_112 = AlignRecipe(method="arcface-5pt", size=112, padding=0.0, landmarks="dlib-68pt")
