"""Distances between embeddings. Lower means more alike for every metric here.

``euclidean`` is plain (not squared) L2 on the raw embeddings, dlib's metric;
``cosine`` is ``1 - cos(a, b)`` on L2-normalised embeddings, in [0, 2].
"""

from __future__ import annotations

import math

import numpy as np

METRICS = ("euclidean", "cosine")


def is_threshold(value: float) -> bool:
    """Whether ``value`` can be a distance threshold: a finite number above 0 (NaN and inf accept nothing or all)."""
    return math.isfinite(value) and value > 0


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def pairwise_distances(a: np.ndarray, b: np.ndarray | None = None, metric: str = "euclidean") -> np.ndarray:
    """Distance matrix (len(a), len(b)); ``b`` defaults to ``a`` (then the diagonal is exactly 0)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    same = b is None
    a64 = np.asarray(a, dtype=np.float64)
    b64 = a64 if b is None else np.asarray(b, dtype=np.float64)
    if metric == "cosine":
        d = 1.0 - l2_normalize(a64) @ l2_normalize(b64).T
        d = np.clip(d, 0.0, 2.0)
    else:
        diff = a64[:, None, :] - b64[None, :, :]
        d = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    if same:
        np.fill_diagonal(d, 0.0)
    return d


def paired_distances(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distance between row i of ``a`` and row i of ``b``."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if metric == "cosine":
        return np.clip(1.0 - np.sum(l2_normalize(a64) * l2_normalize(b64), axis=1), 0.0, 2.0)
    return np.linalg.norm(a64 - b64, axis=1)
