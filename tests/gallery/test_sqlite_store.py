"""The SQLite store: transactions, duplicates, contracts, migrations, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from tests.gallery.conftest import fake_face

from facefit.gallery.sqlite import SCHEMA_VERSION, SQLiteStore
from facefit.gallery.store import ContractMismatchError, GalleryError, UnknownPersonError

CONTRACT_A = json.dumps({"id": "toy:aaaa", "name": "toy"})
CONTRACT_B = json.dumps({"id": "toy:bbbb", "name": "toy"})


def add(store: SQLiteStore, person: str, faces, contract: str = CONTRACT_A):
    return store.add_faces(person, faces, contract, json.loads(contract)["id"])


def test_add_list_and_vectors_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = SQLiteStore(tmp_path / "g.sqlite")
    faces = [fake_face(rng) for _ in range(3)]
    outcome = add(store, "Ann", faces)
    add(store, "Bob", [fake_face(rng)])
    assert len(outcome.added) == 3 and not outcome.duplicates
    assert [(p.name, p.n_faces) for p in store.persons()] == [("Ann", 3), ("Bob", 1)]
    ids, names, emb = store.vectors()
    assert names == ["Ann", "Ann", "Ann", "Bob"]
    np.testing.assert_array_equal(emb[:3], np.stack([f.embedding for f in faces]))
    crops = list(store.crops())
    assert crops[0].jpeg == faces[0].crop_jpeg and crops[0].box == faces[0].crop_box
    np.testing.assert_allclose(crops[0].landmarks, faces[0].landmarks, atol=1e-3)
    assert store.counts() == (2, 4)


def test_duplicates_are_not_stored_twice(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = SQLiteStore(tmp_path / "g.sqlite")
    face = fake_face(rng, sha="abc")
    add(store, "Ann", [face])
    again = add(store, "Bob", [fake_face(rng, sha="abc", box=(12, 11, 61, 59))])  # same photo, same face
    other_face = add(store, "Bob", [fake_face(rng, sha="abc", box=(100, 10, 150, 60))])  # same photo, another face
    assert again.added == [] and again.duplicates[0][1] == "Ann"
    assert len(other_face.added) == 1
    assert store.counts() == (2, 2)


def test_contract_mismatch_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    store = SQLiteStore(tmp_path / "g.sqlite")
    add(store, "Ann", [fake_face(rng)])
    with pytest.raises(ContractMismatchError, match="reembed"):
        add(store, "Bob", [fake_face(rng)], CONTRACT_B)
    assert store.counts() == (1, 1)


def test_revision_bumps_and_edits(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    store = SQLiteStore(tmp_path / "g.sqlite")
    r0 = store.revision()
    add(store, "Ann", [fake_face(rng), fake_face(rng)])
    add(store, "Bob", [fake_face(rng)])
    r1 = store.revision()
    store.rename("Ann", "Anna")
    assert store.revision() == r1 + 1 > r0
    with pytest.raises(GalleryError, match="already a person"):
        store.rename("Anna", "Bob")
    with pytest.raises(UnknownPersonError):
        store.rename("Nobody", "X")
    fid = store.faces("Bob")[0].id
    assert store.remove_face(fid) == "Bob"
    assert [p.name for p in store.persons()] == ["Anna"]  # a person goes with their last face
    assert store.remove_person("Anna") == 2
    assert store.counts() == (0, 0)
    # Crops go with their faces: nothing of the removed persons is left in the file.
    assert store.db.execute("SELECT COUNT(*) FROM facefit_crops").fetchone()[0] == 0


def test_removed_bytes_do_not_linger_in_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = tmp_path / "g.sqlite"
    store = SQLiteStore(path)
    secret = fake_face(rng)
    secret.crop_jpeg = b"\xff\xd8" + b"SECRET-FACE-BYTES" * 20
    add(store, "Ann", [secret])
    add(store, "Bob", [fake_face(rng)])
    store.remove_person("Ann")
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"SECRET-FACE-BYTES" not in data


def test_replace_embeddings_is_all_or_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    store = SQLiteStore(tmp_path / "g.sqlite")
    add(store, "Ann", [fake_face(rng) for _ in range(3)])
    ids, _, before = store.vectors()
    with pytest.raises(GalleryError, match="changed"):
        store.replace_embeddings(CONTRACT_B, "toy:bbbb", ids[:2], np.zeros((2, 64), np.float32))
    np.testing.assert_array_equal(store.vectors()[2], before)
    assert json.loads(store.contract_json())["id"] == "toy:aaaa"
    store.replace_embeddings(CONTRACT_B, "toy:bbbb", ids, np.ones((3, 64), np.float32))
    assert store.vectors()[2].shape == (3, 64) and json.loads(store.contract_json())["id"] == "toy:bbbb"


def test_schema_version_and_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "g.sqlite"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(GalleryError, match="newer"):
        SQLiteStore(path)
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE things (x)")
    db.commit()
    db.close()
    with pytest.raises(GalleryError, match="not a facefit gallery"):
        SQLiteStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(GalleryError, match="not a facefit gallery"):
        SQLiteStore(junk)
    assert junk.read_bytes().startswith(b"this is not")  # never touched
    with pytest.raises(GalleryError, match="no gallery"):
        SQLiteStore(tmp_path / "missing.sqlite", create=False)


def _writer(path: str, person: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = SQLiteStore(path)
    for _ in range(n):  # one transaction per face: maximal interleaving with the other writer
        add(store, person, [fake_face(rng)])
    store.close()


def test_two_processes_adding_at_once_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "g.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, f"P{i}", 60, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = SQLiteStore(path)
    assert [(p.name, p.n_faces) for p in store.persons()] == [("P0", 60), ("P1", 60)]
    assert store.revision() == 120
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
