"""Open-set identification metrics against deliberately naive loop implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facefit.eval.identification import (
    cmc,
    det_curve,
    gallery_distances,
    identification_metrics,
    metrics_at_thresholds,
    nonmated_best,
    operating_point,
    rank1_hit_distances,
    threshold_at_fpir,
    true_ranks,
)

# ------------------------------------------------------------------------------------------ naive references


def naive_rank(row: list[float], true: int) -> int:
    """1 + the number of other gallery persons at least as close as the true one (ties count against)."""
    rank = 1
    for j, v in enumerate(row):
        if j != true and v <= row[true]:
            rank += 1
    return rank


def naive_rank_k(dist: np.ndarray, labels: np.ndarray, k: int) -> float:
    hits = total = 0
    for row, lab in zip(dist.tolist(), labels.tolist()):
        if lab < 0:
            continue
        total += 1
        hits += naive_rank(row, lab) <= k
    return hits / total if total else math.nan


def naive_fpir(dist: np.ndarray, labels: np.ndarray, t: float) -> float:
    accepted = total = 0
    for row, lab in zip(dist.tolist(), labels.tolist()):
        if lab >= 0:
            continue
        total += 1
        accepted += min(row) <= t
    return accepted / total if total else math.nan


def naive_fnir(dist: np.ndarray, labels: np.ndarray, t: float) -> float:
    missed = total = 0
    for row, lab in zip(dist.tolist(), labels.tolist()):
        if lab < 0:
            continue
        total += 1
        correct = naive_rank(row, lab) == 1 and row[lab] <= t
        missed += not correct
    return missed / total if total else math.nan


def naive_threshold(dist: np.ndarray, labels: np.ndarray, target: float) -> float:
    """Try every candidate (just below each stranger's best distance, and +inf); keep the largest allowed."""
    best = [min(row) for row, lab in zip(dist.tolist(), labels.tolist()) if lab < 0]
    if target * len(best) < 1 - 1e-9:
        return math.nan
    candidates = [float(np.nextafter(b, -np.inf)) for b in best] + [math.inf]
    return max(t for t in candidates if naive_fpir(dist, labels, t) <= target)


def random_case(rng: np.random.Generator, n_probes: int, n_gallery: int, p_stranger: float,
                levels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Random distances; with ``levels`` they take few distinct values, so ties are everywhere."""
    dist = rng.random((n_probes, n_gallery))
    if levels is not None:
        dist = np.round(dist * levels) / levels
    labels = rng.integers(0, n_gallery, n_probes)
    labels[rng.random(n_probes) < p_stranger] = -1
    return dist, labels


CASES = [(40, 6, 0.5, None), (60, 4, 0.3, 5), (30, 1, 0.5, 3), (25, 8, 0.0, None), (25, 8, 1.0, 4),
         (200, 10, 0.6, 10), (7, 3, 0.4, 2)]


# ----------------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", range(len(CASES)))
def test_against_naive_references(case: int) -> None:
    rng = np.random.default_rng(case)
    dist, labels = random_case(rng, *CASES[case])
    n_gallery = dist.shape[1]
    mated = labels >= 0

    ranks = true_ranks(dist, labels)
    assert ranks.tolist() == [naive_rank(r, lab) for r, lab in zip(dist.tolist(), labels.tolist()) if lab >= 0]
    curve = cmc(dist, labels)
    assert curve.shape == (n_gallery,)
    for k in range(1, n_gallery + 1):
        np.testing.assert_equal(curve[k - 1], naive_rank_k(dist, labels, k))
    if mated.any():
        assert curve[-1] == 1.0

    # Every distinct distance (and values around them) as a threshold.
    values = np.unique(dist)
    for t in [-1.0, *values, *(values + 1e-3), 2.0]:
        op = operating_point(dist, labels, t)
        np.testing.assert_equal(op["fpir"], naive_fpir(dist, labels, t))
        np.testing.assert_equal(op["fnir"], naive_fnir(dist, labels, t))
        assert op["n_mated"] + op["n_nonmated"] == len(labels)

    for target in (1e-2, 0.05, 0.1, 0.3, 0.5, 1.0):
        got = threshold_at_fpir(nonmated_best(dist, labels), target)
        np.testing.assert_equal(got, naive_threshold(dist, labels, target))
        if not math.isnan(got):
            assert naive_fpir(dist, labels, got) <= target
            # Largest: the next representable threshold up would exceed the target.
            if math.isfinite(got):
                assert naive_fpir(dist, labels, float(np.nextafter(got, np.inf))) > target

    m = identification_metrics(dist, labels, threshold=0.3)
    np.testing.assert_equal(m["rank_1"], naive_rank_k(dist, labels, 1))
    np.testing.assert_equal(m["rank_5"], naive_rank_k(dist, labels, 5))
    np.testing.assert_equal(m["fpir_at_threshold"], naive_fpir(dist, labels, 0.3))
    np.testing.assert_equal(m["tpir_at_threshold"], 1 - naive_fnir(dist, labels, 0.3))
    for key, target in (("1e-2", 1e-2), ("1e-1", 1e-1)):
        t = naive_threshold(dist, labels, target)
        np.testing.assert_equal(m[f"threshold_at_fpir_{key}"], t)
        want = math.nan if math.isnan(t) else 1 - naive_fnir(dist, labels, t)
        np.testing.assert_equal(m[f"tpir_at_fpir_{key}"], want)
    assert m["n_mated"] == mated.sum() and m["n_nonmated"] == (~mated).sum() and m["n_gallery"] == n_gallery


@pytest.mark.parametrize("case", range(len(CASES)))
def test_det_curve_against_naive(case: int) -> None:
    rng = np.random.default_rng(100 + case)
    dist, labels = random_case(rng, *CASES[case])
    fpir, fnir, thr = det_curve(dist, labels)
    assert thr[0] == -np.inf and np.all(np.diff(thr) > 0)
    for f, n, t in zip(fpir, fnir, thr):
        np.testing.assert_equal(f, naive_fpir(dist, labels, t))
        np.testing.assert_equal(n, naive_fnir(dist, labels, t))
    # Every threshold where a rate changes is on the curve: between neighbours nothing changes.
    for lo, hi in zip(thr[1:-1], thr[2:]):
        mid = (lo + hi) / 2
        k = np.searchsorted(thr, mid) - 1
        np.testing.assert_equal(fpir[k], naive_fpir(dist, labels, mid))
        np.testing.assert_equal(fnir[k], naive_fnir(dist, labels, mid))


def test_ties_count_against_the_probe() -> None:
    dist = np.array([[0.2, 0.2, 0.9], [0.2, 0.1, 0.9], [0.5, 0.5, 0.5], [0.3, 0.3, 0.4]])
    labels = np.array([0, 0, 2, -1])
    assert true_ranks(dist, labels).tolist() == [2, 2, 3]
    assert cmc(dist, labels).tolist() == [0.0, 2 / 3, 1.0]
    assert np.isinf(rank1_hit_distances(dist, labels)).all()
    # A tie group of strangers at the threshold is rejected as a whole.
    b = np.array([0.1, 0.2, 0.2, 0.2, 0.7])
    assert threshold_at_fpir(b, 0.2) == np.nextafter(0.2, -1)  # 1 of 5 allowed: 0.1 only
    assert threshold_at_fpir(b, 0.4) == np.nextafter(0.2, -1)  # 2 allowed, but 0.2 comes as three
    assert threshold_at_fpir(b, 0.8) == np.nextafter(0.7, -1)
    assert threshold_at_fpir(b, 1.0) == np.inf
    assert math.isnan(threshold_at_fpir(b, 0.1))  # fewer than 1/0.1 strangers
    assert math.isnan(threshold_at_fpir(np.array([]), 0.5))
    assert threshold_at_fpir(np.full(100, 0.5), 0.01) == np.nextafter(0.5, -1)


def test_edge_cases_no_strangers_no_mated() -> None:
    dist = np.array([[0.1, 0.8], [0.9, 0.2]])
    m = identification_metrics(dist, np.array([0, 1]), threshold=0.5)
    assert m["rank_1"] == 1.0 and m["tpir_at_threshold"] == 1.0
    assert math.isnan(m["fpir_at_threshold"]) and math.isnan(m["tpir_at_fpir_1e-2"])
    assert any("no non-mated" in n for n in m["notes"]) and any("trivially" in n for n in m["notes"])

    m = identification_metrics(dist, np.array([-1, -1]), threshold=0.5)
    assert math.isnan(m["rank_1"]) and math.isnan(m["tpir_at_threshold"]) and m["fpir_at_threshold"] == 1.0
    assert any("no mated" in n for n in m["notes"])

    few = identification_metrics(dist, np.array([0, -1]))
    assert math.isnan(few["threshold_at_fpir_1e-1"]) and "threshold" not in few
    assert any("at least 10 non-mated" in n for n in few["notes"])

    empty = identification_metrics(np.empty((0, 3)), np.array([], dtype=int), threshold=0.5)
    assert empty["n_probes"] == 0 and math.isnan(empty["rank_1"])
    fpir, fnir, thr = det_curve(np.empty((0, 3)), np.array([], dtype=int))
    assert thr.tolist() == [-np.inf] and np.isnan(fpir).all() and np.isnan(fnir).all()

    sub = metrics_at_thresholds(dist, np.array([0, -1]), {"at_threshold": 0.5, "at_fpir_1e-2": math.nan})
    assert sub == {"n_mated": 1, "n_nonmated": 1, "rank_1": 1.0, "tpir_at_threshold": 1.0, "fpir_at_threshold": 1.0,
                   "tpir_at_fpir_1e-2": sub["tpir_at_fpir_1e-2"], "fpir_at_fpir_1e-2": sub["fpir_at_fpir_1e-2"]}
    assert math.isnan(sub["tpir_at_fpir_1e-2"])


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="labels must lie"):
        identification_metrics(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="NaN"):
        identification_metrics(np.array([[np.nan]]), np.array([0]))
    with pytest.raises(ValueError, match="gallery is empty"):
        cmc(np.zeros((2, 0)), np.array([-1, -1]))
    with pytest.raises(ValueError, match="one gallery index per probe"):
        cmc(np.zeros((2, 2)), np.array([0]))
    with pytest.raises(ValueError, match="FPIR targets"):
        threshold_at_fpir(np.zeros(3), 0.0)


def naive_gallery(probes: np.ndarray, enrolled: np.ndarray, person: np.ndarray, n: int, metric: str,
                  aggregate: str) -> np.ndarray:
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        if metric == "euclidean":
            return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
        cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
        return 1 - cos

    out = np.zeros((len(probes), n))
    for i, p in enumerate(probes):
        for j in range(n):
            own = [e for e, q in zip(enrolled, person) if q == j]
            if aggregate == "best":
                out[i, j] = min(distance(p, e) for e in own)
            else:
                if metric == "cosine":
                    own = [e / math.sqrt(sum(x * x for x in e)) for e in own]
                out[i, j] = distance(p, sum(own) / len(own))
    return out


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("aggregate", ["best", "mean"])
def test_gallery_distances_against_naive(metric: str, aggregate: str) -> None:
    rng = np.random.default_rng(7)
    probes, enrolled = rng.normal(size=(13, 5)), rng.normal(size=(11, 5)) * rng.uniform(0.5, 3, (11, 1))
    person = np.array([3, 0, 1, 2, 0, 3, 3, 1, 0, 2, 3])  # unsorted, uneven counts
    got = gallery_distances(probes, enrolled, person, 4, metric, aggregate, block=4)
    np.testing.assert_allclose(got, naive_gallery(probes, enrolled, person, 4, metric, aggregate), atol=1e-12)
    if aggregate == "best":
        one = gallery_distances(probes, enrolled[:4], [0, 1, 2, 3], 4, metric, "mean")
        np.testing.assert_allclose(gallery_distances(probes, enrolled[:4], [0, 1, 2, 3], 4, metric, "best"), one)
    with pytest.raises(ValueError, match="no enrolled image"):
        gallery_distances(probes, enrolled, person, 5, metric, aggregate)
