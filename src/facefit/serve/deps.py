"""Request dependencies as ``Annotated`` types: the server state, the gallery, enrol rights, decoded uploads.

The API key is checked before any of them, by ``auth.ApiKeyGuard``: dependencies run after the body is parsed.
Its role is ``roles.py``'s part.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, UploadFile, status

from facefit.io.images import ImageBytes
from facefit.serve.state import GalleryWorker, ServeState


async def get_state(request: Request) -> ServeState:
    # async: a sync dependency takes a worker thread, and /health must answer when none is free.
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
    _check_pixels(name, data, state.settings.max_pixels)
    return ImageBytes(name, data)


def _check_pixels(name: str, data: bytes, limit: int) -> None:
    """413 when the photo's header declares more than ``limit`` pixels: a 100 KB PNG can decode to gigabytes.

    Only the header is read; a photo whose header does not parse is left to the decoder to explain.
    """
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Exception:  # any header the decoder cannot read gets its own, better message there
        return
    if w * h > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"{name}: {w}x{h} = {w * h / 1e6:.1f} MP is over this server's {limit / 1e6:g} MP "
                            f"limit (FACEFIT_SERVE_MAX_PIXELS)")
