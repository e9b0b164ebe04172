"""Vector indexes over search vectors, all answering in squared L2 distance.

``ExactIndex`` is brute force (numpy matrix products): exact, and fast enough up
to a few hundred thousand vectors. ``IVFIndex`` (faiss inverted lists, the ``[ann]``
extra) scans only the lists nearest the query: it builds a million-face index in
under two minutes on 2 cores and is the default for large galleries.
``HNSWIndex`` (faiss graph) answers faster at low recall but takes minutes to
build at that size. All serialise to bytes so a gallery can cache them in one file.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from facefit.errors import FacefitError

QUERY_CHUNK = 256  # queries per matrix product: bounds memory at 256 x N distances
FAR = 1e6  # what a removed face's row of an exact index becomes: farther than any face, and not its vector


@runtime_checkable
class VectorIndex(Protocol):
    kind: str
    dim: int

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(squared L2 distances (Q, k) ascending, positions (Q, k)); position -1 pads past the end."""

    def to_bytes(self) -> np.ndarray: ...

    def add(self, vectors: np.ndarray, first: int | None = None) -> None:
        """Append vectors at positions ``first``, ``first + 1``, ... (default: after the existing ones)."""

    def remove(self, positions: np.ndarray) -> bool:
        """Take these positions' vectors out of the index (the others keep their positions); False when the
        kind of index cannot, and must be rebuilt instead."""


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if q.shape[1] != dim:
        raise FacefitError(f"query vectors have {q.shape[1]} dimensions, the index {dim}")
    return q


class ExactIndex:
    """Brute-force search; exact."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._sq = np.einsum("ij,ij->i", self.vectors, self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_queries(queries, self.dim)
        n = len(self)
        dist = np.full((len(q), k), np.inf, np.float32)
        pos = np.full((len(q), k), -1, np.int64)
        kk = min(k, n)
        if kk == 0:
            return dist, pos
        for s in range(0, len(q), QUERY_CHUNK):
            qc = q[s : s + QUERY_CHUNK]
            d2 = self._sq[None, :] - 2.0 * (qc @ self.vectors.T) + np.einsum("ij,ij->i", qc, qc)[:, None]
            np.maximum(d2, 0.0, out=d2)
            part = np.argpartition(d2, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (len(qc), 1))
            pd = np.take_along_axis(d2, part, axis=1)
            order = np.argsort(pd, axis=1, kind="stable")
            pos[s : s + len(qc), :kk] = np.take_along_axis(part, order, axis=1)
            dist[s : s + len(qc), :kk] = np.take_along_axis(pd, order, axis=1)
        return dist, pos

    def add(self, vectors: np.ndarray, first: int | None = None) -> None:
        _check_first(first, len(self))
        extra = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self.vectors = np.concatenate([self.vectors, extra])
        self._sq = np.concatenate([self._sq, np.einsum("ij,ij->i", extra, extra)])

    def remove(self, positions: np.ndarray) -> bool:
        """Overwrite the rows: the removed vectors' bytes are gone, and the rows never come before a real face."""
        rows = np.asarray(positions, np.int64)
        if not self.vectors.flags.writeable:
            self.vectors = self.vectors.copy()
        self.vectors[rows] = FAR
        self._sq[rows] = np.einsum("ij,ij->i", self.vectors[rows], self.vectors[rows])
        return True

    def to_bytes(self) -> np.ndarray:
        return self.vectors.view(np.uint8).reshape(-1)

    @classmethod
    def from_bytes(cls, blob: np.ndarray, dim: int) -> ExactIndex:
        return cls(np.asarray(blob, np.uint8).view(np.float32).reshape(-1, dim))


def _check_first(first: int | None, size: int) -> None:
    if first is not None and first != size:
        raise FacefitError(f"this index appends at position {size}, not {first}")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise FacefitError("approximate search needs faiss: pip install 'facefit[ann]' "
                           "(or use --index exact)") from None
    return faiss


def _faiss_search(index, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if index.ntotal == 0:
        return np.full((len(q), k), np.inf, np.float32), np.full((len(q), k), -1, np.int64)
    dist, pos = index.search(q, k)
    return np.where(pos < 0, np.inf, dist).astype(np.float32), pos.astype(np.int64)


class IVFIndex:
    """faiss inverted lists over k-means cells; ``nprobe`` cells are scanned per query."""

    kind = "ivf"
    TRAIN_PER_LIST = 40  # k-means samples per list: enough for stable cells, cheap to train

    def __init__(self, index) -> None:
        self._index = index

    @staticmethod
    def default_nlist(n: int) -> int:
        # 8 sqrt(n) cells: at a million faces, 128 probed cells reach recall@1 0.996 in under 4 ms (bench search).
        return int(max(1, min(8 * np.sqrt(n), n // IVFIndex.TRAIN_PER_LIST)))

    @classmethod
    def build(cls, vectors: np.ndarray, *, nlist: int | None = None, nprobe: int = 128, seed: int = 0) -> IVFIndex:
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = nlist or cls.default_nlist(len(x))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(x.shape[1]), x.shape[1], nlist)
        index.cp.min_points_per_centroid = 1  # small galleries: fewer cells than faiss likes is fine, not a warning
        rng = np.random.default_rng(seed)
        sample = x if len(x) <= cls.TRAIN_PER_LIST * nlist else x[rng.choice(len(x), cls.TRAIN_PER_LIST * nlist,
                                                                             replace=False)]
        index.train(sample)
        index.add(x)
        index.nprobe = min(nprobe, nlist)
        return cls(index)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def nlist(self) -> int:
        return int(self._index.nlist)

    @property
    def trained_for(self) -> int:
        """The gallery size ``default_nlist`` would choose these cells for."""
        return int(max(self.nlist ** 2 / 64, self.TRAIN_PER_LIST * self.nlist))

    @property
    def nprobe(self) -> int:
        return int(self._index.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._index.nprobe = int(min(value, self.nlist))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _faiss_search(self._index, _as_queries(queries, self.dim), k)

    def add(self, vectors: np.ndarray, first: int | None = None) -> None:
        # Explicit ids: after a removal, faiss' own numbering (from ntotal) would reuse taken positions.
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        start = len(self) if first is None else int(first)
        self._index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))

    def remove(self, positions: np.ndarray) -> bool:
        """Delete the vectors from their inverted lists (the lists are compacted, nothing of them is kept)."""
        self._index.remove_ids(_faiss().IDSelectorBatch(np.asarray(positions, np.int64)))
        return True

    def to_bytes(self) -> np.ndarray:
        return _faiss().serialize_index(self._index)

    @classmethod
    def from_bytes(cls, blob: np.ndarray, nprobe: int | None = None) -> IVFIndex:
        out = cls(_faiss().deserialize_index(np.asarray(blob, np.uint8)))
        if nprobe:
            out.nprobe = nprobe
        return out


class HNSWIndex:
    """faiss HNSW graph: approximate, sub-millisecond at a million vectors."""

    kind = "hnsw"

    def __init__(self, index) -> None:
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray, *, m: int = 32, ef_construction: int = 80, ef_search: int = 96,
              threads: int | None = None) -> HNSWIndex:
        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if threads:
            faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(x.shape[1], m)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
        index.add(x)
        return cls(index)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ef_search(self) -> int:
        return int(self._index.hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._index.hnsw.efSearch = int(value)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = _as_queries(queries, self._index.d)
        # efSearch below k would cap the results at efSearch neighbours.
        saved = self.ef_search
        if saved < k:
            self.ef_search = k
        try:
            return _faiss_search(self._index, q, k)
        finally:
            self.ef_search = saved

    def add(self, vectors: np.ndarray, first: int | None = None) -> None:
        _check_first(first, len(self))
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim))

    def remove(self, positions: np.ndarray) -> bool:
        return False  # a graph cannot drop a node: the index is rebuilt

    def to_bytes(self) -> np.ndarray:
        return _faiss().serialize_index(self._index)

    @classmethod
    def from_bytes(cls, blob: np.ndarray, ef_search: int | None = None) -> HNSWIndex:
        index = _faiss().deserialize_index(np.asarray(blob, np.uint8))
        if ef_search:
            index.hnsw.efSearch = ef_search
        return cls(index)
