"""Issue 15.1: removing a person erases them from every file facefit writes for the gallery.

Real LFW faces are enrolled, searched once (so the cached search index ``GALLERY.index.npz`` exists),
and one person is removed through the library, the CLI and the REST API. Then every file in the
gallery's folder (database, WAL, shared memory, index cache, temporaries) is scanned for that person's
raw embeddings, the bytes of their stored crops, their name and their photos' file names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tests.reliability.cli_run import cli

from facefit.gallery.gallery import Gallery
from facefit.gallery.search import SearchSettings

GONE = "Erase Me Powell"
KEPT = {"Kept Blair": "Tony_Blair", "Kept Bush": "George_W_Bush"}


@dataclass
class Traces:
    """What must not be found on disk once ``GONE`` is removed."""

    embeddings: list[bytes]
    crops: list[bytes]
    texts: list[bytes]

    def found_in(self, folder: Path) -> list[str]:
        hits = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            for i, e in enumerate(self.embeddings):
                if e in data or e[192:256] in data:  # whole, or a 64-byte piece of it
                    hits.append(f"{path.name}: embedding {i}")
            for i, c in enumerate(self.crops):
                if c[len(c) // 2: len(c) // 2 + 64] in data:
                    hits.append(f"{path.name}: crop {i}")
            hits += [f"{path.name}: {t.decode()!r}" for t in self.texts if t in data]
        return hits


def _photos(lfw: Path, folder: str, n: int = 2) -> list[Path]:
    return sorted((lfw / folder).glob("*.jpg"))[:n]


def _enrol(gallery_path: Path, lfw: Path, model, settings: SearchSettings | None = None) -> Traces:
    """Enrol three LFW persons, search once (writing the index cache) and note what GONE left behind."""
    with Gallery.open(gallery_path, settings=settings) as g:
        report = g.add(GONE, _photos(lfw, "Colin_Powell"), model)
        assert len(report.added) == 2, report.failures
        for name, folder in KEPT.items():
            assert g.add(name, _photos(lfw, folder), model).added
        probe = model.embed_faces(_faces(_photos(lfw, "Colin_Powell", 3)[-1:], model))
        assert g.identify(probe, model)[0].name == GONE
        ids, names, emb = g.store.vectors()
        mine = {int(i) for i, n in zip(ids, names) if n == GONE}
        crops = [c.jpeg for c in g.store.crops() if c.face_id in mine and c.jpeg]
        sources = [f.source for f in g.faces(GONE)]
    cache = Path(str(gallery_path) + ".index.npz")
    assert cache.exists()
    embeddings = [np.ascontiguousarray(e, np.float32).tobytes() for i, n, e in zip(ids, names, emb) if n == GONE]
    texts = [GONE.encode(), *(Path(s).name.encode() for s in sources)]
    traces = Traces(embeddings, crops, texts)
    assert len(traces.found_in(gallery_path.parent)) > 0  # the scan does see them while enrolled
    return traces


def _faces(paths: list[Path], model):
    from facefit import detect_and_align

    return [detect_and_align(p, recipe=model.contract.align, faces="largest")[0] for p in paths]


def _after_removal(gallery_path: Path, lfw: Path, model, remove: Callable[[], None]) -> None:
    traces = _enrol(gallery_path, lfw, model)
    remove()
    assert traces.found_in(gallery_path.parent) == []
    # Searching again works, answers without the removed person, and writes nothing of theirs back.
    with Gallery.open(gallery_path) as g:
        probe = model.embed_faces(_faces(_photos(lfw, "Colin_Powell", 3)[-1:], model))
        answer = g.identify(probe, model, top_k=5)[0]
        assert answer.name != GONE and GONE not in [m.name for m in answer.matches]
    assert Path(str(gallery_path) + ".index.npz").exists()
    assert traces.found_in(gallery_path.parent) == []


def test_library_remove_erases_every_file(tmp_path: Path, lfw: Path, model) -> None:
    path = tmp_path / "g.sqlite"

    def remove() -> None:
        with Gallery.open(path) as g:
            g.identify(model.embed_faces(_faces(_photos(lfw, "Tony_Blair", 3)[-1:], model)), model)  # index in memory
            assert g.remove(GONE) == 2

    _after_removal(path, lfw, model, remove)


def test_cli_remove_erases_every_file(tmp_path: Path, lfw: Path, model, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "g.sqlite"

    def remove() -> None:
        code, _, err = cli(["gallery", "remove", GONE, "--yes", "--gallery", path], capsys)
        assert code == 0, err

    _after_removal(path, lfw, model, remove)


def test_remove_face_erases_that_face(tmp_path: Path, lfw: Path, model) -> None:
    path = tmp_path / "g.sqlite"
    traces = _enrol(path, lfw, model)
    with Gallery.open(path) as g:
        first = g.faces(GONE)[0].id
        g.remove_face(first)
    # The face's embedding and crop are gone; the person (with their other face) stays.
    left = traces.found_in(tmp_path)
    assert not any("embedding 0" in h or "crop 0" in h for h in left), left


def test_rest_delete_erases_every_file(tmp_path: Path, lfw: Path, model) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facefit.serve.app import create_app
    from facefit.serve.settings import ServeSettings

    path = tmp_path / "g.sqlite"

    def remove() -> None:
        with TestClient(create_app(ServeSettings(gallery=str(path), model="dlib-resnet"))) as c:
            photo = ("p.jpg", _photos(lfw, "Colin_Powell", 3)[-1].read_bytes())
            assert c.post("/identify", files={"image": photo}).json()["faces"][0]["name"] == GONE
            r = c.delete(f"/persons/{GONE}")
            assert r.status_code == 200 and r.json()["removed_faces"] == 2

    _after_removal(path, lfw, model, remove)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_are_erased_too(tmp_path: Path, lfw: Path, model, kind: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """IVF deletes the removed vectors from its lists in place; an HNSW graph cannot, so it is rebuilt."""
    pytest.importorskip("faiss")
    import facefit.gallery.search as search

    path = tmp_path / "g.sqlite"
    settings = SearchSettings(index=kind)
    traces = _enrol(path, lfw, model, settings)
    with Gallery.open(path, settings=settings) as g:  # so that GONE's two faces are under a fifth of them
        for folder in ("Hans_Blix", "Jean_Chretien"):
            assert len(g.add(folder, _photos(lfw, folder, 4), model, face="largest").added) == 4
        g.index()
    builds = []
    real_build = search._build
    monkeypatch.setattr(search, "_build", lambda v, s: builds.append(len(v)) or real_build(v, s))
    with Gallery.open(path, settings=settings) as g:
        g.remove(GONE)
        assert g.index().index.kind == kind
    assert builds == ([] if kind == "ivf" else [12])  # hnsw: rebuilt over the 12 faces left
    assert traces.found_in(tmp_path) == []


def test_a_half_written_cache_is_erased_too(tmp_path: Path, lfw: Path, model) -> None:
    path = tmp_path / "g.sqlite"
    traces = _enrol(path, lfw, model)
    cache = Path(str(path) + ".index.npz")
    leftover = tmp_path / f".{cache.name}.x1y2z3.npz"  # what a process killed while saving leaves behind
    leftover.write_bytes(cache.read_bytes())
    with Gallery.open(path) as g:
        g.remove(GONE)
    assert not leftover.exists() and traces.found_in(tmp_path) == []


# -- PostgreSQL: removal leaves the rows in the files until VACUUM FULL, which --vacuum runs ------------------
@pytest.fixture(scope="module")
def pg_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL of a fresh database, the server's data folder) on a real PostgreSQL with pgvector."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver is not installed (pip install 'facefit[postgres]')")
    psycopg = pytest.importorskip("psycopg")
    pytest.importorskip("pgvector")
    data = tmp_path_factory.mktemp("pgdata")
    server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE erasure")
        yield server.get_uri("erasure"), data
    finally:
        server.cleanup()


def _pg_files(uri: str, data: Path) -> Path:
    """The folder of the database's table and index files, with everything written out to them."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # dirty pages to the files; files of rewritten tables are deleted
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    return data / "base" / str(oid)


def test_postgres_removal_with_vacuum_erases_the_table_files(pg_uri: tuple[str, Path], lfw: Path, model,
                                                             capsys: pytest.CaptureFixture) -> None:
    uri, data = pg_uri
    with Gallery.open(uri) as g:
        assert len(g.add(GONE, _photos(lfw, "Colin_Powell"), model).added) == 2
        assert g.add("Kept Blair", _photos(lfw, "Tony_Blair"), model).added
        ids, names, emb = g.store.vectors()
        mine = {int(i) for i, n in zip(ids, names) if n == GONE}
        traces = Traces([np.ascontiguousarray(e, np.float32).tobytes() for i, n, e in zip(ids, names, emb)
                         if n == GONE], [c.jpeg for c in g.store.crops() if c.face_id in mine and c.jpeg],
                        [GONE.encode()])
    files = _pg_files(uri, data)
    assert traces.found_in(files)  # the scan sees them while enrolled

    code, _, err = cli(["gallery", "remove", GONE, "--yes", "--gallery", uri], capsys)
    assert code == 0 and "VACUUM FULL" in err, err  # a plain removal says what erasure takes
    assert traces.found_in(_pg_files(uri, data))  # ... and why: the deleted rows are still in the files

    assert cli(["gallery", "add", GONE, *_photos(lfw, "Colin_Powell"), "--gallery", uri], capsys)[0] == 0
    code, _, err = cli(["gallery", "remove", GONE, "--yes", "--vacuum", "--gallery", uri], capsys)
    assert code == 0 and "rewrote" in err, err
    assert traces.found_in(_pg_files(uri, data)) == []
    with Gallery.open(uri) as g:
        assert [p.name for p in g.persons()] == ["Kept Blair"]


def test_the_index_cache_is_erased_even_when_the_wal_stays_busy(tmp_path: Path, lfw: Path, model,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from facefit.gallery.sqlite import SQLiteStore
    from facefit.gallery.store import GalleryError

    path = tmp_path / "g.sqlite"
    traces = _enrol(path, lfw, model)

    def busy(self: SQLiteStore) -> None:
        raise GalleryError("removed, but another process kept reading the gallery")

    monkeypatch.setattr(SQLiteStore, "_forget", busy)
    with Gallery.open(path) as g, pytest.raises(GalleryError, match="kept reading"):
        g.remove(GONE)
    # The WAL still holds the old pages (that is what the error says); the cache holds nothing of GONE.
    assert [h for h in traces.found_in(tmp_path) if not h.startswith("g.sqlite-wal")] == []
    with Gallery.open(path) as g:  # an unknown name changes nothing and erases nothing
        g.identify(model.embed_faces(_faces(_photos(lfw, "Tony_Blair", 3)[-1:], model)), model)
        with pytest.raises(GalleryError):
            g.remove("nobody")
    assert Path(str(path) + ".index.npz").exists()


def test_a_removal_through_the_store_alone_is_erased_by_the_next_search(tmp_path: Path, lfw: Path,
                                                                      model) -> None:
    path = tmp_path / "g.sqlite"
    traces = _enrol(path, lfw, model)
    with Gallery.open(path) as g:
        g.store.remove_face(g.faces(GONE)[0].id)  # below Gallery: nothing erased the cache yet
        probe = model.embed_faces(_faces(_photos(lfw, "Tony_Blair", 3)[-1:], model))
        assert g.identify(probe, model)[0].name == "Kept Blair"
    assert Path(str(path) + ".index.npz").exists()
    # The next search rebuilt the index without that face (one face of six was once only masked, its
    # vector kept in the index and its cache) and overwrote the old cache.
    left = traces.found_in(tmp_path)
    assert not any("embedding 0" in h or "crop 0" in h for h in left), left
