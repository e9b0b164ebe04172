"""``/persons``: list, show, enrol photos for, and remove the people of the gallery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Response, status

from facefit.serve.deps import Authorized, EnrolAllowed, GalleryDep, State, read_upload
from facefit.serve.schemas import (
    Added,
    Duplicate,
    EnrolQuery,
    EnrolResponse,
    FaceOut,
    Failure,
    ManyImages,
    PersonDetail,
    PersonOut,
    Removed,
)

router = APIRouter(prefix="/persons", tags=["persons"], dependencies=[Authorized])
Name = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("")
def list_persons(gallery: GalleryDep) -> list[PersonOut]:
    """Everyone enrolled, with their number of faces."""
    return [PersonOut(name=p.name, faces=p.n_faces, created=p.created, updated=p.updated)
            for p in gallery.call(lambda g: g.persons())]


@router.get("/{name}")
def show_person(name: Name, gallery: GalleryDep) -> PersonDetail:
    """One person's stored faces (no images: crops stay in the gallery)."""
    from facefit.gallery.store import UnknownPersonError

    def faces(g):  # noqa: ANN001, ANN202
        if name not in {p.name for p in g.persons()}:
            raise UnknownPersonError(f"no person named {name!r} in the gallery")
        return g.faces(name)

    return PersonDetail(name=name, faces=[
        FaceOut(id=f.id, source=f.source, box=f.box, det_score=f.det_score, face_px=f.face_px,
                sharpness=f.sharpness, detector=f.detector, created=f.created) for f in gallery.call(faces)])


@router.post("/{name}/faces", status_code=status.HTTP_201_CREATED, dependencies=[EnrolAllowed])
def enrol(name: Name, state: State, gallery: GalleryDep, form: Annotated[ManyImages, Form()],
          q: Annotated[EnrolQuery, Query()], response: Response) -> EnrolResponse:
    """Enrol one face from each uploaded photo, in one transaction; duplicates are not stored twice.

    201 when a face was added, 200 when every photo was a duplicate, 422 when none could be used.
    """
    from facefit.gallery.enrol import parse_face_choice

    uploads = [read_upload(f, f"images[{i}]", state) for i, f in enumerate(form.images)]
    choice = parse_face_choice(q.face)
    report = gallery.call(lambda g: g.add(name, uploads, state.model, detector=state.settings.detector,
                                          face=choice))
    body = EnrolResponse(person=name, added=[Added(source=s, face_id=i) for s, _, i in report.added],
                         duplicates=[Duplicate(source=s, enrolled_as=w, face_id=i) for s, w, i in report.duplicates],
                         failures=[Failure(source=s, reason=r) for s, r in report.failures])
    if not report.added:
        response.status_code = status.HTTP_200_OK if report.duplicates else status.HTTP_422_UNPROCESSABLE_CONTENT
    return body


@router.delete("/{name}", dependencies=[EnrolAllowed])
def remove(name: Name, gallery: GalleryDep) -> Removed:
    """Forget a person: their embeddings and stored crops are deleted."""
    return Removed(person=name, removed_faces=gallery.call(lambda g: g.remove(name)))
