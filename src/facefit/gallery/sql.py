"""What the SQL stores share: the same tables (``facefit_*``), queries and edits, in either dialect.

Queries are written with ``?`` placeholders; a store whose driver wants
another style translates them in ``_rows``/``_exec``. Subclasses provide the
connection, the write transaction, the contract binding and the face insert,
which differ between SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from facefit.gallery.records import AddOutcome, Box, FaceRecord, NewFace, PersonSummary, StoredCrop
from facefit.gallery.store import GalleryError, UnknownPersonError, check_name, same_face, stored_crop

_FACE_COLUMNS = ("f.id, p.name, f.image_sha256, f.source, f.box, f.det_score, f.face_px, f.sharpness, "
                 "f.detector, f.created, c.face_id IS NOT NULL")
_FACE_FROM = ("facefit_faces f JOIN facefit_persons p ON p.id = f.person_id "
              "LEFT JOIN facefit_crops c ON c.face_id = f.id")


class SqlStore:
    """Shared reads and edits of a gallery kept in SQL tables."""

    location: str
    name_order = "p.name"  # how persons are listed (byte order in both dialects)

    # -- provided by each dialect --------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        raise NotImplementedError

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """A statement inside the current write transaction."""
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _bind_contract(self, contract_json: str, contract_id: str) -> Any:
        raise NotImplementedError

    def _insert_face(self, pid: int, face: NewFace, contract_id: str, now: float, bound: Any) -> int:
        raise NotImplementedError

    def _box(self, value: Any) -> Box:
        raise NotImplementedError

    def _forget(self) -> None:
        """After a deletion: make the removed bytes unrecoverable where the engine allows it."""

    # Whether a removal alone takes the removed rows out of the database's files (see ``erase_removed``).
    erased_on_removal = True

    def erase_removed(self) -> None:
        """Take the rows removed so far out of the database's files, where a removal alone does not."""

    # -- reading -----------------------------------------------------------------------------------
    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _bump(self) -> None:
        self._exec("UPDATE facefit_meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'revision'")

    def _meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM facefit_meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    def contract_json(self) -> str | None:
        return self._meta("contract")

    def revision(self) -> int:
        return int(self._meta("revision") or 0)

    def vectors_revision(self) -> int:
        """The revision of the last ``replace_embeddings``: indexes older than this hold outdated vectors."""
        return int(self._meta("vectors_revision") or 0)

    def model_ref(self) -> str | None:
        """Where the model of the stored embeddings was loaded from (a registered name or a path), if known."""
        return self._meta("model_ref")

    def set_model_ref(self, ref: str) -> None:
        with self._write():
            self._exec("DELETE FROM facefit_meta WHERE key = 'model_ref'")
            self._exec("INSERT INTO facefit_meta VALUES ('model_ref', ?)", (ref,))

    def counts(self) -> tuple[int, int]:
        row = self._one("SELECT (SELECT COUNT(*) FROM facefit_persons), (SELECT COUNT(*) FROM facefit_faces)")
        return int(row[0]), int(row[1])

    def _record(self, row: tuple) -> FaceRecord:
        return FaceRecord(int(row[0]), row[1], row[2], row[3], self._box(row[4]), float(row[5]), float(row[6]),
                          float(row[7]), row[8], float(row[9]), bool(row[10]))

    def find_faces(self, image_sha256: str) -> list[FaceRecord]:
        rows = self._rows(f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE f.image_sha256 = ? ORDER BY f.id",
                          (image_sha256,))
        return [self._record(r) for r in rows]

    def persons(self) -> list[PersonSummary]:
        rows = self._rows("SELECT p.name, COUNT(f.id), p.created, p.updated FROM facefit_persons p "
                          f"LEFT JOIN facefit_faces f ON f.person_id = p.id GROUP BY p.id ORDER BY {self.name_order}")
        return [PersonSummary(r[0], int(r[1]), float(r[2]), float(r[3])) for r in rows]

    def faces(self, person: str | None = None) -> list[FaceRecord]:
        if person is None:
            rows = self._rows(f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} ORDER BY f.id")
        else:
            rows = self._rows(f"SELECT {_FACE_COLUMNS} FROM {_FACE_FROM} WHERE f.person_id = ? ORDER BY f.id",
                              (self._person_id(person),))
        return [self._record(r) for r in rows]

    def _person_id(self, name: str) -> int:
        import unicodedata

        # Names are stored stripped and in NFC (check_name); a gallery from before that keeps its spelling.
        row = self._one("SELECT id FROM facefit_persons WHERE name IN (?, ?) ORDER BY name = ? DESC",
                        (name, unicodedata.normalize("NFC", name.strip()), name))
        if row is None:
            raise UnknownPersonError(f"no person named {name!r} in the gallery {self.location}")
        return int(row[0])

    def vectors(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        rows = self._rows("SELECT f.id, p.name, f.embedding FROM facefit_faces f "
                          "JOIN facefit_persons p ON p.id = f.person_id ORDER BY f.id")
        if not rows:
            return np.empty(0, np.int64), [], np.empty((0, 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return ids, [r[1] for r in rows], np.stack([np.frombuffer(r[2], np.float32) for r in rows])

    def face_persons(self) -> tuple[np.ndarray, list[str]]:
        """(face ids, person names) of every face, without the vectors."""
        rows = self._rows("SELECT f.id, p.name FROM facefit_faces f JOIN facefit_persons p ON p.id = f.person_id "
                          "ORDER BY f.id")
        return np.fromiter((r[0] for r in rows), np.int64, len(rows)), [r[1] for r in rows]

    def vectors_for(self, ids: np.ndarray) -> np.ndarray:
        """Raw embeddings of the given faces, in that order."""
        out = []
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            rows = dict(self._rows(f"SELECT id, embedding FROM facefit_faces WHERE id IN ({marks})", chunk))
            missing = [i for i in chunk if i not in rows]
            if missing:
                raise GalleryError(f"faces {missing[:5]} vanished while the index was being updated; search again")
            out += [np.frombuffer(rows[i], np.float32) for i in chunk]
        return np.stack(out) if out else np.empty((0, 0), np.float32)

    def crops(self) -> Iterator[StoredCrop]:
        rows = self._rows("SELECT f.id, c.jpeg, c.geometry FROM facefit_faces f "
                          "LEFT JOIN facefit_crops c ON c.face_id = f.id ORDER BY f.id")
        for fid, jpeg, geometry in rows:
            yield stored_crop(int(fid), jpeg, geometry)

    def crop(self, face_id: int) -> StoredCrop:
        """One face's stored crop (its fields None when the gallery keeps none); GalleryError when no such face."""
        row = self._one("SELECT f.id, c.jpeg, c.geometry FROM facefit_faces f "
                        "LEFT JOIN facefit_crops c ON c.face_id = f.id WHERE f.id = ?", (int(face_id),))
        if row is None:
            raise GalleryError(f"no face with id {face_id} in the gallery {self.location}")
        return stored_crop(int(row[0]), row[1], row[2])

    # -- writing -----------------------------------------------------------------------------------
    def add_faces(self, person: str, faces: Sequence[NewFace], contract_json: str, contract_id: str, *,
                  person_times: tuple[float, float] | None = None) -> AddOutcome:
        name = check_name(person)
        outcome = AddOutcome()
        now = time.time()
        created, updated = person_times or (now, now)  # an import keeps a new person's exported times
        with self._write():
            bound = self._bind_contract(contract_json, contract_id)
            row = self._one("SELECT id FROM facefit_persons WHERE name = ?", (name,))
            pid = int(row[0]) if row else None
            if pid is not None:
                updated = now  # an existing person changes now
            for face in faces:
                # Checked inside the write lock so two processes adding the same photo store it once.
                dup = next((f for f in self.find_faces(face.image_sha256) if same_face(f.box, face.box)), None)
                if dup is not None:
                    outcome.duplicates.append((face, dup.person, dup.id))
                    continue
                if pid is None:
                    self._exec("INSERT INTO facefit_persons (name, created, updated) VALUES (?, ?, ?)",
                               (name, created, updated))
                    pid = self._person_id(name)
                outcome.added.append(self._insert_face(pid, face, contract_id, now, bound))
            if outcome.added:
                self._exec("UPDATE facefit_persons SET updated = ? WHERE id = ?", (updated, pid))
                self._bump()
        return outcome

    def rename(self, old: str, new: str) -> None:
        new = check_name(new)
        with self._write():
            pid = self._person_id(old)
            if self._one("SELECT 1 FROM facefit_persons WHERE name = ?", (new,)):
                raise GalleryError(f"there is already a person named {new!r}; remove or rename them first")
            self._exec("UPDATE facefit_persons SET name = ?, updated = ? WHERE id = ?", (new, time.time(), pid))
            self._bump()

    def remove_person(self, name: str) -> int:
        with self._write():
            pid = self._person_id(name)
            n = self._one("SELECT COUNT(*) FROM facefit_faces WHERE person_id = ?", (pid,))[0]
            self._exec("DELETE FROM facefit_persons WHERE id = ?", (pid,))  # faces and crops cascade
            self._bump()
        self._forget()
        return int(n)

    def remove_face(self, face_id: int) -> str:
        with self._write():
            row = self._one("SELECT p.id, p.name FROM facefit_faces f JOIN facefit_persons p ON p.id = f.person_id "
                            "WHERE f.id = ?", (int(face_id),))
            if row is None:
                raise GalleryError(f"no face with id {face_id} in the gallery {self.location}")
            self._exec("DELETE FROM facefit_faces WHERE id = ?", (int(face_id),))
            if not self._one("SELECT 1 FROM facefit_faces WHERE person_id = ?", (row[0],)):
                self._exec("DELETE FROM facefit_persons WHERE id = ?", (row[0],))
            self._bump()
        self._forget()
        return str(row[1])

    def _check_same_faces(self, ids: np.ndarray) -> None:
        """Inside a write: the faces to re-embed must be exactly the stored ones."""
        stored = {int(r[0]) for r in self._rows("SELECT id FROM facefit_faces")}
        given = {int(i) for i in ids}
        if stored != given:
            raise GalleryError(f"{self.location} changed during re-embedding ({len(stored ^ given)} faces "
                               f"differ); run it again")

    def _mark_reembedded(self, contract_json: str) -> None:
        self._exec("DELETE FROM facefit_meta WHERE key IN ('contract', 'vectors_revision')")
        self._exec("INSERT INTO facefit_meta VALUES ('contract', ?)", (contract_json,))
        self._bump()
        self._exec("INSERT INTO facefit_meta SELECT 'vectors_revision', value FROM facefit_meta "
                   "WHERE key = 'revision'")


def contract_geometry(contract_json: str) -> tuple[int | None, str]:
    """(embedding dimension, metric) recorded in a contract's JSON."""
    data = json.loads(contract_json)
    dim = data.get("embedding_dim")
    return (None if dim is None else int(dim)), str(data.get("distance", "euclidean"))
