"""``GET /health`` (no key needed, see ``auth.OPEN_PATHS``) and ``GET /model``: is it up, what its embeddings mean."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from facefit.serve.deps import State
from facefit.serve.schemas import Health

router = APIRouter(tags=["system"])


@router.get("/health")
def health(state: State) -> Health:
    """Liveness, the model's contract id and the gallery's size."""
    import facefit

    persons = faces = None
    location = None
    if state.gallery is not None:
        location, (persons, faces) = state.gallery.call(lambda g: (g.location, g.store.counts()))
    return Health(version=facefit.__version__, model=state.model.contract.id, gallery=location,
                  persons=persons, faces=faces)


@router.get("/model")
def model_contract(state: State) -> dict[str, Any]:
    """The embedding contract: architecture, input, alignment, distance and calibrated thresholds."""
    return state.model.contract.to_dict()
