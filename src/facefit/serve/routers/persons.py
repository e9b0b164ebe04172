"""``/persons``: list, show, enrol photos for, and remove the people of the gallery.

Names may hold '/' (``facefit gallery add "AC/DC" ...`` allows it), and ``/persons/AC%2FDC`` reaches the
routes as ``/persons/AC/DC``, so the name is a ``{name:person}``: like ``{name:path}``, it spans slashes.
``POST /persons/{name}/faces`` matches greedily, so ``AC/DC/faces`` enrols ``AC/DC``; GET and DELETE have no
sub-resource, so all of what follows ``/persons/`` is the name.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Form, Path, Query, Response, status
from pydantic import AfterValidator
from starlette.convertors import Convertor, register_url_convertor

from facefit.serve.deps import EnrolAllowed, GalleryDep, State, read_upload
from facefit.serve.faces import prepare
from facefit.serve.roles import Needs, RoleRoute
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
    PersonsQuery,
    Removed,
    Rename,
    Renamed,
)


class PersonName(Convertor[str]):
    """``path``'s '.*' stops at a newline, so a name with one got 404 "Not Found" rather than a 422 that says
    why; and '+': '/persons/' is the list (a redirect to it), not a person with an empty name."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


# A declaration the routes below need when they are compiled, as ':path' is built in; nothing is loaded.
register_url_convertor("person", PersonName())
router = APIRouter(prefix="/persons", tags=["persons"], route_class=RoleRoute)


def _storable(name: str) -> str:
    """The gallery's own rule (``check_name``), as a 422 on the path: a bad name is bad input, not a conflict."""
    from facefit.gallery.store import GalleryError, check_name

    try:
        return check_name(name)
    except GalleryError as exc:
        raise ValueError(str(exc)) from None


def _findable(name: str) -> str:
    """Blank names and control characters were never storable: 422. Anything else is looked up (or 404),
    so a person stored under an older, looser rule can still be shown and removed."""
    if not name.strip() or any(ord(c) < 32 for c in name):
        raise ValueError("not a person's name (empty, or control characters)")
    return name


Name = Annotated[str, Path(min_length=1, max_length=200), AfterValidator(_findable)]
NewName = Annotated[str, Path(min_length=1, max_length=200), AfterValidator(_storable)]


TOTAL_HEADER = "X-Total-Count"


@router.get("", responses={200: {"headers": {TOTAL_HEADER: {"description": "how many persons match, in all",
                                                             "schema": {"type": "integer"}}}}})
def list_persons(gallery: GalleryDep, q: Annotated[PersonsQuery, Query()], response: Response) -> list[PersonOut]:
    """Everyone enrolled (or whose name contains ``q``), in name order, with their number of faces; a page of
    them with ``limit`` and ``offset``. The header X-Total-Count says how many match in all."""
    persons = gallery.call(lambda g: g.persons())
    if q.q is not None:
        needle = q.q.casefold()
        persons = [p for p in persons if needle in p.name.casefold()]
    response.headers[TOTAL_HEADER] = str(len(persons))
    end = None if q.limit is None else q.offset + q.limit
    return [PersonOut(name=p.name, faces=p.n_faces, created=p.created, updated=p.updated)
            for p in persons[q.offset:end]]


@router.post("/{name:person}/faces", status_code=status.HTTP_201_CREATED, dependencies=[EnrolAllowed, Needs.enrol])
def enrol(name: NewName, state: State, gallery: GalleryDep, form: Annotated[ManyImages, Form()],
          q: Annotated[EnrolQuery, Query()], response: Response) -> EnrolResponse:
    """Enrol one face from each uploaded photo, in one transaction; duplicates are not stored twice. Needs the
    enrol role.

    201 when a face was added, 200 when every photo was a duplicate, 422 when none could be used.
    """
    from facefit.gallery.enrol import parse_face_choice

    uploads = [read_upload(f, f"images[{i}]", state) for i, f in enumerate(form.images)]
    # Detection and embedding here, on this request's thread; only the write waits for the gallery's thread,
    # so /health, /identify and /persons are not queued behind a slow upload.
    prepared = prepare(state, uploads, parse_face_choice(q.face))
    report = gallery.call(lambda g: g.add_prepared(name, prepared, state.model))
    body = EnrolResponse(person=name, added=[Added(source=s, face_id=i) for s, _, i in report.added],
                         duplicates=[Duplicate(source=s, enrolled_as=w, face_id=i) for s, w, i in report.duplicates],
                         failures=[Failure(source=s, reason=r) for s, r in report.failures])
    if not report.added:
        response.status_code = status.HTTP_200_OK if report.duplicates else status.HTTP_422_UNPROCESSABLE_CONTENT
    return body


@router.get("/{name:person}")
def show_person(name: Name, gallery: GalleryDep) -> PersonDetail:
    """One person's stored faces (no images: crops stay in the gallery)."""
    faces = gallery.call(lambda g: g.faces(name))  # an unknown name raises UnknownPersonError: 404
    return PersonDetail(name=faces[0].person if faces else name, faces=[
        FaceOut(id=f.id, source=f.source, box=f.box, det_score=f.det_score, face_px=f.face_px,
                sharpness=f.sharpness, detector=f.detector, created=f.created) for f in faces])


@router.delete("/{name:person}", dependencies=[EnrolAllowed, Needs.admin])
def remove(name: Name, gallery: GalleryDep) -> Removed:
    """Forget a person: their embeddings and stored crops are deleted. Needs the admin role."""
    return Removed(person=name, removed_faces=gallery.call(lambda g: g.remove(name)))


@router.patch("/{name:person}", dependencies=[EnrolAllowed, Needs.admin])
def rename(name: Name, gallery: GalleryDep, body: Annotated[Rename, Body()]) -> Renamed:
    """Rename a person: their faces stay; 409 when the new name is taken. Needs the admin role."""
    gallery.call(lambda g: g.rename(name, body.name))
    return Renamed(person=name, name=body.name)
