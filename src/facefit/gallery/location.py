"""Where the gallery lives: ``--gallery``, else ``$FACEFIT_GALLERY``, else a per-user file."""

from __future__ import annotations

import os
from pathlib import Path

from facefit.gallery.store import GalleryStore

ENV_GALLERY = "FACEFIT_GALLERY"
PG_SCHEMES = ("postgresql://", "postgres://")


def default_location() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "facefit" / "gallery.sqlite"


def resolve_location(given: str | os.PathLike | None) -> str:
    if given is not None and str(given):
        return os.fspath(given)
    return os.environ.get(ENV_GALLERY) or str(default_location())


def is_postgres(location: str) -> bool:
    return location.startswith(PG_SCHEMES)


def open_store(location: str, *, create: bool = True) -> GalleryStore:
    """A SQLite file path, or a PostgreSQL URL (``postgresql://...``, needs the ``[postgres]`` extra)."""
    if is_postgres(location):
        from facefit.gallery.postgres import PgVectorStore

        return PgVectorStore(location, create=create)
    from facefit.gallery.sqlite import SQLiteStore

    return SQLiteStore(location, create=create)
