"""Face detection, 5-point landmarks and aligned chips (no torch here)."""

from facefit.align.aligner import AlignConfig, Face, FaceAligner, FacePolicy, detect_and_align, select_faces
from facefit.align.detectors import Detection, FaceDetector, make_detector
from facefit.align.recipe import DLIB_CHIP_150, AlignRecipe

__all__ = [
    "DLIB_CHIP_150", "AlignConfig", "AlignRecipe", "Detection", "Face", "FaceAligner", "FaceDetector",
    "FacePolicy", "detect_and_align", "make_detector", "select_faces",
]
