"""The default gallery store: one SQLite file in WAL mode, every change one transaction.

Concurrent writers (several ``facefit gallery add`` at once) serialise on
SQLite's write lock (``BEGIN IMMEDIATE`` with a generous busy timeout), and a
process killed mid-transaction leaves the file as it was before it. Deleted
faces are overwritten on disk (``secure_delete``): removal is meant to forget.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from facefit.gallery.records import Box, NewFace
from facefit.gallery.sql import SqlStore, contract_geometry
from facefit.gallery.store import ContractMismatchError, GalleryError, crop_geometry
from facefit.io.wal import use_wal

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE facefit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE facefit_persons (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE facefit_faces (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES facefit_persons(id) ON DELETE CASCADE,
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
    CREATE INDEX facefit_faces_person ON facefit_faces(person_id);
    CREATE INDEX facefit_faces_image ON facefit_faces(image_sha256);
    CREATE TABLE facefit_crops (
        face_id INTEGER PRIMARY KEY REFERENCES facefit_faces(id) ON DELETE CASCADE,
        jpeg BLOB NOT NULL,
        geometry TEXT NOT NULL
    );
    INSERT INTO facefit_meta VALUES ('revision', '0');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
BUSY_TIMEOUT_S = 60.0


def _check_folder(path: Path) -> None:
    """A gallery's folder must accept new files (the database, its WAL): refuse it in one line if not."""
    from facefit.errors import UsageError
    from facefit.io.files import check_folder_writable

    try:
        check_folder_writable(path.parent, path)
    except UsageError as exc:
        raise GalleryError(str(exc)) from None


class SQLiteStore(SqlStore):
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
            _check_folder(self.path)
        elif self.path.is_dir():
            raise GalleryError(f"{self.path}: is a folder; a SQLite gallery is a file")
        try:
            self.db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            use_wal(self.db, BUSY_TIMEOUT_S)
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA secure_delete=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                _check_folder(self.path)  # WAL mode writes beside the file, even to read
            raise GalleryError(f"{self.path}: not a facefit gallery ({exc})") from None

    # -- schema ------------------------------------------------------------------------------------
    def _version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise GalleryError(f"{self.path}: gallery schema {version} is newer than this facefit understands "
                               f"({SCHEMA_VERSION}); upgrade facefit")
        if version == SCHEMA_VERSION:
            return
        if version == 0 and self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table'").fetchone() \
                and self._version() == 0:
            raise GalleryError(f"{self.path}: an SQLite file that is not a facefit gallery")
        with self._write():
            version = self._version()  # re-read under the lock: another process may have migrated meanwhile
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={step + 1}")

    # -- the dialect -------------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self.db.execute(sql, params).fetchall()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.db.execute(sql, params)

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

    def _box(self, value: Any) -> Box:
        return tuple(json.loads(value))

    def _bind_contract(self, contract_json: str, contract_id: str) -> None:
        current = self.contract_json()
        if current is None:
            self._exec("INSERT INTO facefit_meta VALUES ('contract', ?)", (contract_json,))
            return
        current_id = json.loads(current)["id"]
        if current_id != contract_id:
            raise ContractMismatchError(
                f"{self.location} holds embeddings of model {current_id}, not {contract_id}; use that model, "
                f"or re-embed the gallery first: facefit gallery reembed --model MODEL")

    def _insert_face(self, pid: int, face: NewFace, contract_id: str, now: float, bound: Any) -> int:
        vec = np.ascontiguousarray(face.embedding, np.float32).reshape(-1)
        fid = int(self._exec(
            "INSERT INTO facefit_faces (person_id, image_sha256, source, box, det_score, face_px, sharpness, "
            "detector, created, contract_id, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (pid, face.image_sha256, face.source, json.dumps([round(float(v), 2) for v in face.box]),
             float(face.det_score), float(face.face_px), float(face.sharpness), face.detector,
             now if face.created is None else face.created, contract_id, vec.tobytes())).lastrowid)
        if face.crop_jpeg is not None:
            self._exec("INSERT INTO facefit_crops VALUES (?, ?, ?)", (fid, face.crop_jpeg, crop_geometry(face)))
        return fid

    def _forget(self) -> None:
        # Copy the WAL back and truncate it so the deleted bytes do not linger in the log file. The
        # checkpoint waits (busy timeout) for other processes' reads; one still reading keeps the old pages.
        busy = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            raise GalleryError(f"{self.path}: removed, but another process kept reading the gallery, so the "
                               f"removed bytes remain in {self.path.name}-wal until the last process using "
                               f"the gallery closes it")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def replace_embeddings(self, contract_json: str, contract_id: str, ids: np.ndarray,
                           embeddings: np.ndarray) -> None:
        dim, _ = contract_geometry(contract_json)
        if dim is not None and len(ids) and np.asarray(embeddings).shape[1:] != (dim,):
            raise GalleryError(f"embeddings of shape {np.asarray(embeddings).shape} do not fit the model's {dim} "
                               f"dimensions")
        with self._write():
            self._check_same_faces(ids)
            self.db.executemany("UPDATE facefit_faces SET embedding = ?, contract_id = ? WHERE id = ?",
                                ((np.ascontiguousarray(e, np.float32).tobytes(), contract_id, int(i))
                                 for i, e in zip(ids, embeddings)))
            self._mark_reembedded(contract_json)
