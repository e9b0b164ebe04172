"""Vector indexes and person search against naive references; the on-disk index cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.gallery.conftest import fake_face

from facefit.gallery.index import ExactIndex, HNSWIndex, IVFIndex
from facefit.gallery.search import (
    Aggregation,
    PersonIndex,
    SearchSettings,
    cache_path_for,
    open_person_index,
    search_vectors,
)
from facefit.gallery.sqlite import SQLiteStore


def naive_knn(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.array([[float(np.sum((qi.astype(np.float64) - xi) ** 2)) for xi in x] for qi in q])
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, axis=1), order


def naive_persons(faces: np.ndarray, person: np.ndarray, q: np.ndarray, how: str, metric: str) -> list[list]:
    """Best person per query, computed the slow obvious way."""
    out = []
    for qi in q:
        scores = {}
        for p in sorted(set(person.tolist())):
            mine = faces[person == p]
            if metric == "cosine":
                mine = mine / np.linalg.norm(mine, axis=1, keepdims=True)
                qn = qi / np.linalg.norm(qi)
                if how == "mean":
                    t = mine.mean(axis=0)
                    t /= np.linalg.norm(t)
                    scores[p] = 1 - float(qn @ t)
                else:
                    scores[p] = min(1 - float(qn @ m) for m in mine)
            else:
                if how == "mean":
                    scores[p] = float(np.linalg.norm(qi - mine.mean(axis=0)))
                else:
                    scores[p] = min(float(np.linalg.norm(qi - m)) for m in mine)
        out.append(sorted(scores.items(), key=lambda kv: kv[1]))
    return out


def test_exact_index_matches_naive_including_k_beyond_size() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((57, 16)).astype(np.float32)
    q = rng.standard_normal((9, 16)).astype(np.float32)
    d, pos = ExactIndex(x).search(q, 5)
    nd, npos = naive_knn(x, q, 5)
    np.testing.assert_array_equal(pos, npos)
    np.testing.assert_allclose(d, nd, rtol=1e-4, atol=1e-4)
    d, pos = ExactIndex(x[:3]).search(q, 5)
    assert (pos[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all()
    assert ExactIndex.from_bytes(ExactIndex(x).to_bytes(), 16).vectors.tobytes() == x.tobytes()


def test_hnsw_finds_the_true_neighbours_and_round_trips() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 32)).astype(np.float32)
    q = x[:200] + 0.01 * rng.standard_normal((200, 32)).astype(np.float32)
    index = HNSWIndex.build(x, ef_search=64)
    _, pos = index.search(q, 1)
    assert np.mean(pos[:, 0] == np.arange(200)) >= 0.99
    again = HNSWIndex.from_bytes(index.to_bytes(), ef_search=64)
    np.testing.assert_array_equal(again.search(q, 3)[1], index.search(q, 3)[1])
    # Asking for more neighbours than efSearch still returns k of them.
    assert (index.search(q[:2], 200)[1] >= 0).all()


def test_ivf_finds_the_true_neighbours_adds_and_round_trips() -> None:
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((400, 32)).astype(np.float32)
    x = np.repeat(centres, 5, axis=0) + 0.05 * rng.standard_normal((2000, 32)).astype(np.float32)
    q = x[:200] + 0.01 * rng.standard_normal((200, 32)).astype(np.float32)
    index = IVFIndex.build(x, nprobe=8)
    assert index.nlist == 50 and index.nprobe == 8
    _, pos = index.search(q, 1)
    assert np.mean(pos[:, 0] == np.arange(200)) >= 0.99
    again = IVFIndex.from_bytes(index.to_bytes(), nprobe=8)
    np.testing.assert_array_equal(again.search(q, 3)[1], index.search(q, 3)[1])
    index.add(q[:1] + 100)  # far from everything: found only as itself
    assert index.search(q[:1] + 100, 1)[1][0, 0] == 2000 and len(index) == 2001


@pytest.mark.parametrize("how", ["best", "mean"])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_person_search_matches_naive(how: str, metric: str) -> None:
    rng = np.random.default_rng(2)
    person = np.repeat(np.arange(12), rng.integers(1, 6, 12))
    faces = rng.standard_normal((len(person), 8)).astype(np.float32)
    q = rng.standard_normal((15, 8)).astype(np.float32)
    names = [f"p{i}" for i in range(12)]
    vectors = search_vectors(faces, metric)
    if how == "mean":
        sums = np.zeros((12, 8))
        np.add.at(sums, person, vectors)
        vectors = search_vectors(sums / np.bincount(person)[:, None], metric)
        index = PersonIndex(ExactIndex(vectors), np.arange(12), np.full(12, -1), names, metric, Aggregation.mean)
    else:
        index = PersonIndex(ExactIndex(vectors), person, np.arange(len(person)), names, metric, Aggregation.best)
    got = index.top_persons(q, 4)
    want = naive_persons(faces, person, q, how, metric)
    for g, w in zip(got, want):
        assert [m.name for m in g] == [f"p{p}" for p, _ in w[:4]]
        np.testing.assert_allclose([m.distance for m in g], [s for _, s in w[:4]], rtol=1e-4, atol=1e-5)


def test_best_search_looks_further_when_one_person_owns_the_neighbourhood() -> None:
    rng = np.random.default_rng(3)
    crowd = np.zeros((50, 4), np.float32) + 0.001 * rng.standard_normal((50, 4)).astype(np.float32)
    far = np.ones((1, 4), np.float32) * 5
    faces = np.vstack([crowd, far])
    person = np.array([0] * 50 + [1])
    index = PersonIndex(ExactIndex(faces), person, np.arange(51), ["crowd", "far"], "euclidean", Aggregation.best)
    assert [m.name for m in index.top_persons(np.zeros((1, 4)), 2)[0]] == ["crowd", "far"]


def test_identify_applies_the_threshold() -> None:
    faces = np.array([[0, 0], [3, 0]], np.float32)
    index = PersonIndex(ExactIndex(faces), np.array([0, 1]), np.arange(2), ["a", "b"], "euclidean", Aggregation.best)
    near, far = index.identify(np.array([[0.5, 0], [1.5, 5]], np.float32), threshold=0.6, top_k=2)
    assert near.name == "a" and near.distance == pytest.approx(0.5) and [m.name for m in near.matches] == ["a", "b"]
    assert far.name is None and far.distance > 0.6 and len(far.matches) == 2


def test_index_cache_is_reused_and_rebuilt_when_stale(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    store = SQLiteStore(tmp_path / "g.sqlite")
    contract = json.dumps({"id": "toy:a"})
    store.add_faces("Ann", [fake_face(rng, dim=8) for _ in range(3)], contract, "toy:a")
    settings = SearchSettings()
    first = open_person_index(store, "toy:a", "euclidean", settings)
    cache = cache_path_for(store)
    assert cache is not None and cache.exists()
    stamp = cache.stat().st_mtime_ns
    again = open_person_index(store, "toy:a", "euclidean", settings)
    assert cache.stat().st_mtime_ns == stamp and again.names == first.names  # loaded, not rebuilt
    store.add_faces("Bob", [fake_face(rng, dim=8)], contract, "toy:a")
    fresh = open_person_index(store, "toy:a", "euclidean", settings)
    assert fresh.names == ["Ann", "Bob"]
    cache.write_bytes(b"garbage")  # a damaged cache is rebuilt, not trusted
    assert open_person_index(store, "toy:a", "euclidean", settings).names == ["Ann", "Bob"]
    hnsw = open_person_index(store, "toy:a", "euclidean", SearchSettings(index="hnsw"))
    assert hnsw.index.kind == "hnsw" and hnsw.top_persons(store.vectors()[2][3:], 1)[0][0].name == "Bob"


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_index_is_updated_in_place_for_small_changes_and_rebuilt_otherwise(tmp_path: Path, kind: str,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import facefit.gallery.search as search

    rng = np.random.default_rng(5)
    store = SQLiteStore(tmp_path / "g.sqlite")
    contract = json.dumps({"id": "toy:a", "embedding_dim": 8})
    for name in "ABCDEFGHIJ":
        store.add_faces(name, [fake_face(rng, dim=8) for _ in range(3)], contract, "toy:a")
    settings = SearchSettings(index=kind)
    builds = []
    real_build = search._build

    def counting_build(vectors, s):
        builds.append(len(vectors))
        return real_build(vectors, s)

    def check() -> None:
        # Whatever path produced it, the index answers exactly like a fresh one over the store's faces.
        ids, names, emb = store.vectors()
        got = open_person_index(store, "toy:a", "euclidean", settings)
        want = PersonIndex(ExactIndex(emb), np.array([sorted(set(names)).index(n) for n in names]), ids,
                           sorted(set(names)), "euclidean", Aggregation.best)
        q = emb + 0.01
        assert [[m.name for m in r] for r in got.top_persons(q, 3)] == [[m.name for m in r]
                                                                       for r in want.top_persons(q, 3)]

    monkeypatch.setattr(search, "_build", counting_build)
    check()
    assert builds == [30]
    store.add_faces("K", [fake_face(rng, dim=8) for _ in range(2)], contract, "toy:a")  # added: update
    gone = store.faces("A")[0].id
    gone_vec = store.vectors_for(np.array([gone]))[0].tobytes()
    store.remove_face(gone)  # one removed: its vector taken out of the index (a graph cannot: rebuilt)
    store.rename("B", "Bee")
    check()
    first = [30] if kind != "hnsw" else [30, 31]
    assert builds == first
    assert gone_vec not in open_person_index(store, "toy:a", "euclidean", settings).index.to_bytes().tobytes()
    for name in "CDEFG":  # a third of the faces gone: rebuild
        store.remove_person(name)
    check()
    assert builds == [*first, 16]
    ids, _, emb = store.vectors()
    store.replace_embeddings(contract, "toy:a", ids, emb[::-1].copy())  # same model, new vectors: rebuild
    check()
    assert builds == [*first, 16, 16]


@pytest.mark.parametrize("kind", ["exact", "ivf"])
def test_a_face_id_reused_after_a_removal_is_a_new_face(tmp_path: Path, kind: str) -> None:
    """SQLite hands the largest id out again once its row is deleted; the index, updated at the removal (as
    ``Gallery.remove`` does), must not take the new face for the removed one's unused position."""
    rng = np.random.default_rng(9)
    store = SQLiteStore(tmp_path / "g.sqlite")
    contract = json.dumps({"id": "toy:a", "embedding_dim": 8})
    for name in "ABCDEFGHIJ":
        store.add_faces(name, [fake_face(rng, dim=8) for _ in range(3)], contract, "toy:a")
    settings = SearchSettings(index=kind)
    open_person_index(store, "toy:a", "euclidean", settings)  # cached
    last = store.faces("J")[-1].id
    store.remove_face(last)
    open_person_index(store, "toy:a", "euclidean", settings)  # what Gallery.remove does after a removal
    newcomer = fake_face(rng, dim=8)
    store.add_faces("New", [newcomer], contract, "toy:a")
    assert store.faces("New")[0].id == last  # the id came back
    index = open_person_index(store, "toy:a", "euclidean", settings)
    match = index.top_persons(newcomer.embedding[None], 1)[0][0]
    assert match.name == "New" and match.distance < 1e-3
