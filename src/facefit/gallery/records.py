"""Plain records passed between the gallery's parts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in source-image pixels


@dataclass
class NewFace:
    """A face ready to be stored: its embedding, where it came from and a loose crop for re-embedding."""

    image_sha256: str
    source: str  # the path given at enrolment (informational; the file may move later)
    box: Box
    embedding: np.ndarray  # (D,) float32, raw model output
    landmarks: np.ndarray  # (5, 2) float32, in crop coordinates
    crop_jpeg: bytes | None  # loose crop around the face, enough context to re-align
    crop_box: Box | None = None  # the face box in crop coordinates
    det_score: float = 0.0
    face_px: float = 0.0  # box width in source pixels
    sharpness: float = 0.0  # variance of the Laplacian of the aligned chip
    detector: str = ""
    created: float | None = None  # when it was first enrolled (kept by an import); None: now
    points: str = ""  # the landmarks' kind ("sp5", "yunet"); "" for faces stored before kinds were recorded


@dataclass
class StoredCrop:
    """What re-embedding needs of a face: its loose crop and where the face sits in it."""

    face_id: int
    jpeg: bytes | None
    landmarks: np.ndarray | None  # (5, 2) in crop coordinates
    box: Box | None  # in crop coordinates
    points: str = ""  # the landmarks' kind ("sp5", "yunet"); "": not recorded (older galleries)


@dataclass
class FaceRecord:
    """A stored face, without its crop bytes."""

    id: int
    person: str
    image_sha256: str
    source: str
    box: Box
    det_score: float
    face_px: float
    sharpness: float
    detector: str
    created: float
    has_crop: bool


@dataclass
class PersonSummary:
    name: str
    n_faces: int
    created: float
    updated: float


@dataclass
class AddOutcome:
    """What one ``add_faces`` transaction did."""

    added: list[int] = field(default_factory=list)  # new face ids
    duplicates: list[tuple[NewFace, str, int]] = field(default_factory=list)  # (face, enrolled as, face id)


@dataclass
class Match:
    name: str
    distance: float  # under the gallery's metric; lower = more alike
    face_id: int | None = None  # the closest face of that person (None for mean templates)


@dataclass
class Identification:
    """The answer for one probe face: the best match if it passes the threshold, else unknown."""

    name: str | None
    distance: float | None
    matches: list[Match]
    threshold: float
