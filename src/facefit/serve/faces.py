"""From an uploaded photo to aligned faces, with errors that name the upload.

Every photo is decoded, searched for faces and aligned inside a decode slot (``ServeState.decode_slot``),
at most ``max_side`` pixels long; the boxes are then mapped back into the upload's own pixels.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from facefit.align.aligner import Face
from facefit.errors import ImageError
from facefit.gallery.enrol import Prepared
from facefit.io.images import ImageBytes
from facefit.serve.schemas import FaceBox
from facefit.serve.state import BusyError, ServeState

BUSY = "the server is busy with other photos; try again shortly"


def detect(state: ServeState, upload: ImageBytes, policy: str = "all") -> list[Face]:
    """The faces in ``upload`` under ``policy`` (all, largest, center); 422 when it is not a readable image."""
    from facefit.gallery.enrol import load_working, scale_face

    try:
        with state.decode_slot() as engine:
            image, factor = load_working(upload, max_side=state.settings.max_side,
                                         limit_pixels=state.settings.max_pixels)
            faces = engine.find(image, policy)
            del image
    except ImageError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except BusyError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, BUSY) from None
    return [scale_face(f, factor) for f in faces]


def prepare(state: ServeState, uploads: list[ImageBytes], choice: str | int | None) -> Prepared:
    """Enrolment's detection and embedding, one photo per decode slot, on the request's own thread."""
    from facefit.gallery.enrol import prepare_faces

    out = Prepared()
    for upload in uploads:
        try:
            with state.decode_slot() as engine:
                part = prepare_faces([upload], engine, choice=choice, max_side=state.settings.max_side,
                                     limit_pixels=state.settings.max_pixels)
        except BusyError:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, BUSY) from None
        out.faces += part.faces
        out.failures += part.failures
    return out


def one_face(state: ServeState, upload: ImageBytes) -> Face:
    """The largest face of ``upload``; 422 when there is none."""
    faces = detect(state, upload, "largest")
    if not faces:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{upload.name}: no face found")
    return faces[0]


def box_of(face: Face) -> FaceBox:
    return FaceBox(box=tuple(round(v, 1) for v in face.box), score=round(face.score, 4), detector=face.detector)
