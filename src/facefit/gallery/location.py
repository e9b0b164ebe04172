"""Where the gallery lives: ``--gallery``, else ``$FACEFIT_GALLERY``, else a per-user file."""

from __future__ import annotations

import os
import re
from pathlib import Path

from facefit.gallery.store import GalleryError, GalleryStore

ENV_GALLERY = "FACEFIT_GALLERY"
PG_SCHEMES = ("postgresql://", "postgres://")
# Anything shaped like a URL: never a file name anyone means, so an unknown scheme is refused
# instead of becoming a SQLite file called "mysql:/host/db".
URL = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


def default_location() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "facefit" / "gallery.sqlite"


def resolve_location(given: str | os.PathLike | None) -> str:
    if given is not None and str(given):
        return check_location(os.fspath(given))
    env = os.environ.get(ENV_GALLERY)
    if env:
        return check_location(env, f"${ENV_GALLERY}")
    return str(default_location())


def is_postgres(location: str) -> bool:
    return location.startswith(PG_SCHEMES)


def check_location(location: str, origin: str = "the gallery location") -> str:
    """``location`` if it is a file path or a PostgreSQL URL; any other URL is a one-line error."""
    match = URL.match(location)
    if match is None or is_postgres(location) or (os.name == "nt" and len(match.group(1)) == 1):  # C://dir
        return location
    raise GalleryError(f"{origin} {_shown(location)}: {match.group(1)}:// is not a kind of gallery facefit "
                       f"opens; give a SQLite file path (e.g. gallery.sqlite) or a PostgreSQL URL "
                       f"(postgresql://USER@HOST/DB or postgres://...)")


def _shown(url: str) -> str:
    """The URL fit for a message: its password hidden, or only its scheme when it does not parse."""
    from facefit.gallery.postgres import redact

    try:
        return redact(url)
    except ValueError:
        return url.split("://", 1)[0] + "://..."


def open_store(location: str, *, create: bool = True) -> GalleryStore:
    """A SQLite file path, or a PostgreSQL URL (``postgresql://...``, needs the ``[postgres]`` extra)."""
    check_location(location)
    if is_postgres(location):
        from facefit.gallery.postgres import PgVectorStore

        return PgVectorStore(location, create=create)
    from facefit.gallery.sqlite import SQLiteStore

    return SQLiteStore(location, create=create)
