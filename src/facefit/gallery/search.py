"""Person search over a gallery: vectors per face or per person, an index, and per-person aggregation.

Every metric is served by one squared-L2 index over *search vectors*: raw
embeddings for ``euclidean``, L2-normalised ones for ``cosine`` (where
``1 - cos = |a - b|^2 / 2``). Built indexes are cached in one file beside the
gallery and rebuilt when the gallery's revision, model or settings change.
"""

from __future__ import annotations

import enum
import glob
import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from facefit.gallery.index import ExactIndex, HNSWIndex, IVFIndex, VectorIndex
from facefit.gallery.records import Identification, Match
from facefit.gallery.store import GalleryError, GalleryStore, NativeSearch

CACHE_FORMAT = 3  # 3: removed faces' vectors are taken out of the index, not only masked


class Aggregation(enum.StrEnum):
    """How a person's several faces are scored: the ``best`` (closest) face, or one ``mean`` template."""

    best = "best"
    mean = "mean"


class IndexKind(enum.StrEnum):
    auto = "auto"  # exact below ``ann_threshold`` items, IVF above
    exact = "exact"
    ivf = "ivf"
    hnsw = "hnsw"


@dataclass(frozen=True)
class SearchSettings:
    aggregation: Aggregation = Aggregation.best
    index: IndexKind = IndexKind.auto
    ann_threshold: int = 200_000
    nprobe: int = 128
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 256

    def __post_init__(self) -> None:
        for name, kind in (("aggregation", Aggregation), ("index", IndexKind)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                raise GalleryError(f"{name} {value!r}: choose one of {', '.join(k.value for k in kind)}") from None
        for name in ("ann_threshold", "nprobe", "hnsw_m", "ef_construction", "ef_search"):
            if int(getattr(self, name)) < 1:
                raise GalleryError(f"{name} must be >= 1, got {getattr(self, name)}")

    def resolve_kind(self, n_items: int) -> str:
        if self.index is IndexKind.auto:
            return "ivf" if n_items >= self.ann_threshold else "exact"
        return self.index.value


def search_vectors(embeddings: np.ndarray, metric: str) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(embeddings), dtype=np.float32)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    elif metric != "euclidean":
        raise GalleryError(f"unknown metric {metric!r}")
    return x


def to_distance(d2: np.ndarray, metric: str) -> np.ndarray:
    d2 = np.maximum(np.asarray(d2, np.float64), 0.0)
    return np.sqrt(d2) if metric == "euclidean" else d2 / 2.0


class PersonIndex:
    """Items (faces or templates) in an index, each belonging to a person; answers with persons."""

    def __init__(self, index: VectorIndex | None, item_person: np.ndarray, item_face: np.ndarray,
                 names: list[str], metric: str, aggregation: Aggregation,
                 native: NativeSearch | None = None, face_person: dict[int, int] | None = None) -> None:
        self.index = index
        self.item_person = item_person
        self.item_face = item_face
        self.names = names
        self.metric = metric
        self.aggregation = aggregation
        self._native = native
        self._face_person = face_person or {}

    @property
    def n_items(self) -> int:
        return len(self.item_person) if self._native is None else len(self._face_person)

    def _raw(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(squared distances, person index, face id) of the k nearest items, -1 persons past the end."""
        if self._native is not None:
            d2, fids = self._native.search_faces(q, k, self.metric == "cosine")
            persons = np.vectorize(lambda f: self._face_person.get(int(f), -1), otypes=[np.int64])(fids)
            return d2, persons, fids
        d2, pos = self.index.search(q, k)
        valid = pos >= 0
        persons = np.where(valid, self.item_person[np.where(valid, pos, 0)], -1)
        faces = np.where(valid, self.item_face[np.where(valid, pos, 0)], -1)
        return d2, persons, faces

    def top_persons(self, embeddings: np.ndarray, k: int) -> list[list[Match]]:
        """The ``k`` closest persons of each query, closest first."""
        q = search_vectors(embeddings, self.metric)
        n = self.n_items
        if n == 0 or len(q) == 0:
            return [[] for _ in range(len(q))]
        want = min(n, k if self.aggregation is Aggregation.mean else 4 * k + 8)
        results: list[list[Match] | None] = [None] * len(q)
        todo = np.arange(len(q))
        while len(todo):
            d2, persons, faces = self._raw(q[todo], want)
            dist = to_distance(d2, self.metric)
            again = []
            for row, qi in enumerate(todo):
                best: dict[int, Match] = {}
                for d, p, f in zip(dist[row], persons[row], faces[row]):
                    if p >= 0 and p not in best:
                        best[int(p)] = Match(self.names[p], float(d), None if f < 0 else int(f))
                if len(best) < k and want < n:
                    again.append(qi)  # a few persons own all the nearest faces: look further
                results[qi] = list(best.values())[:k]
            todo = np.asarray(again, dtype=np.int64)
            want = min(n, want * 4)
        return [r or [] for r in results]

    def identify(self, embeddings: np.ndarray, threshold: float, top_k: int = 5) -> list[Identification]:
        """Open-set answers: the best person if within ``threshold`` (a distance), else unknown."""
        out = []
        for matches in self.top_persons(embeddings, max(1, top_k)):
            best = matches[0] if matches else None
            accepted = best is not None and best.distance <= threshold
            out.append(Identification(best.name if accepted else None, None if best is None else best.distance,
                                      matches[:top_k], threshold))
        return out


def _group(ids: np.ndarray, names: list[str]) -> tuple[list[str], np.ndarray]:
    uniq = sorted(set(names))
    where = {n: i for i, n in enumerate(uniq)}
    return uniq, np.fromiter((where[n] for n in names), np.int64, len(names))


def _templates(vectors: np.ndarray, person: np.ndarray, n_persons: int, metric: str) -> np.ndarray:
    sums = np.zeros((n_persons, vectors.shape[1]), np.float64)
    np.add.at(sums, person, vectors)
    mean = sums / np.bincount(person, minlength=n_persons)[:, None]
    return search_vectors(mean, metric)


def _build(vectors: np.ndarray, settings: SearchSettings) -> VectorIndex:
    kind = settings.resolve_kind(len(vectors))
    if kind == "hnsw":
        return HNSWIndex.build(vectors, m=settings.hnsw_m, ef_construction=settings.ef_construction,
                               ef_search=settings.ef_search)
    if kind == "ivf":
        return IVFIndex.build(vectors, nprobe=settings.nprobe)
    return ExactIndex(vectors)


def cache_path_for(store: GalleryStore) -> Path | None:
    path = getattr(store, "path", None)
    return None if path is None else Path(str(path) + ".index.npz")


@dataclass
class _Cached:
    revision: int
    index: VectorIndex
    person: np.ndarray
    faces: np.ndarray
    names: list[str]
    erased: bool = False  # faces were taken out of ``index``: the file it came from still holds them


MAX_MASKED = 0.2  # rebuild a compact index once this share of its positions are removed faces


def open_person_index(store: GalleryStore, contract_id: str, metric: str, settings: SearchSettings) -> PersonIndex:
    """The gallery's person index: from the cache file when current, updated when faces were added or a few
    removed, else rebuilt; the result is cached again, and a cache that held removed faces is overwritten."""
    if isinstance(store, NativeSearch) and settings.aggregation is Aggregation.best:
        ids, face_names = store.face_persons()
        names, person = _group(ids, face_names)
        return PersonIndex(None, person, ids, names, metric, settings.aggregation, native=store,
                           face_person=dict(zip(ids.tolist(), person.tolist())))
    # Read the revision before the vectors: a write in between then only makes the cache look stale.
    revision = store.revision()
    key = {"format": CACHE_FORMAT, "contract": contract_id, "metric": metric,
           **{k: str(v) for k, v in asdict(settings).items() if k not in ("ef_search", "nprobe")}}
    cache = cache_path_for(store)
    cached = _load(cache, key, settings) if cache is not None and cache.exists() else None
    if cached is not None and cached.revision == revision:
        return PersonIndex(cached.index, cached.person, cached.faces, cached.names, metric, settings.aggregation)
    fresh = _update(store, cached, metric, settings) if cached is not None else None
    if fresh is None:
        fresh = _rebuild(store, metric, settings)
        fresh.erased = True  # what the old cache held is unknown (another version, other settings)
    if fresh.erased and cache is not None and cache.exists():
        _try_scrub(cache)  # a replaced file's blocks would keep the removed faces: overwrite it first
    fresh.revision = revision
    # Not when the gallery changed meanwhile: a removal that erased the cache must not see it written back.
    if cache is not None and len(fresh.faces) and store.revision() == revision:
        _save(cache, key, fresh)
    return PersonIndex(fresh.index, fresh.person, fresh.faces, fresh.names, metric, settings.aggregation)


def _rebuild(store: GalleryStore, metric: str, settings: SearchSettings) -> _Cached:
    ids, face_names, emb = store.vectors()
    names, person = _group(ids, face_names)
    if len(ids) == 0:
        return _Cached(0, ExactIndex(np.empty((0, 1), np.float32)), person, ids, names)
    vectors = search_vectors(emb, metric)
    if settings.aggregation is Aggregation.mean:
        vectors = _templates(vectors, person, len(names), metric)
        person, ids = np.arange(len(names)), np.full(len(names), -1, np.int64)
    return _Cached(0, _build(vectors, settings), person, ids, names)


def _update(store: GalleryStore, cached: _Cached, metric: str, settings: SearchSettings) -> _Cached | None:
    """Add new faces to the cached index and take removed ones out of it, when that is safe; None means rebuild.

    An HNSW graph over a million faces takes minutes to build; enrolling one more
    person must not cost that. A removed face's vector leaves the index (exact: its row is
    overwritten; IVF: it is deleted from its list) and its position stays, unused; a graph
    cannot drop a node, so HNSW is rebuilt. Templates (``mean``) change with every face,
    so they are rebuilt.
    """
    vectors_revision = getattr(store, "vectors_revision", None)
    if (settings.aggregation is not Aggregation.best or vectors_revision is None
            or cached.revision < vectors_revision() or not hasattr(store, "vectors_for")):
        return None
    ids, face_names = store.face_persons()
    live = cached.person >= 0
    kept = live & np.isin(cached.faces, ids)
    removed = np.flatnonzero(live & ~kept)
    # A face id SQLite handed out again after a removal is a new face, not the unused position's.
    new_ids = ids[~np.isin(ids, cached.faces[kept])]
    total = len(cached.faces) + len(new_ids)
    if (~kept).sum() > MAX_MASKED * max(1, len(cached.faces)) or settings.resolve_kind(total) != cached.index.kind:
        return None
    if isinstance(cached.index, IVFIndex) and total > 2 * cached.index.trained_for:
        return None  # the cells were trained for a gallery under half this size: retrain them
    if len(removed) and not cached.index.remove(removed):
        return None
    if len(new_ids):
        cached.index.add(search_vectors(store.vectors_for(new_ids), metric), first=len(cached.faces))
    faces = np.concatenate([cached.faces, new_ids])
    alive = np.concatenate([kept, np.ones(len(new_ids), bool)])
    owner = dict(zip(ids.tolist(), face_names))
    names = sorted(set(face_names))
    where = {n: i for i, n in enumerate(names)}
    person = np.fromiter((where[owner[f]] if a else -1 for f, a in zip(faces.tolist(), alive)), np.int64,
                         len(faces))
    return _Cached(0, cached.index, person, faces, names, erased=len(removed) > 0)


def erase_cache(store: GalleryStore) -> None:
    """Overwrite and delete the store's cached index, and any copy of it left half-written.

    Called after a removal: the cache holds every face's search vector and every name, and a removed
    person's must not stay on disk until the next search rebuilds it.
    """
    cache = cache_path_for(store)
    if cache is None:
        return
    _scrub_all([cache, *_leftovers(cache)])


def erase_leftovers(store: GalleryStore) -> None:
    """Overwrite and delete copies of the cached index left half-written by a process killed while saving."""
    cache = cache_path_for(store)
    if cache is not None:
        _scrub_all(_leftovers(cache))


def _leftovers(cache: Path) -> list[Path]:
    return list(cache.parent.glob(f".{glob.escape(cache.name)}.*"))  # atomic_path's temporaries


def _scrub_all(paths: list[Path]) -> None:
    for path in paths:
        try:
            scrub_file(path)
        except OSError as exc:
            raise GalleryError(f"{path}: cannot erase the removed faces from the cached search index "
                               f"({exc.strerror or exc}); delete this file by hand") from None


def scrub_file(path: Path) -> None:
    """Overwrite ``path``'s bytes with zeros, flush them to the disk, then delete it (a link: only deleted)."""
    if path.is_symlink() or not path.exists():
        path.unlink(missing_ok=True)
        return
    size = path.stat().st_size
    zeros = bytes(min(size, 1 << 20))
    with open(path, "r+b") as f:
        for start in range(0, size, len(zeros) or 1):
            f.write(zeros[: size - start])
        f.flush()
        os.fsync(f.fileno())
    path.unlink()


def _try_scrub(path: Path) -> None:
    try:
        scrub_file(path)
    except OSError:
        pass  # a read-only gallery folder: nothing facefit writes can be there either


def _save(path: Path, key: dict, c: _Cached) -> None:
    from facefit.io.files import atomic_path

    buf = io.BytesIO()
    np.savez(buf, key=np.frombuffer(json.dumps(key, sort_keys=True).encode(), np.uint8), kind=np.array(c.index.kind),
             revision=np.array(c.revision), dim=np.array(c.index.dim), index=c.index.to_bytes(), person=c.person,
             faces=c.faces, names=np.frombuffer(json.dumps(c.names).encode(), np.uint8))
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
    except OSError:
        pass  # a read-only gallery folder: searching still works, only without the cache


def _load(path: Path, key: dict, settings: SearchSettings) -> _Cached | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if json.loads(z["key"].tobytes().decode()) != json.loads(json.dumps(key, sort_keys=True)):
                return None
            kind, blob = str(z["kind"]), z["index"]
            if kind == "hnsw":
                index: VectorIndex = HNSWIndex.from_bytes(blob, settings.ef_search)
            elif kind == "ivf":
                index = IVFIndex.from_bytes(blob, settings.nprobe)
            else:
                index = ExactIndex.from_bytes(blob, int(z["dim"]))
            names = json.loads(z["names"].tobytes().decode())
            return _Cached(int(z["revision"]), index, z["person"], z["faces"], names)
    except (OSError, ValueError, KeyError, json.JSONDecodeError, zipfile.BadZipFile):
        return None  # unreadable or from another version: rebuild it
