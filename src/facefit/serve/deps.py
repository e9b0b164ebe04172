"""Request dependencies as ``Annotated`` types: the server state, the API key check, decoded uploads."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile, status

from facefit.io.images import ImageBytes
from facefit.serve.state import GalleryWorker, ServeState


def get_state(request: Request) -> ServeState:
    return request.app.state.facefit


State = Annotated[ServeState, Depends(get_state)]


def check_key(request: Request, state: State) -> None:
    """With an API key configured, the request must carry ``Authorization: Bearer <key>``."""
    key = state.settings.api_key
    if key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong API key (Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})


Authorized = Depends(check_key)


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
