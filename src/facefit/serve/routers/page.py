"""``GET /``: the web page (``serve/web/``: plain HTML, CSS and JS, no build step, nothing from a CDN).

The page needs no key to load: it asks for one and sends it with each API call. Its scripts and style are
served under ``/ui/`` (``WEB_DIR``), mounted in ``app.create_app``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
def page() -> HTMLResponse:
    # The page runs only its own scripts: a stolen key is what an injected one would be after.
    csp = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
           "script-src 'self'; object-src 'none'; frame-ancestors 'none'")
    return HTMLResponse((WEB_DIR / "index.html").read_text(encoding="utf-8"),
                        headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})
