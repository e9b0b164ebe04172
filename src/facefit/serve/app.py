"""``create_app(settings)``: the FastAPI application, with the model and gallery opened in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError

from facefit.errors import FacefitError
from facefit.serve.auth import ApiKeyGuard
from facefit.serve.errors import LastResort, facefit_error, validation_error
from facefit.serve.limits import BodyLimit
from facefit.serve.settings import ServeSettings
from facefit.serve.strict import strict_request

if TYPE_CHECKING:
    from facefit.serve.state import ServeState


def create_app(settings: ServeSettings | None = None, state: ServeState | None = None) -> FastAPI:
    """The app; nothing is loaded until it starts (``uvicorn`` or ``TestClient`` as a context manager).

    ``state`` hands over a model and gallery loaded beforehand (``facefit serve`` does, so a bad model or
    gallery is a one-line error before the server starts); the app closes it when it stops.
    """
    from fastapi.staticfiles import StaticFiles

    import facefit
    from facefit.serve.routers import faces, page, person_faces, persons, system

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
                  dependencies=[Depends(strict_request)],  # every route: no unknown or repeated parameters
                  description="Face verification (1:1), open-set identification (1:N) and enrolment.")
    app.include_router(page.router)
    app.include_router(system.router)
    app.include_router(faces.router)
    app.include_router(person_faces.router)  # before persons: its paths would also match a person's name
    app.include_router(persons.router)
    app.mount("/ui", StaticFiles(directory=page.WEB_DIR), name="ui")
    app.add_exception_handler(FacefitError, facefit_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    # Middleware, innermost first: the body cap, then the key (before any byte of the body is read), then
    # the JSON 500 around everything.
    app.add_middleware(BodyLimit, limit=int(settings.max_request_mb * 1024 * 1024))
    clients = settings.clients()
    if clients:
        app.add_middleware(ApiKeyGuard, clients=clients)
        app.openapi = _with_bearer(app)  # type: ignore[method-assign]
    app.add_middleware(LastResort)
    return app


def _with_bearer(app: FastAPI):  # FastAPI's openapi() replacement
    """``app.openapi`` with the bearer scheme declared for every operation (so /docs has Authorize) but
    /health."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "an API key: read, enrol or admin role (FACEFIT_SERVE_KEYS)"}}
            doc["security"] = [{"bearer": []}]
            doc["paths"].get("/health", {}).get("get", {})["security"] = []
            app.openapi_schema = doc
        return app.openapi_schema

    return openapi
