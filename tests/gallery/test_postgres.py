"""The PostgreSQL + pgvector gallery store, against a real server (pgserver bundles PostgreSQL with pgvector)."""

from __future__ import annotations

import json
import multiprocessing as mp
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pgserver = pytest.importorskip("pgserver", reason="pgserver is not installed (pip install 'facefit[postgres]')")
psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'facefit[postgres]')")
pytest.importorskip("pgvector", reason="pgvector is not installed (pip install 'facefit[postgres]')")

from facefit.gallery.postgres import PgVectorStore, redact  # noqa: E402
from facefit.gallery.records import NewFace  # noqa: E402
from facefit.gallery.store import (  # noqa: E402
    ContractMismatchError,
    GalleryError,
    GalleryStore,
    NativeSearch,
    UnknownPersonError,
)

FAKE_JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake\xff\xd9"
DIM = 16


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory):
    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def uri(pg_server) -> str:
    """A fresh, empty database per test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.get_uri(name)


@pytest.fixture
def store(uri: str):
    with PgVectorStore(uri) as s:
        yield s


def make_contract(dim: int = DIM, distance: str = "euclidean"):
    from facefit.models.dlib_resnet import DLIB_RESNET_CONTRACT

    return replace(DLIB_RESNET_CONTRACT, embedding_dim=dim, distance=distance, name=f"test-{dim}-{distance}")


def new_face(rng: np.random.Generator, dim: int = DIM, *, sha: str | None = None,
             box: tuple[float, float, float, float] = (10.0, 12.0, 60.0, 70.0), crop: bool = True) -> NewFace:
    return NewFace(image_sha256=sha or rng.bytes(32).hex(), source=f"photo_{rng.integers(1 << 30)}.jpg", box=box,
                   embedding=rng.standard_normal(dim).astype(np.float32),
                   landmarks=(rng.random((5, 2)) * 50).astype(np.float32), crop_jpeg=FAKE_JPEG if crop else None,
                   crop_box=(5.0, 6.0, 55.0, 64.0), det_score=0.9, face_px=50.0, sharpness=120.0, detector="hog")


def add(store: PgVectorStore, person: str, faces: list[NewFace], contract=None):
    c = contract or make_contract()
    return store.add_faces(person, faces, c.to_json(), c.id)


def sql(uri: str, query: str) -> list[tuple]:
    with psycopg.connect(uri) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


# -- schema and connection -------------------------------------------------------------------------
def test_fresh_database_gets_a_versioned_prefixed_schema(uri: str, store: PgVectorStore) -> None:
    assert isinstance(store, GalleryStore) and isinstance(store, NativeSearch)
    assert store.contract_json() is None and store.revision() == 0 and store.counts() == (0, 0)
    meta = dict(sql(uri, "SELECT key, value FROM facefit_meta"))
    assert meta == {"schema_version": "1", "revision": "0"}
    tables = {r[0] for r in sql(uri, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
    assert tables == {"facefit_meta", "facefit_persons", "facefit_faces", "facefit_crops"}
    assert sql(uri, "SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    with PgVectorStore(uri) as again:  # reopening migrates nothing
        assert again.revision() == 0


def test_open_store_maps_urls_and_hides_passwords(uri: str) -> None:
    from facefit.gallery.location import open_store

    with pytest.raises(GalleryError, match="no gallery here"):
        PgVectorStore(uri, create=False)

    s = open_store(uri)
    try:
        assert isinstance(s, PgVectorStore)
    finally:
        s.close()
    assert redact("postgresql://bob:secret@db.example:5432/g") == "postgresql://bob:***@db.example:5432/g"
    assert redact(uri) == uri


def test_unreachable_server_is_a_gallery_error(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="cannot connect"):
        PgVectorStore(f"postgresql://postgres@/nothing?host={tmp_path}")


def test_bad_url_is_a_gallery_error() -> None:
    with pytest.raises(GalleryError, match="cannot connect"):
        PgVectorStore("postgresql://host:notaport/db")


def test_reconnects_after_the_connection_is_lost(uri: str, store: PgVectorStore) -> None:
    rng = np.random.default_rng(9)
    add(store, "Alice", [new_face(rng)])
    sql(uri, f"SELECT pg_terminate_backend({store.db.info.backend_pid})")
    assert store.revision() == 1  # a read finds the connection gone, opens a new one and asks again
    sql(uri, f"SELECT pg_terminate_backend({store.db.info.backend_pid})")
    d2, ids = store.search_faces(rng.standard_normal((1, DIM)), 1, normalized=False)  # vector type re-registered
    assert ids[0, 0] == store.faces()[0].id
    sql(uri, f"SELECT pg_terminate_backend({store.db.info.backend_pid})")
    with pytest.raises(GalleryError):  # a write is never repeated: it may have committed before the loss
        add(store, "Bob", [new_face(rng)])
    assert [p.name for p in store.persons()] == ["Alice"]  # ... and here it had not; the next call reconnects


def test_newer_schema_is_refused(uri: str, store: PgVectorStore) -> None:
    sql(uri, "UPDATE facefit_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(GalleryError, match="newer than this facefit"):
        PgVectorStore(uri)


# -- the same behaviour as SQLite ------------------------------------------------------------------
def test_add_read_and_revision(store: PgVectorStore) -> None:
    rng = np.random.default_rng(1)
    contract = make_contract()
    alice = [new_face(rng), new_face(rng, crop=False)]
    out = add(store, "  Alice ", alice, contract)
    assert len(out.added) == 2 and not out.duplicates
    assert store.revision() == 1 and store.contract_json() == contract.to_json()
    add(store, "Bob", [new_face(rng)], contract)
    assert store.revision() == 2 and store.counts() == (2, 3)

    assert [(p.name, p.n_faces) for p in store.persons()] == [("Alice", 2), ("Bob", 1)]
    faces = store.faces("Alice")
    assert [f.id for f in faces] == out.added and [f.has_crop for f in faces] == [True, False]
    assert faces[0].box == alice[0].box and faces[0].image_sha256 == alice[0].image_sha256
    assert store.find_faces(alice[1].image_sha256)[0].id == out.added[1]
    assert len(store.faces()) == 3
    with pytest.raises(UnknownPersonError):
        store.faces("Carol")

    ids, names, emb = store.vectors()
    assert names == ["Alice", "Alice", "Bob"] and ids.dtype == np.int64
    np.testing.assert_array_equal(emb[:2], np.stack([f.embedding for f in alice]))  # stored bit-exact
    crops = list(store.crops())
    assert crops[0].jpeg == FAKE_JPEG and crops[0].landmarks.shape == (5, 2) and crops[0].box == (5.0, 6.0, 55.0, 64.0)
    assert crops[1].jpeg is None


def test_duplicates_are_stored_once(store: PgVectorStore) -> None:
    rng = np.random.default_rng(2)
    first = new_face(rng)
    add(store, "Alice", [first])
    again = new_face(rng, sha=first.image_sha256, box=(11.0, 13.0, 61.0, 69.0))  # same photo, same face
    other = new_face(rng, sha=first.image_sha256, box=(200.0, 12.0, 250.0, 70.0))  # same photo, another face
    out = add(store, "Bob", [again, other])
    assert out.duplicates == [(again, "Alice", store.faces("Alice")[0].id)]
    assert len(out.added) == 1 and store.revision() == 2
    out = add(store, "Bob", [again])
    assert not out.added and store.revision() == 2  # nothing stored: no bump, no new person
    assert store.counts() == (2, 2)


def test_rename(store: PgVectorStore) -> None:
    rng = np.random.default_rng(3)
    add(store, "Alice", [new_face(rng)])
    add(store, "Bob", [new_face(rng)])
    store.rename("Alice", "Alicia")
    assert [p.name for p in store.persons()] == ["Alicia", "Bob"] and store.revision() == 3
    with pytest.raises(GalleryError, match="already a person named 'Bob'"):
        store.rename("Alicia", "Bob")
    with pytest.raises(UnknownPersonError):
        store.rename("Nobody", "Carol")
    with pytest.raises(GalleryError, match="cannot be empty"):
        store.rename("Bob", "  ")
    assert store.revision() == 3


def test_remove_cascades_to_faces_and_crops(uri: str, store: PgVectorStore) -> None:
    rng = np.random.default_rng(4)
    add(store, "Alice", [new_face(rng) for _ in range(3)])
    bob = add(store, "Bob", [new_face(rng) for _ in range(2)])
    assert store.remove_person("Alice") == 3
    assert sql(uri, "SELECT COUNT(*) FROM facefit_crops")[0][0] == 2
    assert store.counts() == (1, 2) and store.revision() == 3
    with pytest.raises(UnknownPersonError):
        store.remove_person("Alice")

    assert store.remove_face(bob.added[0]) == "Bob"
    assert store.counts() == (1, 1)
    assert store.remove_face(bob.added[1]) == "Bob"  # the last face takes the person with it
    assert store.counts() == (0, 0) and sql(uri, "SELECT COUNT(*) FROM facefit_crops")[0][0] == 0
    with pytest.raises(GalleryError, match="no face with id"):
        store.remove_face(bob.added[0])
    assert store.revision() == 5


def test_other_contract_is_refused_and_nothing_changes(store: PgVectorStore) -> None:
    rng = np.random.default_rng(5)
    add(store, "Alice", [new_face(rng)])
    with pytest.raises(ContractMismatchError, match="reembed"):
        add(store, "Bob", [new_face(rng, 24)], make_contract(24))
    with pytest.raises(GalleryError, match="embedding has 24 values"):
        add(store, "Bob", [new_face(rng), new_face(rng, 24)])  # the first face is rolled back too
    assert store.counts() == (1, 1) and store.revision() == 1


def test_replace_embeddings_is_all_or_nothing(uri: str, store: PgVectorStore) -> None:
    rng = np.random.default_rng(6)
    add(store, "Alice", [new_face(rng) for _ in range(3)])
    add(store, "Bob", [new_face(rng) for _ in range(2)])
    ids, _, before = store.vectors()
    cosine = make_contract(24, "cosine")
    new = rng.standard_normal((len(ids), 24)).astype(np.float32)

    with pytest.raises(GalleryError, match="changed during re-embedding"):
        store.replace_embeddings(cosine.to_json(), cosine.id, ids[:-1], new[:-1])
    assert store.revision() == 2 and store.contract_json() == make_contract().to_json()
    np.testing.assert_array_equal(store.vectors()[2], before)

    store.replace_embeddings(cosine.to_json(), cosine.id, ids, new)
    assert store.revision() == 3 and store.contract_json() == cosine.to_json()
    np.testing.assert_array_equal(store.vectors()[2], new)
    (indexdef,), = sql(uri, "SELECT indexdef FROM pg_indexes WHERE indexname = 'facefit_faces_vec'")
    assert "hnsw" in indexdef and "vector(24)" in indexdef
    # The search vectors follow the new metric: cosine ones are unit length.
    unit = new / np.linalg.norm(new, axis=1, keepdims=True)
    d2, fids = store.search_faces(unit[:2], 1, normalized=True)
    assert fids[:, 0].tolist() == ids[:2].tolist() and np.all(d2 < 1e-5)
    with pytest.raises(GalleryError, match="cosine"):
        store.search_faces(unit[:2], 1, normalized=False)
    with pytest.raises(ContractMismatchError):
        add(store, "Carol", [new_face(rng)])


# -- native search ---------------------------------------------------------------------------------
def test_search_faces_matches_brute_force(store: PgVectorStore) -> None:
    rng = np.random.default_rng(7)
    dim, n = 32, 400
    empty_d2, empty_ids = store.search_faces(rng.standard_normal((2, dim)), 3, normalized=False)
    assert np.all(empty_ids == -1) and np.all(np.isinf(empty_d2))

    faces = [new_face(rng, dim) for _ in range(n)]
    contract = make_contract(dim)
    for start in range(0, n, 100):
        add(store, f"p{start}", faces[start:start + 100], contract)
    ids, _, emb = store.vectors()
    queries = np.concatenate([emb[:50] + 0.05 * rng.standard_normal((50, dim)), rng.standard_normal((50, dim))])
    queries = queries.astype(np.float32)
    ref = ((queries[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    order = np.argsort(ref, axis=1)

    # Force the HNSW index even on a table this small, so the approximate path is what is tested.
    store.db.execute("SET enable_seqscan = off")
    d2, fids = store.search_faces(queries, 10, normalized=False)
    assert d2.dtype == np.float32 and fids.dtype == np.int64 and d2.shape == (100, 10)
    assert np.mean(fids[:, 0] == ids[order[:, 0]]) == 1.0  # recall@1
    recall10 = np.mean([len(set(f) & set(ids[o[:10]])) / 10 for f, o in zip(fids, order)])
    assert recall10 >= 0.95
    np.testing.assert_allclose(d2[:, 0], ref[np.arange(100), order[:, 0]], rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(d2, axis=1) >= 0)

    # More than the HNSW cap: an exact scan, padded past the end.
    d2, fids = store.search_faces(queries[:3], 1200, normalized=False)
    assert np.all(fids[:, :n] >= 0) and np.all(fids[:, n:] == -1) and np.all(np.isinf(d2[:, n:]))
    np.testing.assert_array_equal(fids[:, :5], ids[order[:3, :5]])

    with pytest.raises(GalleryError, match="euclidean"):
        store.search_faces(queries, 1, normalized=True)
    with pytest.raises(GalleryError, match="32-D"):
        store.search_faces(queries[:, :8], 1, normalized=False)


def test_native_person_index_via_search(store: PgVectorStore) -> None:
    from facefit.gallery.search import SearchSettings, open_person_index

    rng = np.random.default_rng(8)
    contract = make_contract(distance="cosine")
    alice, bob = [new_face(rng) for _ in range(3)], [new_face(rng) for _ in range(3)]
    add(store, "Alice", alice, contract)
    add(store, "Bob", bob, contract)
    index = open_person_index(store, contract.id, "cosine", SearchSettings())
    probes = np.stack([alice[0].embedding * 3.0, bob[2].embedding + 0.01])  # cosine ignores the scale
    answers = index.identify(probes, threshold=0.05)
    assert [a.name for a in answers] == ["Alice", "Bob"]
    assert answers[0].distance < 1e-5


# -- several writers -------------------------------------------------------------------------------
def _writer(uri: str, contract_json: str, contract_id: str, seed: int, shared: list[str], start) -> int:
    rng = np.random.default_rng(seed)
    start.wait(60)
    with PgVectorStore(uri) as store:  # both open the fresh database at once: the migration races too
        start.wait(60)
        added = 0
        for i in range(50):
            faces = [new_face(rng)]
            if i < len(shared):  # the same photo from both writers at once: only one may store it
                faces.append(new_face(rng, sha=shared[i]))
            added += len(store.add_faces(f"w{seed}", faces, contract_json, contract_id).added)
        return added


def test_two_processes_add_concurrently(uri: str) -> None:
    contract = make_contract()
    shared = [uuid.uuid4().hex for _ in range(10)]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(2) as pool:
        start = manager.Barrier(2)
        jobs = [pool.apply_async(_writer, (uri, contract.to_json(), contract.id, seed, shared, start))
                for seed in (1, 2)]
        added = [job.get(timeout=120) for job in jobs]
    assert sum(added) == 110  # 50 own faces each, and each shared photo once
    with PgVectorStore(uri) as store:
        assert store.counts() == (2, 110)
        assert sorted(p.n_faces for p in store.persons()) == sorted(added)
        for sha in shared:
            assert len(store.find_faces(sha)) == 1
        assert store.revision() == 100  # one bump per transaction


# -- end to end with real faces --------------------------------------------------------------------
def test_gallery_identifies_real_faces(uri: str, data_root: Path, model) -> None:
    from facefit.engine import FaceEngine
    from facefit.gallery.gallery import Gallery

    lfw = data_root / "lfw" / "images"
    persons = ["George_W_Bush", "Colin_Powell", "Tony_Blair"]
    probes = []
    with Gallery(PgVectorStore(uri)) as gallery:
        for name in persons:
            photos = sorted((lfw / name).glob("*.jpg"))
            report = gallery.add(name, photos[:3], model)
            assert len(report.added) == 3, report.failures
            probes.append(photos[3])
        assert gallery.add(persons[0], [sorted((lfw / persons[0]).glob("*.jpg"))[0]], model).duplicates
        strangers = [sorted((lfw / p).glob("*.jpg"))[0] for p in ("Aaron_Eckhart", "Abel_Pacheco", "Adrien_Brody")]

        emb = FaceEngine(model, faces="largest").embed_files(probes + strangers).embeddings
        assert len(emb) == 6
        answers = gallery.identify(emb, model)
        assert [a.name for a in answers[:3]] == persons
        assert sum(a.name is None for a in answers[3:]) >= 2
        assert answers[0].matches[0].face_id in {f.id for f in gallery.faces(persons[0])}


def test_cli_enrols_and_identifies_through_a_postgresql_url(uri: str, lfw_people) -> None:
    from tests.gallery.conftest import run_cli as run

    env = {"FACEFIT_GALLERY": uri}
    blair, powell = lfw_people["Tony_Blair"], lfw_people["Colin_Powell"]
    assert run("gallery", "add", "Tony Blair", *blair[:2], env=env).returncode == 0
    assert run("gallery", "add", "Colin Powell", *powell[:2], env=env).returncode == 0
    proc = run("identify", "--json", blair[6], powell[6], env=env)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["name"] for line in proc.stdout.splitlines()] == ["Tony Blair", "Colin Powell"]
