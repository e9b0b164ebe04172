"""``create_app(settings)``: the FastAPI application, with the model and gallery opened in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from facefit.errors import FacefitError
from facefit.serve.limits import BodyLimit
from facefit.serve.settings import ServeSettings

if TYPE_CHECKING:
    from facefit.serve.state import ServeState


def create_app(settings: ServeSettings | None = None, state: ServeState | None = None) -> FastAPI:
    """The app; nothing is loaded until it starts (``uvicorn`` or ``TestClient`` as a context manager).

    ``state`` hands over a model and gallery loaded beforehand (``facefit serve`` does, so a bad model or
    gallery is a one-line error before the server starts); the app closes it when it stops.
    """
    import facefit
    from facefit.serve.routers import faces, persons, system

    settings = state.settings if state is not None else settings or ServeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        from facefit.serve.state import load_state

        loaded = state if state is not None else await run_in_threadpool(load_state, settings)
        app.state.facefit = loaded
        try:
            yield
        finally:
            await run_in_threadpool(loaded.close)

    app = FastAPI(title="facefit", version=facefit.__version__, lifespan=lifespan,
                  description="Face verification (1:1), open-set identification (1:N) and enrolment.")
    app.include_router(system.router)
    app.include_router(faces.router)
    app.include_router(persons.router)
    app.add_middleware(BodyLimit, limit=int(settings.max_request_mb * 1024 * 1024))
    app.add_exception_handler(FacefitError, _facefit_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app


async def _facefit_error(_request: Request, exc: Exception) -> JSONResponse:
    from facefit.gallery.store import GalleryError, UnknownPersonError

    code = (status.HTTP_404_NOT_FOUND if isinstance(exc, UnknownPersonError)
            else status.HTTP_409_CONFLICT if isinstance(exc, GalleryError)
            else status.HTTP_422_UNPROCESSABLE_CONTENT)
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default echoes the offending input back, uploads included: say where and what, only.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]  # type: ignore[attr-defined]
    return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
