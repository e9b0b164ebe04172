"""Distances checked against a naive reference written here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facefit.distances import paired_distances, pairwise_distances


def naive(a, b, metric):
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            if metric == "euclidean":
                out[i, j] = math.sqrt(sum((float(p) - float(q)) ** 2 for p, q in zip(x, y)))
            else:
                dot = sum(float(p) * float(q) for p, q in zip(x, y))
                norm = math.sqrt(sum(float(p) ** 2 for p in x)) * math.sqrt(sum(float(q) ** 2 for q in y))
                out[i, j] = 1 - dot / norm
    return out


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_against_naive(metric: str) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(4, 7)).astype(np.float32)
    np.testing.assert_allclose(pairwise_distances(a, b, metric), naive(a, b, metric), atol=1e-6)
    np.testing.assert_allclose(paired_distances(a[:4], b, metric), np.diag(naive(a[:4], b, metric)), atol=1e-6)
    d = pairwise_distances(a, metric=metric)
    assert (np.diag(d) == 0).all() and np.allclose(d, d.T)


def test_cosine_is_bounded_and_scale_free() -> None:
    a = np.array([[1.0, 0.0], [-2.0, 0.0], [0.0, 3.0]])
    d = pairwise_distances(a, metric="cosine")
    np.testing.assert_allclose(d[0], [0.0, 2.0, 1.0])


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        pairwise_distances(np.zeros((2, 2)), metric="manhattan")
