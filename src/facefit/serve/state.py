"""What the server holds while it runs: the model's engine, decode slots and a thread-confined gallery."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from facefit.engine import FaceEngine
from facefit.errors import FacefitError
from facefit.gallery.gallery import Gallery
from facefit.gallery.location import is_postgres
from facefit.models.base import FaceEmbedder
from facefit.serve.settings import ServeSettings

T = TypeVar("T")


class GalleryWorker:
    """The gallery, opened and used on one dedicated thread.

    SQLite connections belong to the thread that made them, and gallery writes
    must not interleave, so every call is queued onto that thread. Only database
    work belongs there: decoding, detection and embedding run on the request's thread.
    """

    def __init__(self, location: str | None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facefit-gallery")
        self._gallery: Gallery = self._pool.submit(Gallery.open, location).result()
        self.location = self._gallery.location  # for the server's log only: never sent to clients
        self.kind = "postgresql" if is_postgres(self.location) else "sqlite"
        # Unexpected errors (a damaged file, a lost database) by the call that met them, until that call
        # succeeds again: /health reports them, so it never says "ok" while an endpoint answers 500.
        self._failing: dict[str, str] = {}

    def call(self, fn: Callable[[Gallery], T]) -> T:
        return self._pool.submit(self._watched, fn).result()

    async def acall(self, fn: Callable[[Gallery], T]) -> T:
        """``call`` for async routes: waits without holding a worker thread (all may be busy with uploads)."""
        import asyncio

        return await asyncio.wrap_future(self._pool.submit(self._watched, fn))

    def _watched(self, fn: Callable[[Gallery], T]) -> T:
        key = getattr(fn, "__qualname__", repr(fn))
        try:
            out = fn(self._gallery)
        except FacefitError:
            raise  # the caller's mistake (unknown person, empty gallery), not the gallery's health
        except Exception as exc:
            self._failing[key] = f"{type(exc).__name__}: {exc}"
            raise
        self._failing.pop(key, None)
        return out

    def failures(self) -> list[str]:
        """Why gallery calls failed unexpectedly (and have not succeeded since); read on the gallery's thread,
        so call it through ``call``/``acall`` or after one."""
        return list(self._failing.values())

    def public(self, message: str) -> str:
        """``message`` without the gallery's location, fit for a client: paths stay in the server's log."""
        return hide_location(message, self.location)

    def close(self) -> None:
        try:
            self._pool.submit(self._gallery.close).result()
        finally:
            self._pool.shutdown(wait=True)


def hide_location(message: str, location: str) -> str:
    """``message`` with every spelling of ``location`` replaced by "the gallery"."""
    import os

    forms = {location}
    if not is_postgres(location):
        forms |= {os.path.abspath(location), os.path.realpath(location)}
    for form in sorted(forms, key=len, reverse=True):  # longest first: a prefix must not leave a tail behind
        message = message.replace(f"the gallery {form}", "the gallery").replace(form, "the gallery")
    return message


class BusyError(Exception):
    """Every decode slot stayed taken for the whole wait."""


class ServeState:
    """The loaded model and gallery, shared by every request, and the slots photos are decoded in."""

    def __init__(self, settings: ServeSettings, model: FaceEmbedder, gallery: GalleryWorker | None) -> None:
        self.settings = settings
        self.model = model
        self.engine = FaceEngine(model, detector=self.detector_name)
        self.gallery = gallery
        # dlib's detectors keep scratch buffers sized to the last image (about 115 MB after a large photo):
        # bounding the photos worked on at once also bounds the engine's pool of aligners.
        self._slots = threading.BoundedSemaphore(settings.max_decodes)

    @property
    def detector_name(self) -> str | None:
        """The detector setting for the library: None is the model's own."""
        return None if self.settings.detector == "model" else self.settings.detector

    @contextmanager
    def decode_slot(self) -> Iterator[FaceEngine]:
        """The engine, for one photo's decoding, detection and alignment; at most ``max_decodes`` photos are
        worked on at once, so their memory is bounded. Raises BusyError after ``decode_wait_s``."""
        if not self._slots.acquire(timeout=self.settings.decode_wait_s):
            raise BusyError
        try:
            yield self.engine
        finally:
            self._slots.release()
            _release_memory()

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()


def _release_memory() -> None:
    """Hand freed heap memory back to the system: glibc keeps it in its per-thread arenas otherwise, and
    after a large photo that was hundreds of MB per thread. About 3 ms."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc: nothing to hand back this way


def load_state(settings: ServeSettings) -> ServeState:
    """Open the gallery (unless ``no_gallery``) and load the model it needs, or the one asked for."""
    from facefit.defaults import default_model
    from facefit.gallery.gallery import gallery_model
    from facefit.models import create_model

    if settings.no_gallery:
        return ServeState(settings, create_model(settings.model or default_model()), None)
    worker = GalleryWorker(settings.gallery)
    try:
        model = worker.call(lambda g: gallery_model(g, settings.model))
        worker.call(lambda g: g.check_model(model))
    except BaseException:
        worker.close()
        raise
    return ServeState(settings, model, worker)
