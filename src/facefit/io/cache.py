"""The face cache: detections and embeddings keyed by image content (evaluation and training).

Detections (box + 5 landmarks) are keyed by the image's sha256 and the detector
settings, not by the alignment recipe: chips for any recipe are cut from the
cached landmarks. Embeddings are keyed by image sha256 and a string naming the
model contract and how the chip was made. One SQLite file (WAL mode) holds both,
so concurrent evaluations and a killed run never corrupt it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facefit.errors import FacefitError, UsageError
from facefit.io.wal import use_wal

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CachedDetection:
    status: str  # "face" or "none"
    box: tuple[float, float, float, float] | None
    landmarks: np.ndarray | None  # (5, 2) float32
    score: float
    detector: str
    n_faces: int
    size: tuple[int, int]  # (height, width) of the upright image


class EvalCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a folder; the face cache is one SQLite file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=60)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"{self.path}: cannot open the face cache: {getattr(exc, 'strerror', None) or exc}") \
                from None
        try:
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise FacefitError(f"{self.path}: not a facefit face cache ({exc}); give another --cache file, or "
                               f"delete this one if it is facefit's (it only holds what can be recomputed)") from None

    def _init_schema(self) -> None:
        use_wal(self.db, 60)
        self.db.execute("PRAGMA synchronous=NORMAL")
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            # Insert-or-keep, then read: a check-then-insert lets two first openers both insert.
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if int(row[0]) != SCHEMA_VERSION:
                raise FacefitError(f"{self.path}: cache schema {row[0]}, expected {SCHEMA_VERSION}; delete the file")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS detections (sha TEXT, det_key TEXT, status TEXT, box TEXT, "
                "landmarks BLOB, score REAL, detector TEXT, n_faces INTEGER, height INTEGER, width INTEGER, "
                "PRIMARY KEY (sha, det_key))")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (sha TEXT, emb_key TEXT, vector BLOB, "
                "PRIMARY KEY (sha, emb_key))")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> EvalCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_detections(self, shas: Sequence[str], det_key: str) -> dict[str, CachedDetection]:
        out: dict[str, CachedDetection] = {}
        for chunk in _chunks(list(dict.fromkeys(shas)), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT sha, status, box, landmarks, score, detector, n_faces, height, width FROM detections "
                f"WHERE det_key=? AND sha IN ({marks})", (det_key, *chunk))
            for sha, status, box, lm, score, det, n, h, w in rows:
                out[sha] = CachedDetection(
                    status, tuple(json.loads(box)) if box else None,
                    np.frombuffer(lm, np.float32).reshape(5, 2).copy() if lm else None, score, det, n, (h, w))
        return out

    def put_detections(self, det_key: str, items: Iterable[tuple[str, CachedDetection]]) -> None:
        rows = [(sha, det_key, d.status, json.dumps(list(d.box)) if d.box else None,
                 np.asarray(d.landmarks, np.float32).tobytes() if d.landmarks is not None else None,
                 d.score, d.detector, d.n_faces, d.size[0], d.size[1]) for sha, d in items]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO detections VALUES (?,?,?,?,?,?,?,?,?,?)", rows)

    def get_embeddings(self, shas: Sequence[str], emb_key: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for chunk in _chunks(list(dict.fromkeys(shas)), 500):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT sha, vector FROM embeddings WHERE emb_key=? AND sha IN ({marks})",
                                   (emb_key, *chunk))
            for sha, blob in rows:
                out[sha] = np.frombuffer(blob, np.float32).copy()
        return out

    def put_embeddings(self, emb_key: str, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(sha, emb_key, np.asarray(v, np.float32).tobytes()) for sha, v in items]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?,?,?)", rows)


def _chunks(seq: list, n: int) -> Iterable[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
