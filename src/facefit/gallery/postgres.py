"""A gallery in PostgreSQL with pgvector, so several recognition servers can share one.

Same semantics as the SQLite store: one contract per gallery, every change one
transaction that bumps ``revision``, duplicates refused inside the transaction.
Writers serialise on a transaction-scoped advisory lock (the equivalent of
SQLite's ``BEGIN IMMEDIATE``); readers do not wait for them, except while
``replace_embeddings`` swaps the vector index. Tables are prefixed
``facefit_`` and live in the connection's current schema, so the gallery can
share a database with other data.

Each face keeps its raw embedding (float32 bytes, exact) and its *search vector*
(``search.search_vectors``: raw for ``euclidean``, L2-normalised for ``cosine``)
in an untyped ``vector`` column. The HNSW index is an expression index on
``vec::vector(D)``, built when the gallery is bound to its first contract and
rebuilt by ``replace_embeddings``, so a change of dimension needs no column DDL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from facefit.errors import FacefitError
from facefit.gallery.records import Box, NewFace
from facefit.gallery.search import search_vectors
from facefit.gallery.sql import SqlStore
from facefit.gallery.store import ContractMismatchError, GalleryError, crop_geometry

T = TypeVar("T")

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE facefit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE facefit_persons (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE facefit_faces (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        person_id BIGINT NOT NULL REFERENCES facefit_persons(id) ON DELETE CASCADE,
        image_sha256 TEXT NOT NULL,
        source TEXT NOT NULL,
        box DOUBLE PRECISION[] NOT NULL,
        det_score DOUBLE PRECISION NOT NULL,
        face_px DOUBLE PRECISION NOT NULL,
        sharpness DOUBLE PRECISION NOT NULL,
        detector TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        contract_id TEXT NOT NULL,
        embedding BYTEA NOT NULL,
        vec vector NOT NULL
    );
    CREATE INDEX facefit_faces_person ON facefit_faces(person_id);
    CREATE INDEX facefit_faces_image ON facefit_faces(image_sha256);
    CREATE TABLE facefit_crops (
        face_id BIGINT PRIMARY KEY REFERENCES facefit_faces(id) ON DELETE CASCADE,
        jpeg BYTEA NOT NULL,
        geometry TEXT NOT NULL
    );
    INSERT INTO facefit_meta VALUES ('schema_version', '0'), ('revision', '0');
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
VEC_INDEX = "facefit_faces_vec"
DEFAULT_EF_SEARCH = 100
MAX_EF_SEARCH = 1000  # pgvector's upper bound; an HNSW scan returns at most ef_search rows
CONNECT_TIMEOUT_S = 10
INSTALL_HINT = "the PostgreSQL backend needs: pip install 'facefit[postgres]'"


def _psycopg() -> ModuleType:
    try:
        import pgvector.psycopg  # noqa: F401  (checked here so a missing adapter fails at open, not mid-search)
        import psycopg
    except ImportError as exc:
        raise FacefitError(f"{INSTALL_HINT} ({exc})") from None
    return psycopg


def redact(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _geometry(contract_json: str) -> tuple[int, str]:
    """(embedding dimension, metric) of a contract."""
    data = json.loads(contract_json)
    return int(data["embedding_dim"]), str(data.get("distance", "euclidean"))



class PgVectorStore(SqlStore):
    """A gallery in a PostgreSQL database with the pgvector extension (tables created on first use)."""

    name_order = 'p.name COLLATE "C"'  # the byte order SQLite uses, whatever the database's locale

    def __init__(self, url: str, *, create: bool = True, ef_search: int = DEFAULT_EF_SEARCH) -> None:
        self.url = url
        self.location = redact(url)
        self.ef_search = int(ef_search)
        self._lock = threading.RLock()  # one connection: keep threads' transactions apart
        self._writing = 0  # depth of write transactions on this connection (reads there are not repeated)
        self._pg = _psycopg()
        self.db = self._connect()
        try:
            self._migrate(create)
            self._register_vector()
        except BaseException:
            self.db.close()
            raise

    # -- connection --------------------------------------------------------------------------------
    def _connect(self) -> Any:
        pg = self._pg
        try:
            given = pg.conninfo.conninfo_to_dict(self.url)
            extra = {"connect_timeout": CONNECT_TIMEOUT_S,  # libpq would otherwise wait forever
                     "application_name": "facefit"}
            db = pg.connect(self.url, autocommit=True, **{k: v for k, v in extra.items() if k not in given})
        except pg.Error as exc:
            raise GalleryError(f"{self.location}: cannot connect to PostgreSQL: {_why(exc)}") from None
        # The duplicate check must see rows committed by the previous lock holder.
        db.isolation_level = pg.IsolationLevel.READ_COMMITTED
        return db

    def _register_vector(self) -> None:
        from pgvector.psycopg import register_vector

        try:
            register_vector(self.db)
        except self._pg.Error as exc:
            raise GalleryError(f"{self.location}: the pgvector type 'vector' is not on the search_path "
                               f"({_why(exc)})") from None

    def _ensure_connected(self) -> None:
        # A server restart or network blip breaks the connection: reconnect on the next call.
        if self.db.broken:
            self.db = self._connect()
            self._register_vector()

    @contextmanager
    def _session(self) -> Iterator[None]:
        """Exclusive use of the connection; lost connections become GalleryErrors."""
        with self._lock:
            self._ensure_connected()
            try:
                yield
            except self._pg.OperationalError as exc:
                raise GalleryError(f"{self.location}: {_why(exc)}") from None

    @contextmanager
    def _write(self, *, migration: bool = False) -> Iterator[None]:
        """One write transaction, serialised with every other writer of this gallery (any process)."""
        # Writers lock per schema, so galleries in other schemas of the database do not wait for this one;
        # migrations lock the whole database, as CREATE EXTENSION is database-wide.
        key = "'facefit.migrate'" if migration else "'facefit.write:' || current_schema()"
        with self._session(), self.db.transaction():
            self.db.execute(f"SELECT pg_advisory_xact_lock(hashtextextended({key}, 0))")
            self._writing += 1
            try:
                yield
            finally:
                self._writing -= 1


    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return self._read(lambda: self.db.execute(sql.replace("?", "%s"), params).fetchall())

    def _read(self, query: Callable[[], T]) -> T:
        """Run a read; when the connection was lost under it, connect again and ask once more.

        Only outside a write transaction: a read inside one cannot be repeated on its own, and a write
        whose connection broke may or may not have committed, so it is reported, never repeated.
        """
        in_write = self._writing > 0
        try:
            with self._session():
                return query()
        except GalleryError:
            if in_write or not self.db.broken:
                raise
        with self._session():
            return query()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.db.execute(sql.replace("?", "%s"), params)

    # PostgreSQL keeps deleted rows (and their index entries) in its files until the space is reused.
    erased_on_removal = False

    def erase_removed(self) -> None:
        """Rewrite the gallery's tables and indexes without the removed rows (``VACUUM FULL``).

        The old files are deleted at the next checkpoint. Each table is locked while it is rewritten,
        so searches wait; at a million faces that takes minutes. Copies outside the tables (the WAL
        until it is recycled, archives, replicas, backups) are the database administrator's to handle.
        """
        with self._session():
            for table in ("facefit_crops", "facefit_faces", "facefit_persons"):
                self.db.execute(f"VACUUM FULL {table}")  # the connection is in autocommit, as VACUUM needs

    def _box(self, value: Any) -> Box:
        return tuple(float(v) for v in value)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PgVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------------------------
    def _version(self) -> int:
        if self._one("SELECT to_regclass('facefit_meta')")[0] is None:
            return 0
        row = self._one("SELECT value FROM facefit_meta WHERE key = 'schema_version'")
        return 0 if row is None else int(row[0])

    def _migrate(self, create: bool) -> None:
        version = self._version()
        if version == 0 and not create:
            raise GalleryError(f"{self.location}: no gallery here (add someone first: facefit gallery add NAME IMAGE)")
        if version > SCHEMA_VERSION:
            raise GalleryError(f"{self.location}: gallery schema {version} is newer than this facefit understands "
                               f"({SCHEMA_VERSION}); upgrade facefit")
        if version == SCHEMA_VERSION:
            return
        with self._write(migration=True):
            self._create_extension()
            version = self._version()  # re-read under the lock: another process may have migrated meanwhile
            for step in range(version, SCHEMA_VERSION):
                self.db.execute(MIGRATIONS[step])
            self.db.execute("UPDATE facefit_meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

    def _create_extension(self) -> None:
        if self.db.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
            return  # present: creating it again would need privileges we may not have
        try:
            with self.db.transaction():  # a savepoint, so the error message below is the one the user sees
                self.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except self._pg.Error as exc:
            raise GalleryError(f"{self.location}: cannot enable the pgvector extension ({_why(exc)}); install "
                               f"pgvector on the server, or have an administrator run CREATE EXTENSION vector "
                               f"in this database") from None

    def _build_index(self, dim: int) -> None:
        self.db.execute(f"DROP INDEX IF EXISTS {VEC_INDEX}")
        self.db.execute(f"CREATE INDEX {VEC_INDEX} ON facefit_faces USING hnsw ((vec::vector({dim})) vector_l2_ops)")


    # -- native search -----------------------------------------------------------------------------
    def search_faces(self, queries: np.ndarray, k: int, normalized: bool) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest faces of each search vector: (squared L2 float32, face ids int64), padded inf / -1."""
        q = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        k = int(k)
        d2 = np.full((len(q), max(k, 0)), np.inf, np.float32)
        ids = np.full((len(q), max(k, 0)), -1, np.int64)
        contract = self.contract_json()
        if contract is None or len(q) == 0 or k <= 0:
            return d2, ids
        dim, metric = _geometry(contract)
        if normalized != (metric == "cosine"):
            raise GalleryError(f"{self.location} stores {metric} search vectors; a "
                               f"{'cosine' if normalized else 'euclidean'} search cannot use them")
        if q.shape[1] != dim:
            raise GalleryError(f"queries have {q.shape[1]} values; the gallery {self.location} holds {dim}-D faces")
        # Only the indexed expression uses HNSW; past its ef_search cap the plain column gives an exact scan.
        vec = f"(f.vec::vector({dim}))" if k <= MAX_EF_SEARCH else "f.vec"
        sql = (f"SELECT q.i, n.id, n.d FROM unnest(%s::vector[]) WITH ORDINALITY AS q(v, i) CROSS JOIN LATERAL "
               f"(SELECT f.id, {vec} <-> q.v AS d FROM facefit_faces f ORDER BY {vec} <-> q.v LIMIT %s) n "
               f"ORDER BY q.i, n.d")
        ef = min(MAX_EF_SEARCH, max(k, self.ef_search))
        def search() -> list[tuple]:
            with self.db.transaction():
                self.db.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef),))
                return self.db.execute(sql, (list(q), k)).fetchall()

        rows = self._read(search)
        if rows:
            qi = np.fromiter((r[0] for r in rows), np.int64, len(rows)) - 1
            col = np.arange(len(qi)) - np.searchsorted(qi, qi)  # rank within each query's rows
            ids[qi, col] = [r[1] for r in rows]
            d = np.fromiter((r[2] for r in rows), np.float64, len(rows))
            d2[qi, col] = d * d  # pgvector's <-> is the L2 distance, callers want it squared
        return d2, ids


    # -- writing -----------------------------------------------------------------------------------
    def _bind_contract(self, contract_json: str, contract_id: str) -> tuple[int, str]:
        """Bind an unbound gallery to this contract, or check it is the bound one; (dim, metric) of the stored."""
        current = self.db.execute("SELECT value FROM facefit_meta WHERE key = 'contract'").fetchone()
        if current is None:
            self.db.execute("INSERT INTO facefit_meta VALUES ('contract', %s)", (contract_json,))
            dim, metric = _geometry(contract_json)
            self._build_index(dim)
            return dim, metric
        current_id = json.loads(current[0])["id"]
        if current_id != contract_id:
            raise ContractMismatchError(
                f"{self.location} holds embeddings of model {current_id}, not {contract_id}; use that model, "
                f"or re-embed the gallery first: facefit gallery reembed --model MODEL")
        return _geometry(current[0])


    def _insert_face(self, pid: int, face: NewFace, contract_id: str, now: float, bound: Any) -> int:
        dim, metric = bound
        emb = np.ascontiguousarray(face.embedding, np.float32).reshape(-1)
        if emb.size != dim:
            raise GalleryError(f"{face.source}: embedding has {emb.size} values; the gallery's model makes {dim}")
        fid = int(self.db.execute(
            "INSERT INTO facefit_faces (person_id, image_sha256, source, box, det_score, face_px, sharpness, "
            "detector, created, contract_id, embedding, vec) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (pid, face.image_sha256, face.source, [round(float(v), 2) for v in face.box],
             float(face.det_score), float(face.face_px), float(face.sharpness), face.detector,
             now if face.created is None else face.created, contract_id, emb.tobytes(),
             search_vectors(emb, metric)[0])).fetchone()[0])
        if face.crop_jpeg is not None:
            self.db.execute("INSERT INTO facefit_crops VALUES (%s, %s, %s)", (fid, face.crop_jpeg, crop_geometry(face)))
        return fid

    def replace_embeddings(self, contract_json: str, contract_id: str, ids: np.ndarray,
                           embeddings: np.ndarray) -> None:
        dim, metric = _geometry(contract_json)
        emb = np.asarray(embeddings, np.float32)
        if len(ids) != len(emb) or (len(emb) and (emb.ndim != 2 or emb.shape[1] != dim)):
            raise GalleryError(f"replace_embeddings: {len(ids)} ids and embeddings of shape {emb.shape}; "
                               f"the new model makes {dim}-D embeddings")
        vecs = search_vectors(emb, metric) if len(emb) else emb
        with self._write():
            self._check_same_faces(ids)
            # Drop the index first: one bulk build afterwards beats updating the graph row by row.
            self.db.execute(f"DROP INDEX IF EXISTS {VEC_INDEX}")
            with self.db.cursor() as cur:
                cur.executemany("UPDATE facefit_faces SET embedding = %s, vec = %s, contract_id = %s WHERE id = %s",
                                [(np.ascontiguousarray(e).tobytes(), v, contract_id, int(i))
                                 for i, e, v in zip(ids, emb, vecs)])
            self._build_index(dim)
            self._mark_reembedded(contract_json)


def _why(exc: BaseException) -> str:
    """The server's one-line message of a psycopg error."""
    diag = getattr(exc, "diag", None)
    return (getattr(diag, "message_primary", None) or str(exc)).strip().splitlines()[0]
