"""Face-verification metrics in pure numpy.

Every function takes ``scores`` (higher = more likely the same person), ``same`` (ground truth) and, where
it matters, ``folds`` (a fold id per pair). A pair is predicted "same" iff ``score >= threshold``.

The definitions follow the usual LFW protocol (k-fold accuracy, FaceNet's VAL@FAR) and the usual pooled
ROC numbers (AUC, EER, TAR@FAR), but are written so that ties, duplicate scores, one-class folds and tiny
inputs give defined, documented answers instead of crashes or silently optimistic numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

FAR_TARGETS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)

__all__ = ["FAR_TARGETS", "far_key", "roc_curve", "subgroup_metrics", "verification_metrics"]


def far_key(target: float) -> str:
    """Result key for TAR at a FAR target: ``1e-3 -> "tar_at_far_1e-3"``, ``0.05 -> "tar_at_far_5e-2"``."""
    return f"tar_at_far_{_sci(target)}"


def _threshold_key(target: float) -> str:
    return f"threshold_at_far_{_sci(target)}"


def _sci(x: float) -> str:
    # Compact scientific notation without a zero-padded exponent, so keys stay short and readable.
    mantissa, exponent = f"{float(x):e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


# --------------------------------------------------------------------------------------------- validation


def _as_scores(scores: Any) -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scores must be numbers: {exc}") from None
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {s.shape}")
    if s.size == 0:
        raise ValueError("scores is empty: there are no pairs to evaluate")
    if not np.all(np.isfinite(s)):
        bad = int(np.count_nonzero(~np.isfinite(s)))
        raise ValueError(f"scores contain {bad} NaN or infinite value(s); every pair needs a finite score")
    return s


def _as_same(same: Any, n: int) -> np.ndarray:
    raw = np.asarray(same)
    if raw.ndim != 1:
        raise ValueError(f"same must be one-dimensional, got shape {raw.shape}")
    if raw.shape[0] != n:
        raise ValueError(f"scores has {n} pairs but same has {raw.shape[0]}")
    if raw.dtype == np.bool_:
        return raw.astype(bool)
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"same must hold 0/1 or True/False, got values of type {raw.dtype}")
    ok = (raw == 0) | (raw == 1)
    if not np.all(ok):
        bad = raw[~ok][:3].tolist()
        raise ValueError(f"same must hold only 0/1 or True/False, got e.g. {bad}")
    return raw == 1


def _as_folds(folds: Any, n: int, n_folds: int) -> np.ndarray:
    if folds is None:
        if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 1:
            raise ValueError(f"n_folds must be a positive integer, got {n_folds!r}")
        # Contiguous blocks: pairs files list folds one after another (LFW's pairs.txt does).
        return (np.arange(n, dtype=np.int64) * int(n_folds)) // n
    raw = np.asarray(folds)
    if raw.ndim != 1:
        raise ValueError(f"folds must be one-dimensional, got shape {raw.shape}")
    if raw.shape[0] != n:
        raise ValueError(f"scores has {n} pairs but folds has {raw.shape[0]}")
    if raw.dtype.kind in "iu":
        return raw.astype(np.int64)
    if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
        return raw.astype(np.int64)  # integral floats, e.g. read back from CSV
    raise ValueError(f"folds must be integer fold ids, got values of type {raw.dtype}")


def _validate(scores: Any, same: Any, folds: Any = None, n_folds: int = 10) -> tuple[np.ndarray, ...]:
    s = _as_scores(scores)
    y = _as_same(same, s.size)
    f = _as_folds(folds, s.size, n_folds)
    return s, y, f


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


# -------------------------------------------------------------------------------------------------- ROC


def _roc(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (fp, tp) counts and thresholds, one point per distinct score plus the (0, 0) end."""
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    # Last index of each run of equal scores: a threshold accepts a whole tie group or none of it.
    last = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True])
    tp = np.r_[0, np.cumsum(y_desc)[last]].astype(np.int64)
    fp = np.r_[0, (last + 1) - tp[1:]].astype(np.int64)
    thresholds = np.r_[np.inf, s_desc[last]]
    return fp, tp, thresholds


def roc_curve(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds), one point per distinct score plus the (0, 0) end (threshold +inf), ordered by
    increasing FAR (decreasing threshold). Point k: predict same iff score >= thresholds[k]. Agrees with
    ``sklearn.metrics.roc_curve(same, scores, drop_intermediate=False)``; FAR (TAR) is NaN without negatives
    (positives)."""
    s, y, _ = _validate(scores, same)
    fp, tp, thresholds = _roc(s, y)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    far = fp / n_neg if n_neg else np.full(fp.shape, np.nan)
    tar = tp / n_pos if n_pos else np.full(tp.shape, np.nan)
    return far.astype(np.float64), tar.astype(np.float64), thresholds


def _auc(far: np.ndarray, tar: np.ndarray) -> float:
    # Trapezoids over the full (un-thinned) ROC count a tied pos/neg pair as 1/2: the Mann-Whitney statistic.
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def _eer(far: np.ndarray, tar: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    """Equal error rate and its threshold, linearly interpolated where FRR - FAR changes sign."""
    d = (1.0 - tar) - far  # strictly decreasing along the ROC: from +1 at (0, 0) to -1 at (1, 1)
    k = int(np.argmax(d <= 0))
    if d[k] == 0:  # k > 0 here, so thresholds[k] is a finite score
        return float(far[k]), float(thresholds[k])
    w = d[k - 1] / (d[k - 1] - d[k])
    eer = far[k - 1] + w * (far[k] - far[k - 1])
    t0, t1 = thresholds[k - 1], thresholds[k]
    if not np.isfinite(t0):
        thr = t1
    elif not np.isfinite(t1):
        thr = t0
    else:
        thr = t0 + w * (t1 - t0)
    return float(eer), float(thr)


def _tar_at_far(far: np.ndarray, tar: np.ndarray, thresholds: np.ndarray, target: float) -> tuple[float, float]:
    """Largest TAR among ROC points with FAR <= target (never above it), and the largest threshold giving it."""
    ok = np.flatnonzero(far <= target)  # never empty: the (0, 0) end is always eligible
    best = tar[ok].max()
    k = ok[np.argmax(tar[ok] == best)]  # first such point = highest threshold = fewest false accepts
    return float(best), float(thresholds[k])


# ------------------------------------------------------------------------------------------- k-fold parts


def _midpoint(lo: float, hi: float) -> float:
    mid = lo + (hi - lo) / 2.0 if np.isfinite(hi - lo) else lo / 2.0 + hi / 2.0
    # Adjacent doubles have no midpoint; hi itself still splits the training scores the same way.
    return float(mid) if lo < mid < hi else float(hi)


def _best_threshold(s: np.ndarray, y: np.ndarray) -> float:
    """Training threshold maximising accuracy over -inf, +inf and all midpoints; median of the ties.

    O(n log n): candidate j accepts the distinct scores u[j:], so its correct count is
    (positives above u[j-1]) + (negatives at or below u[j-1]), read off cumulative counts.
    """
    u, inv = np.unique(s, return_inverse=True)
    pos = np.bincount(inv, weights=y.astype(np.float64), minlength=u.size).astype(np.int64)
    neg = np.bincount(inv, minlength=u.size).astype(np.int64) - pos
    pos_le = np.r_[0, np.cumsum(pos)]
    neg_le = np.r_[0, np.cumsum(neg)]
    correct = (pos_le[-1] - pos_le) + neg_le
    ties = np.flatnonzero(correct == correct.max())
    j = int(ties[(ties.size - 1) // 2])
    if j == 0:
        return -math.inf
    if j == u.size:
        return math.inf
    return _midpoint(float(u[j - 1]), float(u[j]))


def _val_threshold(neg_scores: np.ndarray, val_far: float) -> float:
    """Lowest threshold letting through at most floor(val_far * n) of these negatives (FaceNet's VAL@FAR)."""
    n = neg_scores.size
    # The tiny slack keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28.
    m = int(math.floor(val_far * n + 1e-9))
    if m >= n:
        return -math.inf
    neg_desc = np.sort(neg_scores)[::-1]
    return float(np.nextafter(neg_desc[m], np.inf))


def _finite_boundary(t: float, train: np.ndarray) -> float:
    """A +-inf training threshold replaced by a finite one just outside the training scores."""
    if np.isfinite(t):
        return t
    lo, hi = float(train.min()), float(train.max())
    eps = 1e-6 * ((hi - lo) or 1.0)
    return lo - eps if t < 0 else hi + eps


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr[~np.isnan(arr)].mean()) if np.any(~np.isnan(arr)) else math.nan


def _nanstd(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr[~np.isnan(arr)].std()) if np.any(~np.isnan(arr)) else math.nan


# ------------------------------------------------------------------------------------------------- public


def verification_metrics(
    scores: Any,
    same: Any,
    folds: Any = None,
    *,
    n_folds: int = 10,
    val_far: float = 1e-3,
    far_targets: tuple[float, ...] = FAR_TARGETS,
) -> dict[str, Any]:
    """k-fold accuracy and VAL@FAR plus pooled AUC, EER and TAR@FAR, as a JSON-friendly dict.

    ``folds=None`` splits the pairs into ``n_folds`` contiguous blocks. Undefined values are NaN and every
    degenerate case is explained in ``result["notes"]``.
    """
    s, y, f = _validate(scores, same, folds, n_folds)
    if not 0.0 <= float(val_far) <= 1.0:
        raise ValueError(f"val_far must be in [0, 1], got {val_far!r}")
    for target in far_targets:
        if not 0.0 < float(target) <= 1.0:
            raise ValueError(f"FAR targets must be in (0, 1], got {target!r}")

    n = s.size
    n_pos = int(y.sum())
    n_neg = n - n_pos
    notes: list[str] = []
    fold_ids = np.unique(f)
    resubstitution = fold_ids.size == 1
    if resubstitution:
        notes.append(
            f"only one fold id ({int(fold_ids[0])}): k-fold is impossible, so accuracy, threshold and VAL are "
            "measured on the pairs they were tuned on (resubstitution, optimistic)"
        )

    # k-fold accuracy and VAL@FAR share the same train/test splits.
    fold_acc: list[float] = []
    fold_thr: list[float] = []
    fold_val: list[float] = []
    fold_far: list[float] = []
    fold_val_thr: list[float] = []
    neg_budget: list[float] = []
    for fid in fold_ids:
        test = f == fid
        train = test if resubstitution else ~test
        s_tr, y_tr, s_te, y_te = s[train], y[train], s[test], y[test]
        label = int(fid)

        t = _best_threshold(s_tr, y_tr)
        fold_acc.append(float(np.mean((s_te >= t) == y_te)))
        if not np.isfinite(t):
            notes.append(
                f"fold {label}: the best training threshold is {'+' if t > 0 else '-'}inf (every pair "
                f"{'rejected' if t > 0 else 'accepted'}); reported as a finite threshold just outside the "
                "training scores"
            )
        fold_thr.append(_finite_boundary(t, s_tr))

        neg_tr = s_tr[~y_tr]
        pos_te, neg_te = s_te[y_te], s_te[~y_te]
        if neg_tr.size == 0:
            notes.append(f"fold {label}: training folds have no negative pairs, VAL undefined there")
            fold_val.append(math.nan)
            fold_far.append(math.nan)
            fold_val_thr.append(math.nan)
            continue
        neg_budget.append(val_far * neg_tr.size)
        vt = _val_threshold(neg_tr, val_far)
        fold_val_thr.append(vt)
        if pos_te.size == 0:
            notes.append(f"fold {label}: test fold has no positive pairs, VAL undefined there")
        fold_val.append(_ratio(np.count_nonzero(pos_te >= vt), pos_te.size))
        fold_far.append(_ratio(np.count_nonzero(neg_te >= vt), neg_te.size))

    if neg_budget and np.mean(neg_budget) < 10:
        notes.append(
            f"VAL@FAR={val_far:g} rests on about {np.mean(neg_budget):.2g} false accepts per training fold "
            f"(too few for a stable estimate)"
        )

    threshold = float(np.mean(fold_thr))
    out: dict[str, Any] = {
        "accuracy": float(np.mean(fold_acc)),
        "accuracy_std": float(np.std(fold_acc)),
        "threshold": threshold,
        "fold_thresholds": fold_thr,
        "fold_accuracies": fold_acc,
        "val": _nanmean(fold_val),
        "val_std": _nanstd(fold_val),
        "far": _nanmean(fold_far),
        "val_far_target": float(val_far),
        "fold_vals": fold_val,
        "fold_fars": fold_far,
        "fold_val_thresholds": fold_val_thr,
    }

    # Pooled ROC numbers over all pairs.
    fp, tp, thresholds = _roc(s, y)
    if n_pos > 0 and n_neg > 0:
        far_c, tar_c = fp / n_neg, tp / n_pos
        out["auc"] = _auc(far_c, tar_c)
        out["eer"], out["eer_threshold"] = _eer(far_c, tar_c, thresholds)
    else:
        notes.append("only one class present: AUC and EER undefined")
        out["auc"] = out["eer"] = out["eer_threshold"] = math.nan
    for target in far_targets:
        if n_neg == 0 or n_pos == 0:
            out[far_key(target)] = out[_threshold_key(target)] = math.nan
            continue
        if target < 1.0 / n_neg:
            notes.append(f"TAR@FAR={target:g}: target is below 1/{n_neg} negatives, so it is reported at FAR=0")
        out[far_key(target)], out[_threshold_key(target)] = _tar_at_far(far_c, tar_c, thresholds, target)
    if n_neg == 0 or n_pos == 0:
        notes.append(f"no {'negative' if n_neg == 0 else 'positive'} pairs: TAR@FAR undefined")

    out["far_at_threshold"] = _ratio(np.count_nonzero(s[~y] >= threshold), n_neg)
    out["frr_at_threshold"] = _ratio(np.count_nonzero(s[y] < threshold), n_pos)
    out["n_pairs"] = int(n)
    out["n_pos"] = n_pos
    out["n_neg"] = n_neg
    out["n_folds"] = int(fold_ids.size)
    out["notes"] = notes
    return out


def _missing(label: Any) -> bool:
    if label is None:
        return True
    if isinstance(label, str | np.str_):
        return label == ""
    # NaN is how pandas and CSV readers spell a missing label.
    return isinstance(label, float | np.floating) and math.isnan(label)


def _sorted_values(values: set[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:  # mixed label types: order by their text instead
        return sorted(values, key=str)


def subgroup_metrics(
    scores: Any, same: Any, folds: Any, groups: dict[str, Sequence], **kwargs: Any
) -> dict[str, dict[str, Any]]:
    """For each attribute name in `groups` (array of one label per pair) and each distinct label value, the
    verification_metrics of that subset of pairs, keyed "attr=value" (sorted by attr then value). Pairs whose
    label is None, "" or NaN are left out of that attribute's groups. kwargs pass through.

    With ``folds=None`` the contiguous folds are assigned over all pairs first, so every subgroup keeps the
    fold split of the whole evaluation.
    """
    s, y, f = _validate(scores, same, folds, kwargs.get("n_folds", 10))
    out: dict[str, dict[str, Any]] = {}
    for attr in sorted(groups):
        labels = list(groups[attr].tolist() if isinstance(groups[attr], np.ndarray) else groups[attr])
        if len(labels) != s.size:
            raise ValueError(f"groups[{attr!r}] has {len(labels)} labels but there are {s.size} pairs")
        present = {lab for lab in labels if not _missing(lab)}
        for value in _sorted_values(present):
            mask = np.fromiter((not _missing(lab) and lab == value for lab in labels), dtype=bool, count=s.size)
            out[f"{attr}={value}"] = verification_metrics(s[mask], y[mask], f[mask], **kwargs)
    return out
