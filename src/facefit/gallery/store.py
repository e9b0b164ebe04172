"""What a gallery backend must do. SQLite (``sqlite.py``) and PostgreSQL (``postgres.py``) implement it.

A store keeps persons and faces, each face with its raw embedding, the source
image's hash, box and quality, and a loose crop so faces can be re-embedded
when the model changes. One gallery holds embeddings of one model contract at
a time; every mutation bumps ``revision`` so derived indexes know they are stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from facefit.errors import FacefitError
from facefit.gallery.records import AddOutcome, Box, FaceRecord, NewFace, PersonSummary, StoredCrop

DUPLICATE_IOU = 0.5  # two faces of the same image overlapping more than this are the same face


class GalleryError(FacefitError):
    """A gallery that cannot be opened or used as asked."""


class ContractMismatchError(GalleryError):
    """Embeddings of another model: never mix them in one gallery."""


class UnknownPersonError(GalleryError):
    pass


@runtime_checkable
class GalleryStore(Protocol):
    location: str

    def close(self) -> None: ...

    def contract_json(self) -> str | None:
        """The contract of the stored embeddings (None while the gallery is empty and unbound)."""

    def revision(self) -> int: ...

    def model_ref(self) -> str | None:
        """Where the stored embeddings' model was loaded from (a registered name or a path), if recorded."""

    def set_model_ref(self, ref: str) -> None: ...

    def counts(self) -> tuple[int, int]:
        """(persons, faces)."""

    def add_faces(self, person: str, faces: Sequence[NewFace], contract_json: str, contract_id: str, *,
                  person_times: tuple[float, float] | None = None) -> AddOutcome:
        """Store ``faces`` for ``person`` (created if new) in one transaction, skipping duplicates.

        ``person_times`` (created, updated) are a new person's times, kept from an export; default now.
        """

    def find_faces(self, image_sha256: str) -> list[FaceRecord]:
        """Stored faces cut from the image with this hash."""

    def persons(self) -> list[PersonSummary]: ...

    def faces(self, person: str | None = None) -> list[FaceRecord]: ...

    def rename(self, old: str, new: str) -> None: ...

    def remove_person(self, name: str) -> int:
        """Delete the person with every face and crop; returns the number of faces removed."""

    def remove_face(self, face_id: int) -> str:
        """Delete one face (and its person when it was the last); returns the person's name."""

    def vectors(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        """All faces: (face ids int64, person names, raw embeddings float32 (N, D))."""

    def crops(self) -> Iterator[StoredCrop]:
        """Every face's loose crop (``jpeg`` None where crops were not kept)."""

    def crop(self, face_id: int) -> StoredCrop:
        """One face's loose crop; GalleryError when there is no such face."""

    def replace_embeddings(self, contract_json: str, contract_id: str, ids: np.ndarray,
                           embeddings: np.ndarray) -> None:
        """Swap every face's embedding for one made with another model, all or nothing."""


@runtime_checkable
class NativeSearch(Protocol):
    """A store that searches its own vectors (pgvector): squared L2 on the given search vectors."""

    def face_persons(self) -> tuple[np.ndarray, list[str]]:
        """(face ids, person names) of every face, without the vectors."""

    def search_faces(self, queries: np.ndarray, k: int, normalized: bool) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 distances (Q, k), face ids (Q, k), -1 where fewer than k faces)."""


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_face(a: Box, b: Box) -> bool:
    return iou(a, b) > DUPLICATE_IOU


def crop_geometry(face: NewFace) -> str:
    """Landmarks and box of a face inside its crop, as stored JSON."""
    box = None if face.crop_box is None else [round(float(v), 3) for v in face.crop_box]
    doc = {"landmarks": np.asarray(face.landmarks, np.float64).round(3).tolist(), "box": box}
    if face.points:  # the landmarks' kind travels with them: a gallery re-embedded for another model keeps them
        doc["points"] = face.points
    return json.dumps(doc)


def stored_crop(face_id: int, jpeg: bytes | None, geometry: str | None) -> StoredCrop:
    if jpeg is None or geometry is None:
        return StoredCrop(face_id, None, None, None)
    g = json.loads(geometry)
    box = None if g.get("box") is None else tuple(float(v) for v in g["box"])
    return StoredCrop(face_id, bytes(jpeg), np.asarray(g["landmarks"], np.float32), box, str(g.get("points") or ""))


# Characters a name must not hold: controls (C0, DEL, C1), format characters (bidi overrides, zero-width
# spaces and joiners) and line/paragraph separators. They are invisible or reorder text, so two names
# that print alike ("subj02", "subj02" + U+200B) would be two persons.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def invisible_char(name: str) -> str | None:
    """The first character of ``name`` in an invisible Unicode category, shown as ``U+XXXX NAME``; else None."""
    import unicodedata

    for c in name:
        if unicodedata.category(c) in INVISIBLE_CATEGORIES:
            return f"U+{ord(c):04X} {unicodedata.name(c, '(a control character)')}"
    return None


def check_name(name: str) -> str:
    """Person names are free text but must be printable and non-empty; stored in Unicode NFC form.

    NFC, so that "José" typed on one keyboard and pasted from another is one person, not two; and no
    control, format or separator characters, so that no two names look alike (see ``invisible_char``).
    """
    import unicodedata

    from facefit.io.files import bad_name

    clean = unicodedata.normalize("NFC", name.strip())
    if not clean:
        raise GalleryError("a person's name cannot be empty")
    if len(clean) > 200:
        raise GalleryError(f"{ascii(name[:40])}...: not a usable name (over 200 characters)")
    if bad_name(clean) or "\ufffd" in clean:  # undecodable bytes, kept as surrogates or replaced by U+FFFD
        raise GalleryError(f"{ascii(name)}: not a usable name (not valid UTF-8)")
    if clean in (".", ".."):  # a URL path segment that browsers and proxies resolve away: /persons/.. is /
        raise GalleryError(f"{clean!r}: not a usable name (a URL would read it as a path step)")
    hidden = invisible_char(clean)
    if hidden is not None:
        raise GalleryError(f"{ascii(name)}: not a usable name (it holds {hidden}; control, invisible format and "
                           f"line-separator characters make names that look alike)")
    return clean
