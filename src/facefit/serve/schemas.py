"""Request and response schemas. Unknown fields and query parameters are refused (``extra="forbid"``).

Routes without a query model, and repeated values, are ``strict.py``'s part.
"""

from __future__ import annotations

from typing import Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


# -- requests ------------------------------------------------------------------------------------
class EmbedQuery(Strict):
    faces: Literal["all", "largest", "center"] = "all"


class VerifyQuery(Strict):
    # Not allow_inf_nan: 'inf' and '1e309' are floats > 0 that accept every pair, shown as "threshold": null.
    threshold: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="accept when the distance is at most this "
                                                "(default: the model's own 1:1 threshold)")


class IdentifyQuery(Strict):
    top_k: int = Field(3, ge=1, le=50)
    threshold: float | None = Field(None, gt=0, allow_inf_nan=False, description="default: the model's 1:N "
                                                                                 "threshold")


class EnrolQuery(Strict):
    face: str | None = Field(None, max_length=40,
                             description="which face of a photo with several: largest, center or its number "
                                         "(0 = leftmost); without it such photos are refused")

    @field_validator("face")
    @classmethod
    def _a_face_choice(cls, value: str | None) -> str | None:
        """Checked here, so that a bad choice is a 422 on ``face``, before any photo is read."""
        from facefit.errors import FacefitError
        from facefit.gallery.enrol import parse_face_choice

        try:
            parse_face_choice(value)
        except FacefitError:
            raise ValueError("expected largest, center or a face number (0 = leftmost)") from None
        return value


class PersonsQuery(Strict):
    limit: int | None = Field(None, ge=1, le=1000, description="at most this many persons (default: all)")
    offset: int = Field(0, ge=0, description="skip this many first (persons are in name order)")
    q: str | None = Field(None, min_length=1, max_length=200,
                          description="only names that contain this, ignoring case")


class Rename(Strict):
    name: str = Field(min_length=1, max_length=200, description="the person's new name")

    @field_validator("name")
    @classmethod
    def _storable(cls, value: str) -> str:
        """The gallery's own rule (``check_name``), so a bad new name is a 422 on ``name``, not a 409."""
        from facefit.gallery.store import GalleryError, check_name

        try:
            return check_name(value)
        except GalleryError as exc:
            raise ValueError(str(exc)) from None


class OneImage(_Form):
    image: UploadFile


class TwoImages(_Form):
    image_a: UploadFile
    image_b: UploadFile


class ManyImages(_Form):
    images: list[UploadFile] = Field(min_length=1, max_length=100)


# -- responses -----------------------------------------------------------------------------------
class FaceBox(Strict):
    box: tuple[float, float, float, float] = Field(description="x0, y0, x1, y1 in image pixels")
    score: float = Field(description="detector confidence")
    detector: str


class Health(Strict):
    status: Literal["ok", "error"] = Field("ok", description="error (with a 503): the gallery cannot be read")
    version: str
    model: str = Field(description="the embedding contract id")
    precision: str = Field(description="what embeddings are computed at: fp32 or bf16 (an ensemble's per "
                                       "member, e.g. bf16+fp32); auto until the first embedding settles it")
    gallery: str | None = Field(description="the gallery's kind (sqlite, postgresql); null without one. Its "
                                            "location stays in the server's log")
    persons: int | None
    faces: int | None
    detail: str | None = Field(None, description="why the gallery cannot be read")


class EmbeddedFace(FaceBox):
    embedding: list[float]


class EmbedResponse(Strict):
    contract_id: str
    faces: list[EmbeddedFace]


class VerifyResponse(Strict):
    same: bool
    distance: float
    threshold: float
    threshold_source: str
    metric: str
    face_a: FaceBox
    face_b: FaceBox


class MatchOut(Strict):
    name: str
    distance: float


class IdentifiedFace(FaceBox):
    name: str | None = Field(description="null: unknown (no enrolled person within the threshold)")
    distance: float | None
    matches: list[MatchOut]


class IdentifyResponse(Strict):
    metric: str
    threshold: float
    threshold_source: str
    faces: list[IdentifiedFace]


class PersonOut(Strict):
    name: str
    faces: int
    created: float
    updated: float


class FaceOut(Strict):
    id: int
    source: str
    box: tuple[float, float, float, float]
    det_score: float
    face_px: float
    sharpness: float
    detector: str
    created: float


class PersonDetail(Strict):
    name: str
    faces: list[FaceOut]


class Added(Strict):
    source: str
    face_id: int


class Duplicate(Strict):
    source: str
    enrolled_as: str
    face_id: int


class Failure(Strict):
    source: str
    reason: str


class EnrolResponse(Strict):
    person: str
    added: list[Added]
    duplicates: list[Duplicate]
    failures: list[Failure]


class Removed(Strict):
    person: str
    removed_faces: int


class Renamed(Strict):
    person: str = Field(description="the old name")
    name: str = Field(description="the new name, as stored")


class RemovedFace(Strict):
    person: str
    face_id: int
    remaining_faces: int = Field(description="0: that was the person's last face, so the person is gone too")
