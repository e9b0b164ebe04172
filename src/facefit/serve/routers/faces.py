"""``POST /embed``, ``/verify`` (1:1) and ``/identify`` (1:N): photos in, faces and answers out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query

from facefit.serve.deps import GalleryDep, State, read_upload
from facefit.serve.faces import box_of, detect, one_face
from facefit.serve.schemas import (
    EmbeddedFace,
    EmbedQuery,
    EmbedResponse,
    IdentifiedFace,
    IdentifyQuery,
    IdentifyResponse,
    MatchOut,
    OneImage,
    TwoImages,
    VerifyQuery,
    VerifyResponse,
)

router = APIRouter(tags=["faces"])


@router.post("/embed")
def embed(state: State, form: Annotated[OneImage, Form()], q: Annotated[EmbedQuery, Query()]) -> EmbedResponse:
    """Every face of the photo (or the largest / most central one) with its raw embedding."""
    faces = detect(state, read_upload(form.image, "image", state), q.faces)
    emb = state.engine.embed(faces)
    return EmbedResponse(contract_id=state.model.contract.id,
                         faces=[EmbeddedFace(**box_of(f).model_dump(), embedding=[float(v) for v in e])
                                for f, e in zip(faces, emb)])


@router.post("/verify")
def verify(state: State, form: Annotated[TwoImages, Form()], q: Annotated[VerifyQuery, Query()]) -> VerifyResponse:
    """1:1: are the largest faces of the two photos the same person?"""
    from facefit.distances import paired_distances
    from facefit.models.thresholds import choose_threshold

    contract = state.model.contract
    metric = contract.distance
    chosen = choose_threshold(contract, "verify", given=q.threshold, given_source="the request",
                              default=state.settings.verify_threshold, default_source="the server's setting")
    threshold, source = chosen.require(), chosen.source  # none: a 422 that says what would give one
    a = one_face(state, read_upload(form.image_a, "image_a", state))
    b = one_face(state, read_upload(form.image_b, "image_b", state))
    emb = state.engine.embed([a, b])
    distance = float(paired_distances(emb[:1], emb[1:], metric)[0])
    return VerifyResponse(same=distance <= threshold, distance=round(distance, 6), threshold=float(threshold),
                          threshold_source=source, metric=metric, face_a=box_of(a), face_b=box_of(b))


@router.post("/identify")
def identify(state: State, gallery: GalleryDep, form: Annotated[OneImage, Form()],
             q: Annotated[IdentifyQuery, Query()]) -> IdentifyResponse:
    """1:N, open set: each face of the photo is an enrolled person or unknown."""
    faces = detect(state, read_upload(form.image, "image", state), "all")[: state.settings.max_faces]
    emb = state.engine.embed(faces) if faces else None

    def search(g):  # runs on the gallery's thread
        from facefit.gallery.store import GalleryError
        from facefit.models.thresholds import choose_threshold

        # Emptied by DELETE, a gallery keeps its model but is as empty as a new one: the same 409.
        if g.contract is None or g.index().n_items == 0:  # the index is cached: no extra query
            raise GalleryError("the gallery is empty: enrol someone first (POST /persons/{name}/faces)")
        chosen = choose_threshold(g.contract, "identify", metric=g.metric, given=q.threshold,
                                  given_source="the request", default=state.settings.threshold,
                                  default_source="the server's setting")
        limit, where = chosen.require(), chosen.source
        if emb is None:
            return g.metric, limit, where, []
        return g.metric, limit, where, g.identify(emb, state.model, threshold=limit, top_k=q.top_k)

    metric, limit, where, answers = gallery.call(search)
    return IdentifyResponse(
        metric=metric, threshold=float(limit), threshold_source=where,
        faces=[IdentifiedFace(**box_of(f).model_dump(), name=a.name,
                              distance=None if a.distance is None else round(a.distance, 6),
                              matches=[MatchOut(name=m.name, distance=round(m.distance, 6)) for m in a.matches])
               for f, a in zip(faces, answers)])
