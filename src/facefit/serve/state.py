"""What the server holds while it runs: the model, per-thread aligners and a thread-confined gallery."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from facefit.align.aligner import AlignConfig, FaceAligner, FacePolicy
from facefit.gallery.gallery import Gallery
from facefit.models.base import FaceEmbedder
from facefit.serve.settings import ServeSettings

T = TypeVar("T")


class GalleryWorker:
    """The gallery, opened and used on one dedicated thread.

    SQLite connections belong to the thread that made them, and gallery writes
    must not interleave, so every call is queued onto that thread.
    """

    def __init__(self, location: str | None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facefit-gallery")
        self._gallery: Gallery = self._pool.submit(Gallery.open, location).result()

    def call(self, fn: Callable[[Gallery], T]) -> T:
        return self._pool.submit(fn, self._gallery).result()

    def close(self) -> None:
        try:
            self._pool.submit(self._gallery.close).result()
        finally:
            self._pool.shutdown(wait=True)


class ServeState:
    """The loaded model and gallery, shared by every request."""

    def __init__(self, settings: ServeSettings, model: FaceEmbedder, gallery: GalleryWorker | None) -> None:
        self.settings = settings
        self.model = model
        self.gallery = gallery
        self._local = threading.local()

    @property
    def detector_name(self) -> str | None:
        """The detector setting for the library: None is the model's own."""
        return None if self.settings.detector == "model" else self.settings.detector

    def aligner(self) -> FaceAligner:
        """This thread's aligner: dlib's detectors keep scratch state, so threads do not share one."""
        aligner = getattr(self._local, "aligner", None)
        if aligner is None:
            config = AlignConfig.for_model(self.model, detector=self.detector_name, faces=FacePolicy.all)
            aligner = self._local.aligner = FaceAligner(config)
        return aligner

    def close(self) -> None:
        if self.gallery is not None:
            self.gallery.close()


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
