"""``GET /health`` (no key needed, see ``auth.OPEN_PATHS``) and ``GET /model``: is it up, what its embeddings mean."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Response, status

from facefit.serve.deps import State
from facefit.serve.schemas import Health
from facefit.serve.state import GalleryWorker

router = APIRouter(tags=["system"])
PROBE_INDEX_MAX = 50_000  # faces: up to here, rebuilding the search index takes well under a second
log = logging.getLogger("facefit.serve")


@router.get("/health", responses={503: {"model": Health, "description": "the gallery cannot be read"}})
async def health(state: State, response: Response) -> Health:
    """Liveness, the model's contract id, the gallery's kind and size; 503 when the gallery cannot answer.

    Async, so it answers even while every worker thread waits on uploads: it needs only the gallery's thread.
    """
    import facefit

    persons = faces = None
    problem = None
    if state.gallery is not None:
        try:
            worker = state.gallery
            persons, faces = await worker.acall(probe)
            failures = await worker.acall(lambda _g: worker.failures())
            problem = failures[0] if failures else None
        except Exception as exc:  # the probe itself met the damage: that is the answer, not a 500
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            log.warning("health: the gallery %s cannot answer: %s", state.gallery.location, problem)
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(status="ok" if problem is None else "error", version=facefit.__version__,
                  model=state.model.contract.id, precision=state.model.known_precision() or "auto",
                  gallery=None if state.gallery is None else state.gallery.kind,
                  persons=persons, faces=faces,
                  detail=None if problem is None else "the gallery cannot be read: "
                  + _public(state.gallery, problem))


def probe(g: Any) -> tuple[int, int]:  # a Gallery, on its own thread
    """Read what the gallery endpoints read: the model binding, the persons and the search index.

    The index is kept in memory and rebuilt only after a change, so a probe of an unchanged gallery is cheap;
    above ``PROBE_INDEX_MAX`` faces a rebuild could outlast a probe's timeout, and the first search makes it.
    """
    persons, faces = g.store.counts()
    contract = g.contract  # parses the stored contract, as every search does
    g.persons()
    if contract is not None and 0 < faces <= PROBE_INDEX_MAX:
        g.index()
    return persons, faces


def _public(gallery: GalleryWorker | None, message: str) -> str:
    return message if gallery is None else gallery.public(message)


@router.get("/model")
def model_contract(state: State) -> dict[str, Any]:
    """The embedding contract: architecture, input, alignment, distance and calibrated thresholds."""
    return state.model.contract.to_dict()
