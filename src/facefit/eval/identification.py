"""Open-set 1:N identification metrics in pure numpy.

Inputs everywhere: ``dist``, a (probes x gallery persons) distance matrix (lower = more alike), and ``labels``,
the true gallery-person index of each probe, or -1 for a non-mated probe (a stranger who is not enrolled).

- rank-k (closed-set CMC) over mated probes. Ties count against the probe: its rank is the number of gallery
  persons at a distance <= its true person's, so an impostor tied with the true person is never a rank-1 hit.
- FPIR(T): share of non-mated probes whose best distance is <= T (someone would be returned).
- FNIR(T): share of mated probes not returned correctly, i.e. not rank 1 with distance <= T; TPIR = 1 - FNIR.
- TPIR at an FPIR target uses the largest threshold whose FPIR is <= the target, found exactly from the
  sorted non-mated best distances; it is undefined (NaN) when fewer than 1/target strangers make that FPIR
  unresolvable, and ``notes`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from facefit.distances import l2_normalize, pairwise_distances
from facefit.eval.metrics import _sci

FPIR_TARGETS: tuple[float, ...] = (1e-2, 1e-1)
RANKS: tuple[int, ...] = (1, 5)
AGGREGATES = ("best", "mean")

__all__ = ["AGGREGATES", "FPIR_TARGETS", "RANKS", "cmc", "det_curve", "fpir_key", "gallery_distances",
           "identification_metrics", "metrics_at_thresholds", "nonmated_best", "operating_point", "rank1_hit_distances",
           "threshold_at_fpir", "true_ranks"]


def fpir_key(target: float) -> str:
    """Key suffix of an FPIR target: ``1e-2 -> "fpir_1e-2"``."""
    return f"fpir_{_sci(target)}"


def _validate(dist: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"dist must be a (probes x gallery persons) matrix, got shape {d.shape}")
    if d.shape[1] == 0:
        raise ValueError("the gallery is empty: dist has no columns")
    if not np.all(np.isfinite(d)):
        raise ValueError("dist contains NaN or infinite values")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != d.shape[0]:
        raise ValueError(f"labels must hold one gallery index per probe ({d.shape[0]}), got shape {y.shape}")
    if y.size and y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integer gallery indices (-1 for non-mated), got {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < -1 or y.max() >= d.shape[1]):
        raise ValueError(f"labels must lie in [-1, {d.shape[1] - 1}]")
    return d, y


def true_ranks(dist: Any, labels: Any) -> np.ndarray:
    """Rank (1 = best) of the true gallery person of each mated probe, in probe order; ties count against it."""
    d, y = _validate(dist, labels)
    mated = y >= 0
    dm = d[mated]
    true = dm[np.arange(dm.shape[0]), y[mated]]
    return np.count_nonzero(dm <= true[:, None], axis=1)


def cmc(dist: Any, labels: Any, max_rank: int | None = None) -> np.ndarray:
    """``out[k-1]`` = share of mated probes whose true person is within rank k, k = 1..max_rank (default: all
    gallery persons). NaN without mated probes."""
    d, y = _validate(dist, labels)
    max_rank = d.shape[1] if max_rank is None else int(max_rank)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    ranks = true_ranks(d, y)
    if ranks.size == 0:
        return np.full(max_rank, np.nan)
    counts = np.bincount(np.minimum(ranks, max_rank + 1), minlength=max_rank + 2)[1 : max_rank + 1]
    return np.cumsum(counts) / ranks.size


def nonmated_best(dist: Any, labels: Any) -> np.ndarray:
    """Best (smallest) distance of each non-mated probe, in probe order."""
    d, y = _validate(dist, labels)
    return d[y < 0].min(axis=1) if np.any(y < 0) else np.empty(0)


def rank1_hit_distances(dist: Any, labels: Any) -> np.ndarray:
    """Per mated probe, its distance to its true person if that is the (untied) rank-1 match, else +inf:
    the probe is identified correctly at threshold T iff this value is <= T."""
    d, y = _validate(dist, labels)
    mated = y >= 0
    true = d[mated, y[mated]]
    return np.where(true_ranks(d, y) == 1, true, np.inf)


def _share(hits: int, n: int) -> float:
    return hits / n if n else math.nan


def operating_point(dist: Any, labels: Any, threshold: float) -> dict[str, Any]:
    """FPIR, FNIR and TPIR at one threshold (accept when distance <= threshold), with the counts behind them."""
    d, y = _validate(dist, labels)
    b, h = nonmated_best(d, y), rank1_hit_distances(d, y)
    fnir = _share(int(np.count_nonzero(h > threshold)), h.size)
    return {"threshold": float(threshold), "fpir": _share(int(np.count_nonzero(b <= threshold)), b.size),
            "fnir": fnir, "tpir": 1.0 - fnir, "n_mated": int(h.size), "n_nonmated": int(b.size)}


def threshold_at_fpir(nonmated: Any, target: float) -> float:
    """Largest threshold T with FPIR(T) <= target over these non-mated best distances; NaN when the target is
    below 1/n (too few strangers to resolve it, including none at all)."""
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"FPIR targets must be in (0, 1], got {target!r}")
    b = np.sort(np.asarray(nonmated, dtype=np.float64).ravel())
    # The tiny slack keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    allowed = int(math.floor(float(target) * b.size + 1e-9))
    if allowed < 1:
        return math.nan
    if allowed >= b.size:
        return math.inf
    # Just below the (allowed+1)-th smallest: a whole tie group there is rejected together.
    return float(np.nextafter(b[allowed], -np.inf))


def det_curve(dist: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpir, fnir, thresholds) at -inf and every distinct distance where either rate changes, by increasing
    threshold (FPIR rising, FNIR falling). A rate is NaN throughout when its probes are missing."""
    d, y = _validate(dist, labels)
    b, h = np.sort(nonmated_best(d, y)), np.sort(rank1_hit_distances(d, y))
    thresholds = np.r_[-np.inf, np.unique(np.r_[b, h[np.isfinite(h)]])]
    fpir = np.searchsorted(b, thresholds, side="right") / b.size if b.size else np.full(thresholds.shape, np.nan)
    fnir = (h.size - np.searchsorted(h, thresholds, side="right")) / h.size if h.size else \
        np.full(thresholds.shape, np.nan)
    return fpir.astype(np.float64), fnir.astype(np.float64), thresholds


def identification_metrics(dist: Any, labels: Any, *, ranks: Sequence[int] = RANKS,
                           fpir_targets: Sequence[float] = FPIR_TARGETS,
                           threshold: float | None = None) -> dict[str, Any]:
    """Rank-k accuracy, TPIR at each FPIR target (with its threshold and achieved FPIR) and, given a fixed
    ``threshold``, FPIR/FNIR/TPIR there, as a JSON-friendly dict; undefined values are NaN, explained in
    ``notes``."""
    d, y = _validate(dist, labels)
    n_gallery = d.shape[1]
    n_mated, n_nonmated = int(np.count_nonzero(y >= 0)), int(np.count_nonzero(y < 0))
    notes: list[str] = []
    out: dict[str, Any] = {"n_probes": int(y.size), "n_mated": n_mated, "n_nonmated": n_nonmated,
                           "n_gallery": int(n_gallery)}
    curve = cmc(d, y, max(max(ranks, default=1), 1))
    if n_mated == 0:
        notes.append("no mated probes: rank-k accuracy and TPIR undefined")
    for k in ranks:
        out[f"rank_{k}"] = float(curve[k - 1])
        if k >= n_gallery and n_mated:
            notes.append(f"rank-{k} is trivially 1 with {n_gallery} gallery person(s)")
    if n_nonmated == 0:
        notes.append("no non-mated probes (strangers): FPIR and TPIR at FPIR targets undefined")
    b = nonmated_best(d, y)
    for target in fpir_targets:
        key = fpir_key(target)
        t = threshold_at_fpir(b, target)
        if math.isnan(t) and n_nonmated:
            notes.append(f"FPIR={target:g} needs at least {math.ceil(1 / target - 1e-9)} non-mated probes, there "
                         f"are {n_nonmated}: TPIR there undefined")
        point = operating_point(d, y, t) if not math.isnan(t) else {"tpir": math.nan, "fpir": math.nan}
        out[f"threshold_at_{key}"] = t
        out[f"tpir_at_{key}"] = point["tpir"]
        out[f"achieved_{key}"] = point["fpir"]  # at most the target; lower when ties or few strangers
    if threshold is not None:
        point = operating_point(d, y, threshold)
        out.update({"threshold": float(threshold), "fpir_at_threshold": point["fpir"],
                    "fnir_at_threshold": point["fnir"], "tpir_at_threshold": point["tpir"]})
    out["notes"] = notes
    return out


def gallery_distances(probes: np.ndarray, enrolled: np.ndarray, enrolled_person: Sequence[int], n_persons: int,
                      metric: str = "euclidean", aggregate: str = "best", block: int = 512) -> np.ndarray:
    """(probes x persons) distances from images enrolled several per person.

    ``best``: the smallest distance to any of the person's images; ``mean``: the distance to the person's mean
    template (for cosine, the mean of the L2-normalised embeddings). Probes go in blocks to bound memory.
    """
    if aggregate not in AGGREGATES:
        raise ValueError(f"unknown aggregate {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
    e = np.asarray(enrolled, dtype=np.float64)
    person = np.asarray(enrolled_person, dtype=np.int64)
    if person.shape != (e.shape[0],):
        raise ValueError(f"enrolled_person must have one entry per enrolled image ({e.shape[0]})")
    counts = np.bincount(person, minlength=n_persons) if person.size else np.zeros(n_persons, np.int64)
    if person.size and (person.min() < 0 or person.max() >= n_persons):
        raise ValueError(f"enrolled_person must lie in [0, {n_persons - 1}]")
    if np.any(counts == 0):
        raise ValueError(f"gallery person {int(np.argmax(counts == 0))} has no enrolled image")
    p = np.asarray(probes, dtype=np.float64)
    if aggregate == "mean":
        vectors = l2_normalize(e) if metric == "cosine" else e
        templates = np.zeros((n_persons, e.shape[1]))
        np.add.at(templates, person, vectors)
        templates /= counts[:, None]
        return np.concatenate([pairwise_distances(p[i : i + block], templates, metric)
                               for i in range(0, p.shape[0], block)] or [np.empty((0, n_persons))])
    order = np.argsort(person, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rows = []
    for i in range(0, p.shape[0], block):
        full = pairwise_distances(p[i : i + block], e[order], metric)
        rows.append(np.minimum.reduceat(full, starts, axis=1))
    return np.concatenate(rows) if rows else np.empty((0, n_persons))


def metrics_at_thresholds(dist: Any, labels: Any, thresholds: dict[str, float]) -> dict[str, Any]:
    """Rank-1 and, per named threshold (e.g. ``"at_fpir_1e-2"`` chosen on all probes), TPIR and FPIR of
    these probes, with counts: the numbers for a subgroup at the global operating points."""
    d, y = _validate(dist, labels)
    n_mated = int(np.count_nonzero(y >= 0))
    out: dict[str, Any] = {"n_mated": n_mated, "n_nonmated": int(y.size - n_mated),
                           "rank_1": float(cmc(d, y, 1)[0])}
    for name, t in thresholds.items():
        point = operating_point(d, y, t) if t is not None and not math.isnan(t) else {}
        out[f"tpir_{name}"] = point.get("tpir", math.nan)
        out[f"fpir_{name}"] = point.get("fpir", math.nan)
    return out
