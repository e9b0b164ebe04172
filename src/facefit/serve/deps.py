"""Request dependencies as ``Annotated`` types: the server state, the gallery, enrol rights, decoded uploads.

The API key is checked before any of them, by ``auth.ApiKeyGuard``: dependencies run after the body is parsed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile, status

from facefit.io.images import ImageBytes
from facefit.serve.state import GalleryWorker, ServeState


def get_state(request: Request) -> ServeState:
    return request.app.state.facefit


State = Annotated[ServeState, Depends(get_state)]


def get_gallery(state: State) -> GalleryWorker:
    if state.gallery is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "this server runs without a gallery "
                                                                 "(started with --no-gallery)")
    return state.gallery


GalleryDep = Annotated[GalleryWorker, Depends(get_gallery)]


def require_enrol(state: State) -> None:
    if not state.settings.allow_enrol:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "enrolment and removal are switched off on this server")


EnrolAllowed = Depends(require_enrol)


def read_upload(upload: UploadFile, field: str, state: ServeState) -> ImageBytes:
    """The upload's bytes, refused with 413 above the size limit; named ``field (filename)`` in errors."""
    limit = int(state.settings.max_upload_mb * 1024 * 1024)
    data = upload.file.read(limit + 1)
    name = f"{field} ({upload.filename})" if upload.filename else field
    if len(data) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"{name}: larger than the {state.settings.max_upload_mb:g} MB upload limit")
    return ImageBytes(name, data)
