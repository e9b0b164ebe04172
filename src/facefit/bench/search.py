"""Gallery search speed and accuracy on synthetic embeddings (no faces needed).

Synthetic galleries mimic face embeddings: persons are random centres, each
enrolled face is its centre plus small noise, and queries are new noisy samples
of enrolled persons. Pure random vectors would be unrealistically hard for an
ANN graph (no neighbourhood structure) and unlike any real gallery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from facefit.gallery.index import ExactIndex, HNSWIndex, IVFIndex
from facefit.gallery.search import Aggregation, PersonIndex

FACES_PER_PERSON = 5
CENTRE_SCALE = 0.65  # between-person distances ~0.9, as with dlib-resnet
NOISE = 0.025  # within-person distances ~0.4


@dataclass
class SearchRow:
    size: int
    index: str
    build_s: float
    p50_ms: float
    p99_ms: float
    recall_at_1: float  # same nearest face as exact search
    person_recall_at_1: float  # same best person as exact search

    def as_dict(self) -> dict:
        return asdict(self)


def synthetic_gallery(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(face vectors (n, dim), person of each face, person centres)."""
    n_persons = max(1, n // FACES_PER_PERSON)
    centres = (rng.standard_normal((n_persons, dim), dtype=np.float32) * (CENTRE_SCALE / np.sqrt(dim))).astype(
        np.float32)
    person = np.arange(n) % n_persons
    faces = centres[person] + rng.standard_normal((n, dim), dtype=np.float32) * np.float32(NOISE)
    return faces, person, centres


def queries_for(centres: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    return centres[picks] + rng.standard_normal((n, centres.shape[1]), dtype=np.float32) * np.float32(NOISE)


def exact_top1(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    _, pos = ExactIndex(vectors).search(queries, 1)
    return pos[:, 0]


def _time_queries(search: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[float, float]:
    times = np.empty(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        search(q[None])
        times[i] = time.perf_counter() - t
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def bench_size(n: int, *, dim: int = 128, n_queries: int = 1000, kinds: tuple[str, ...] = ("exact", "ivf"),
               nprobe: tuple[int, ...] = (32, 64, 128), ef_search: tuple[int, ...] = (128, 256, 512),
               seed: int = 0, log: Callable[[str], None] | None = None) -> list[SearchRow]:
    """Time person search (best-face aggregation, top 1) on one gallery size with each index kind."""
    rng = np.random.default_rng(seed)
    faces, person, centres = synthetic_gallery(n, dim, rng)
    queries = queries_for(centres, n_queries, rng)
    truth = exact_top1(faces, queries)
    names = [str(i) for i in range(len(centres))]
    face_ids = np.arange(n, dtype=np.int64)
    rows = []

    def measure(label: str, index, build: float, limit: int | None = None) -> None:
        pi = PersonIndex(index, person, face_ids, names, "euclidean", Aggregation.best)
        found = np.array([pi.top_persons(q[None], 1)[0][0].face_id for q in queries[:limit]])
        recall = float(np.mean(found == truth[:limit]))
        person_recall = float(np.mean(person[found] == person[truth[:limit]]))
        p50, p99 = _time_queries(lambda q: pi.top_persons(q, 1), queries[:limit])
        rows.append(SearchRow(n, label, build, p50, p99, recall, person_recall))
        if log:
            log(f"{n:,} {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, recall@1 {recall:.4f}")

    for kind in kinds:
        t = time.perf_counter()
        if kind == "exact":
            measure("exact", ExactIndex(faces), time.perf_counter() - t, limit=min(n_queries, 200))
            continue
        index = IVFIndex.build(faces) if kind == "ivf" else HNSWIndex.build(faces)
        build = time.perf_counter() - t
        if log:
            log(f"{n:,} {kind} built in {build:.1f} s")
        for value in nprobe if kind == "ivf" else ef_search:
            if kind == "ivf":
                index.nprobe = value
                label = f"ivf nlist={index.nlist} nprobe={index.nprobe}"
            else:
                index.ef_search = value
                label = f"hnsw ef={value}"
            measure(label, index, build)
    return rows
