"""From an uploaded photo to aligned faces, with errors that name the upload."""

from __future__ import annotations

from fastapi import HTTPException, status

from facefit.align.aligner import Face
from facefit.errors import ImageError
from facefit.io.images import ImageBytes
from facefit.serve.schemas import FaceBox
from facefit.serve.state import ServeState


def detect(state: ServeState, upload: ImageBytes, policy: str = "all") -> list[Face]:
    """The faces in ``upload`` under ``policy`` (all, largest, center); 422 when it is not a readable image."""
    from facefit.io.images import load_image

    try:
        image = load_image(upload)
    except ImageError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return state.aligner()(image, policy)


def one_face(state: ServeState, upload: ImageBytes) -> Face:
    """The largest face of ``upload``; 422 when there is none."""
    faces = detect(state, upload, "largest")
    if not faces:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{upload.name}: no face found")
    return faces[0]


def box_of(face: Face) -> FaceBox:
    return FaceBox(box=tuple(round(v, 1) for v in face.box), score=round(face.score, 4), detector=face.detector)
