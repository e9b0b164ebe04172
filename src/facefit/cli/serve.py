"""``facefit serve``: the REST API for 1:1 verification, 1:N identification and enrolment."""

from __future__ import annotations

from typing import Annotated

import typer

from facefit.cli.common import Detector, distance_threshold, info
from facefit.cli.options import GalleryModelOpt, GalleryOpt, PrecisionOpt

INSTALL_HINT = "facefit serve needs the [serve] extra: pip install 'facefit[serve]'"


def serve(
    gallery: GalleryOpt = None,
    model: GalleryModelOpt = None,
    precision: PrecisionOpt = None,
    no_gallery: Annotated[bool, typer.Option("--no-gallery", help="Serve /verify and /embed only.")] = False,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 8000,
    detector: Annotated[Detector, typer.Option("--detector", help="Face detector: model (the model's own), hog, "
                                               "yunet or auto.")] = Detector.model,
    threshold: Annotated[float | None, typer.Option("--threshold", callback=distance_threshold,
                                                    help="1:N accept threshold "
                                                    "(default: the model's own).", show_default=False)] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.01, help="Largest image upload.")] = 10.0,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="FACEFIT_SERVE_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' on every endpoint but "
                                                     "/health (better set in $FACEFIT_SERVE_API_KEY).",
                                                show_default=False)] = None,
    keys: Annotated[str | None, typer.Option("--keys", envvar="FACEFIT_SERVE_KEYS",
                                             help="File of 'key role name' lines (roles: read, enrol, admin); "
                                                  "--api-key is then one more admin key.",
                                             show_default=False)] = None,
    no_enrol: Annotated[bool, typer.Option("--no-enrol", help="Refuse enrolment and removal (read-only "
                                           "gallery).")] = False,
) -> None:
    """Run the REST API and its web page at /: POST /verify, /identify, /embed; /persons; GET /health, /model.

    Photos are sent as multipart uploads. Identification is open-set: a face
    farther than the threshold from everyone enrolled is unknown. The OpenAPI
    page is at /docs. Settings can also come from FACEFIT_SERVE_* variables.
    """
    if detector is Detector.mmod:
        raise typer.BadParameter("serve detects with model, hog, yunet or auto (mmod alone is too slow per request)",
                                 param_hint="--detector")
    try:
        import uvicorn  # noqa: F401 - checked here, so a missing extra is this one line

        from facefit.serve.app import create_app
        from facefit.serve.server import run
        from facefit.serve.settings import ServeSettings
        from facefit.serve.state import load_state
    except ImportError as exc:
        from facefit.errors import FacefitError

        raise FacefitError(f"{INSTALL_HINT} ({exc.name} is missing)") from None

    from pydantic import ValidationError

    from facefit.errors import UsageError

    # Only what was given on the command line, so FACEFIT_SERVE_* variables fill in the rest.
    given = {"model": model, "gallery": gallery, "threshold": threshold, "api_key": api_key, "keys": keys,
             "no_gallery": no_gallery or None, "allow_enrol": False if no_enrol else None,
             "detector": None if detector is Detector.model else detector.value,
             "max_upload_mb": None if max_upload_mb == 10.0 else max_upload_mb}
    try:
        settings = ServeSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise UsageError(f"invalid server settings: {problems}") from None
    clients = settings.clients()
    _check_address(host, port)
    state = load_state(settings)  # a bad model or gallery fails here, in one line, before the server starts
    # The gallery's location goes to this log only: responses name its kind, never its path or URL.
    where = f"; gallery {state.gallery.location}" if state.gallery is not None else "; no gallery"
    guard = f"; API key required ({len(clients)} key{'s' if len(clients) > 1 else ''})" if clients else ""
    info(f"facefit serve on http://{host}:{port} (web page at /, API docs at /docs)" + guard + where)
    run(create_app(state=state), settings, host, port)


def _check_address(host: str, port: int) -> None:
    """Resolve ``host`` now: uvicorn would only fail after start-up, without naming it."""
    import socket

    from facefit.errors import UsageError

    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"--host {host}: not an address this machine can listen on ({exc})") from None
