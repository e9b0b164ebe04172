"""Errors as JSON: library errors mapped to 4xx, validation errors without echoes, and a last-resort 500."""

from __future__ import annotations

import json
import logging

from fastapi import Request, status
from fastapi.responses import JSONResponse

from facefit.errors import FacefitError
from facefit.serve.limits import App, Message, Receive, Scope, Send

log = logging.getLogger("facefit.serve")


class NotFoundError(FacefitError):
    """Something the request names is not there (a face of a person): a 404, like an unknown person."""


async def facefit_error(request: Request, exc: Exception) -> JSONResponse:
    """An unknown person is a 404, a gallery that cannot answer (empty, another model) a 409, the rest a 422.

    Bad names and ``face=`` choices never get here as gallery errors: the request schemas refuse them first.
    The gallery's location is taken out of the message (it is a server path or database URL) and logged.
    """
    from facefit.gallery.store import GalleryError, UnknownPersonError

    code = (status.HTTP_404_NOT_FOUND if isinstance(exc, (UnknownPersonError, NotFoundError))
            else status.HTTP_409_CONFLICT if isinstance(exc, GalleryError)
            else status.HTTP_422_UNPROCESSABLE_CONTENT)
    message = str(exc)
    gallery = getattr(getattr(request.app.state, "facefit", None), "gallery", None)
    if gallery is not None:
        log.info("%s %s: %d %s", request.method, request.url.path, code, message)
        message = gallery.public(message)
    return JSONResponse({"detail": message}, status_code=code)


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default echoes the offending input back, uploads included: say where and what, only.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]  # type: ignore[attr-defined]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


class LastResort:
    """ASGI middleware: an unexpected exception becomes a JSON 500, with the traceback in the server's log.

    Starlette would answer in plain text and re-raise, and uvicorn then drops the keep-alive connection.
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:  # half an answer is out: only closing the connection tells the client
                raise
            body = json.dumps({"detail": "internal server error; the server's log has the details"}).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
