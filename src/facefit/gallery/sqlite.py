"""The default gallery store: one SQLite file in WAL mode, every change one transaction.

Concurrent writers (several ``facefit gallery add`` at once) serialise on
SQLite's write lock (``BEGIN IMMEDIATE`` with a generous busy timeout), and a
process killed mid-transaction leaves the file as it was before it. Deleted
faces are overwritten on disk (``secure_delete``): removal is meant to forget.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from facefit.gallery.records import AddOutcome, FaceRecord, NewFace, PersonSummary, StoredCrop
from facefit.gallery.store import (
    ContractMismatchError,
    GalleryError,
    UnknownPersonError,
    check_name,
    crop_geometry,
    same_face,
    stored_crop,
)

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE persons (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE faces (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
        image_sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        box TEXT NOT NULL,
        det_score REAL NOT NULL,
        face_px REAL NOT NULL,
        sharpness REAL NOT NULL,
        detector TEXT NOT NULL,
        created REAL NOT NULL,
        contract_id TEXT NOT NULL,
        embedding BLOB NOT NULL
    );
    CREATE INDEX faces_person ON faces(person_id);
    CREATE INDEX faces_image ON faces(image_sha256);
    CREATE TABLE crops (
        face_id INTEGER PRIMARY KEY REFERENCES faces(id) ON DELETE CASCADE,
        jpeg BLOB NOT NULL,
        geometry TEXT NOT NULL
    );
    INSERT INTO meta VALUES ('revision', '0');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_S = 60.0


class SQLiteStore:
    """A gallery in one SQLite file (created on first use)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.location = str(self.path)
        if not self.path.exists():
            if not create:
                raise GalleryError(f"{self.path}: no gallery here (add someone first: facefit gallery add NAME IMAGE)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GalleryError(f"{self.path.parent}: cannot create folder: {exc.strerror or exc}") from None
        elif self.path.is_dir():
            raise GalleryError(f"{self.path}: is a folder; a SQLite gallery is a file")
        try:
            self.db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA secure_delete=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{self.path}: not a facefit gallery ({exc})") from None

    # -- schema ------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise GalleryError(f"{self.path}: gallery schema {version} is newer than this facefit understands "
                               f"({SCHEMA_VERSION}); upgrade facefit")
        if version == SCHEMA_VERSION:
            return
        if version == 0 and self._has_foreign_tables() and self._version() == 0:
            raise GalleryError(f"{self.path}: an SQLite file that is not a facefit gallery")
        with self._write():
            version = self._version()  # re-read under the lock: another process may have migrated meanwhile
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={step + 1}")

    def _version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _has_foreign_tables(self) -> bool:
        rows = self.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        return bool(rows)

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction, taken up front so concurrent writers queue instead of failing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _bump(self) -> None:
        self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def contract_json(self) -> str | None:
        return self._meta("contract")

    def revision(self) -> int:
        return int(self._meta("revision") or 0)

    def vectors_revision(self) -> int:
        """The revision of the last ``replace_embeddings``: indexes older than this hold outdated vectors."""
        return int(self._meta("vectors_revision") or 0)

    def face_persons(self) -> tuple[np.ndarray, list[str]]:
        rows = self.db.execute("SELECT f.id, p.name FROM faces f JOIN persons p ON p.id = f.person_id "
                               "ORDER BY f.id").fetchall()
        return np.fromiter((r[0] for r in rows), np.int64, len(rows)), [r[1] for r in rows]

    def vectors_for(self, ids: np.ndarray) -> np.ndarray:
        """Raw embeddings of the given faces, in that order."""
        out = []
        for start in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            rows = dict(self.db.execute(f"SELECT id, embedding FROM faces WHERE id IN ({marks})", chunk).fetchall())
            missing = [i for i in chunk if i not in rows]
            if missing:
                raise GalleryError(f"faces {missing[:5]} vanished while the index was being updated; search again")
            out += [np.frombuffer(rows[i], np.float32) for i in chunk]
        return np.stack(out) if out else np.empty((0, 0), np.float32)

    def counts(self) -> tuple[int, int]:
        persons = self.db.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
        faces = self.db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        return int(persons), int(faces)

    _FACE_COLUMNS = ("f.id, p.name, f.image_sha256, f.source, f.box, f.det_score, f.face_px, f.sharpness, "
                     "f.detector, f.created, c.face_id IS NOT NULL")
    _FACE_FROM = "faces f JOIN persons p ON p.id = f.person_id LEFT JOIN crops c ON c.face_id = f.id"

    @staticmethod
    def _record(row: tuple) -> FaceRecord:
        return FaceRecord(int(row[0]), row[1], row[2], row[3], tuple(json.loads(row[4])), float(row[5]),
                          float(row[6]), float(row[7]), row[8], float(row[9]), bool(row[10]))

    def find_faces(self, image_sha256: str) -> list[FaceRecord]:
        rows = self.db.execute(f"SELECT {self._FACE_COLUMNS} FROM {self._FACE_FROM} WHERE f.image_sha256 = ?",
                               (image_sha256,)).fetchall()
        return [self._record(r) for r in rows]

    def persons(self) -> list[PersonSummary]:
        rows = self.db.execute(
            "SELECT p.name, COUNT(f.id), p.created, p.updated FROM persons p LEFT JOIN faces f ON f.person_id = p.id "
            "GROUP BY p.id ORDER BY p.name").fetchall()
        return [PersonSummary(r[0], int(r[1]), float(r[2]), float(r[3])) for r in rows]

    def faces(self, person: str | None = None) -> list[FaceRecord]:
        if person is None:
            rows = self.db.execute(f"SELECT {self._FACE_COLUMNS} FROM {self._FACE_FROM} ORDER BY f.id").fetchall()
            return [self._record(r) for r in rows]
        self._person_id(person)
        rows = self.db.execute(f"SELECT {self._FACE_COLUMNS} FROM {self._FACE_FROM} WHERE p.name = ? ORDER BY f.id",
                               (person,)).fetchall()
        return [self._record(r) for r in rows]

    def _person_id(self, name: str) -> int:
        row = self.db.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UnknownPersonError(f"no person named {name!r} in the gallery {self.location}")
        return int(row[0])

    def vectors(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        rows = self.db.execute("SELECT f.id, p.name, f.embedding FROM faces f JOIN persons p ON p.id = f.person_id "
                               "ORDER BY f.id").fetchall()
        if not rows:
            return np.empty(0, np.int64), [], np.empty((0, 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        emb = np.stack([np.frombuffer(r[2], np.float32) for r in rows])
        return ids, [r[1] for r in rows], emb

    def crops(self) -> Iterator[StoredCrop]:
        rows = self.db.execute("SELECT f.id, c.jpeg, c.geometry FROM faces f LEFT JOIN crops c ON c.face_id = f.id "
                               "ORDER BY f.id").fetchall()
        for fid, jpeg, geometry in rows:
            yield stored_crop(int(fid), jpeg, geometry)

    # -- writing -----------------------------------------------------------------------------------
    def _bind_contract(self, contract_json: str, contract_id: str) -> None:
        current = self.contract_json()
        if current is None:
            self.db.execute("INSERT INTO meta VALUES ('contract', ?)", (contract_json,))
            return
        current_id = json.loads(current)["id"]
        if current_id != contract_id:
            raise ContractMismatchError(
                f"{self.location} holds embeddings of model {current_id}, not {contract_id}; use that model, "
                f"or re-embed the gallery first: facefit gallery reembed --model MODEL")

    def add_faces(self, person: str, faces: Sequence[NewFace], contract_json: str, contract_id: str) -> AddOutcome:
        name = check_name(person)
        outcome = AddOutcome()
        now = time.time()
        with self._write():
            self._bind_contract(contract_json, contract_id)
            row = self.db.execute("SELECT id FROM persons WHERE name = ?", (name,)).fetchone()
            pid = int(row[0]) if row else None
            for face in faces:
                # Checked inside the write lock so two processes adding the same photo store it once.
                dup = next((f for f in self.find_faces(face.image_sha256) if same_face(f.box, face.box)), None)
                if dup is not None:
                    outcome.duplicates.append((face, dup.person, dup.id))
                    continue
                if pid is None:
                    pid = int(self.db.execute("INSERT INTO persons (name, created, updated) VALUES (?, ?, ?)",
                                              (name, now, now)).lastrowid)
                vec = np.ascontiguousarray(face.embedding, np.float32).reshape(-1)
                fid = int(self.db.execute(
                    "INSERT INTO faces (person_id, image_sha256, source, box, det_score, face_px, sharpness, "
                    "detector, created, contract_id, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (pid, face.image_sha256, face.source, json.dumps([round(float(v), 2) for v in face.box]),
                     float(face.det_score), float(face.face_px), float(face.sharpness), face.detector, now,
                     contract_id, vec.tobytes())).lastrowid)
                if face.crop_jpeg is not None:
                    self.db.execute("INSERT INTO crops VALUES (?, ?, ?)", (fid, face.crop_jpeg, crop_geometry(face)))
                outcome.added.append(fid)
            if outcome.added:
                self.db.execute("UPDATE persons SET updated = ? WHERE id = ?", (now, pid))
                self._bump()
        return outcome

    def rename(self, old: str, new: str) -> None:
        new = check_name(new)
        with self._write():
            pid = self._person_id(old)
            if self.db.execute("SELECT 1 FROM persons WHERE name = ?", (new,)).fetchone():
                raise GalleryError(f"there is already a person named {new!r}; remove or rename them first")
            self.db.execute("UPDATE persons SET name = ?, updated = ? WHERE id = ?", (new, time.time(), pid))
            self._bump()

    def remove_person(self, name: str) -> int:
        with self._write():
            pid = self._person_id(name)
            n = self.db.execute("SELECT COUNT(*) FROM faces WHERE person_id = ?", (pid,)).fetchone()[0]
            self.db.execute("DELETE FROM persons WHERE id = ?", (pid,))  # faces and crops cascade
            self._bump()
        self._forget()
        return int(n)

    def remove_face(self, face_id: int) -> str:
        with self._write():
            row = self.db.execute("SELECT p.id, p.name FROM faces f JOIN persons p ON p.id = f.person_id "
                                  "WHERE f.id = ?", (int(face_id),)).fetchone()
            if row is None:
                raise GalleryError(f"no face with id {face_id} in the gallery {self.location}")
            self.db.execute("DELETE FROM faces WHERE id = ?", (int(face_id),))
            if not self.db.execute("SELECT 1 FROM faces WHERE person_id = ?", (row[0],)).fetchone():
                self.db.execute("DELETE FROM persons WHERE id = ?", (row[0],))
            self._bump()
        self._forget()
        return str(row[1])

    def _forget(self) -> None:
        # Copy the WAL back and truncate it so the deleted bytes do not linger in the log file.
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def replace_embeddings(self, contract_json: str, contract_id: str, ids: np.ndarray,
                           embeddings: np.ndarray) -> None:
        dim = json.loads(contract_json).get("embedding_dim")
        if dim is not None and len(ids) and np.asarray(embeddings).shape[1:] != (dim,):
            raise GalleryError(f"embeddings of shape {np.asarray(embeddings).shape} do not fit the model's {dim} "
                               f"dimensions")
        with self._write():
            stored = {int(r[0]) for r in self.db.execute("SELECT id FROM faces")}
            given = {int(i) for i in ids}
            if stored != given:
                raise GalleryError(f"{self.location} changed during re-embedding ({len(stored ^ given)} faces "
                                   f"differ); run it again")
            self.db.executemany("UPDATE faces SET embedding = ?, contract_id = ? WHERE id = ?",
                                ((np.ascontiguousarray(e, np.float32).tobytes(), contract_id, int(i))
                                 for i, e in zip(ids, embeddings)))
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('contract', ?)", (contract_json,))
            self._bump()
            self.db.execute("INSERT OR REPLACE INTO meta SELECT 'vectors_revision', value FROM meta "
                            "WHERE key = 'revision'")
