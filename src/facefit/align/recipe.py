"""Alignment recipes as data: what an aligned chip is, independent of how it is made."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AlignRecipe:
    """How a face is cut out of a photo before a model sees it.

    ``method="dlib-chip"`` is dlib's ``get_face_chip(img, shape5, size, padding)``:
    a similarity transform from the 5 landmarks of ``shape_predictor_5`` to dlib's
    mean face, sampled bilinearly with dlib's own pyramid for large faces.

    ``method="arcface-5pt"`` is insightface's crop (OpenCV's ``alignCrop`` for SFace):
    the eye centres, nose tip and mouth corners moved onto insightface's 112x112
    template (scaled to ``size``) by a least-squares similarity, sampled bilinearly
    (``padding`` is unused). Its five points come from ``landmarks``:

    - ``"yunet-5pt"`` (the default for template crops): YuNet's own five points,
      found with the box in one pass (OpenCV Zoo, Apache-2.0);
    - ``"dlib-68pt"``: dlib's 68-point predictor, an explicit opt-in: it was trained
      on iBUG 300-W, whose licence excludes commercial use.
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


    @property
    def own_detector(self) -> str:
        """The detector this recipe's landmarks come with: YuNet for its own points, else dlib's HOG."""
        return "yunet" if self.landmarks == "yunet-5pt" else "hog"


DLIB_CHIP_150 = AlignRecipe()
# insightface's and OpenCV's template crop, with YuNet's five points (SFace, IResNet, MobileFaceNet).
ARCFACE_YUNET_112 = AlignRecipe(method="arcface-5pt", size=112, padding=0.0, landmarks="yunet-5pt")
# The same crop with dlib's 68-point predictor: non-commercial (iBUG 300-W); only on explicit request.
ARCFACE_TEMPLATE_112 = AlignRecipe(method="arcface-5pt", size=112, padding=0.0, landmarks="dlib-68pt")

# Which landmark sources a recipe method accepts.
KNOWN_RECIPES = {("dlib-chip", "dlib-5pt"), ("arcface-5pt", "yunet-5pt"), ("arcface-5pt", "dlib-68pt")}
