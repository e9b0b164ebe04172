"""``/persons/{name}/faces/{id}``: one stored face of one person; remove it, or see its crop.

A person's name may hold '/', so ``/persons/bob/faces/3`` could also be the person named "bob/faces/3"
(sent as ``/persons/bob%2Ffaces%2F3``). These routes match only when '/faces/N' is in the raw path with
real slashes (``FaceRoute``); otherwise the request goes on to the person routes, as meant. A face is
reached through its person only: an id of another person's face is a 404, never that face.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from starlette.routing import Match

from facefit.serve.deps import EnrolAllowed, GalleryDep
from facefit.serve.errors import NotFoundError
from facefit.serve.roles import Needs, RoleRoute
from facefit.serve.routers.persons import Name
from facefit.serve.schemas import RemovedFace

FaceId = Annotated[int, Path(ge=1, le=2**62)]


class FaceRoute(RoleRoute):
    """Matches only when the path's face part was sent with literal slashes, not as part of an encoded name."""

    tail = re.compile(rb"/faces/[0-9]+(/crop)?/?$")

    def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
        match, child = super().matches(scope)
        raw = scope.get("raw_path")
        if match is not Match.NONE and raw is not None and not self.tail.search(raw.split(b"?", 1)[0]):
            return Match.NONE, {}
        return match, child


router = APIRouter(prefix="/persons", tags=["persons"], route_class=FaceRoute)


def _owned(g: Any, name: str, face_id: int) -> int:  # a Gallery, on its own thread
    """How many faces ``name`` has, after checking that ``face_id`` is one of them."""
    faces = g.faces(name)  # an unknown name raises UnknownPersonError: 404
    if all(f.id != face_id for f in faces):
        raise NotFoundError(f"{name!r} has no face with id {face_id}")
    return len(faces)


@router.delete("/{name:person}/faces/{face_id}", dependencies=[EnrolAllowed, Needs.admin],
               responses={404: {"description": "no such person, or no such face of theirs"}})
def remove_face(name: Name, face_id: FaceId, gallery: GalleryDep) -> RemovedFace:
    """Remove one of a person's faces (its embedding and crop); removing the last one removes the person.
    Needs the admin role."""

    def remove(g: Any) -> int:  # on the gallery's thread, so nothing changes between the two
        n = _owned(g, name, face_id)
        g.remove_face(face_id)
        return n - 1

    return RemovedFace(person=name, face_id=face_id, remaining_faces=gallery.call(remove))


@router.get("/{name:person}/faces/{face_id}/crop", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "the stored loose crop, JPEG"},
                       404: {"description": "no such person or face, or the gallery keeps no crops"}})
def face_crop(name: Name, face_id: FaceId, gallery: GalleryDep) -> Response:
    """The face's stored crop (a loose crop around the face, as enrolled), as a JPEG image."""

    def crop(g: Any) -> bytes | None:
        _owned(g, name, face_id)
        return g.store.crop(face_id).jpeg

    jpeg = gallery.call(crop)
    if jpeg is None:
        raise NotFoundError(f"no crop is stored for face {face_id} (the gallery was filled without crops)")
    # private: a face is personal data, so no shared cache may keep it
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})
