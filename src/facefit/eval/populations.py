"""Error rates per population at one shared threshold (pure numpy, no I/O).

The question NIST FRVT's demographic report asks: with one threshold, set where a deployment would set it, how
do false matches (FMR) and false non-matches (FNMR) differ between populations?

Everything here is in distances: a pair is a match when ``distance <= threshold``.

- ``threshold_at_fmr``: the largest threshold whose FMR on the given different-person pairs does not exceed the
  target: with ``n`` such pairs, at most ``floor(fmr * n)`` of them are accepted (ties are never split, so a tie
  at the boundary is rejected whole). Below the resolution (``fmr * n < 1``) no different-person pair is accepted.
- ``rates_at``: FMR = accepted different-person pairs / different-person pairs, FNMR = rejected same-person pairs /
  same-person pairs, with the counts. A population without same-person pairs has FNMR None.
- ``gap``: max / min of each rate over the populations. A zero count would make the ratio infinite (or 0/0); such
  a population counts as if it had one error (rate 1/n, the resolution of its measurement) and is listed under
  ``zero_counts``, so the ratio stays finite and is a lower bound when that population's true rate is at most
  1/n. When every population has zero errors, the ratio is None (no gap can be measured).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["gap", "rates_at", "threshold_at_fmr"]


def _finite_1d(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contain NaN or infinite values")
    return a


def threshold_at_fmr(negative_distances: Any, fmr: float) -> float:
    """The largest distance threshold accepting at most ``floor(fmr * n)`` of these different-person pairs."""
    d = np.sort(_finite_1d(negative_distances, "distances"))
    if d.size == 0:
        raise ValueError("no different-person pairs: the FMR cannot be measured")
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"fmr must be between 0 and 1, got {fmr}")
    k = int(math.floor(fmr * d.size + 1e-9))  # the slack keeps e.g. 0.29 * 100 from flooring to 28
    if k >= d.size:
        return float(d[-1])
    # Just below the (k+1)-th smallest distance: it and everything tied with it are rejected.
    return float(np.nextafter(d[k], -np.inf))


def rates_at(distances: Any, same: Any, threshold: float) -> dict[str, Any]:
    """FMR and FNMR of these pairs at ``threshold`` (accept when distance <= threshold), with their counts."""
    d = _finite_1d(distances, "distances")
    y = np.asarray(same, dtype=bool)
    if y.shape != d.shape:
        raise ValueError(f"{d.size} distances but {y.size} same/different labels")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    fm = int(np.count_nonzero(d[~y] <= threshold))
    fnm = int(np.count_nonzero(d[y] > threshold))
    return {"fmr": fm / n_neg if n_neg else None, "fnmr": fnm / n_pos if n_pos else None,
            "false_matches": fm, "false_non_matches": fnm, "n_pos": n_pos, "n_neg": n_neg}


def _ratio(by_population: Mapping[str, Mapping[str, Any]], rate: str, count: str, total: str) -> dict[str, Any]:
    rows = {p: r for p, r in by_population.items() if r.get(total)}
    if not rows:
        return {"ratio": None, "max": None, "min": None, "zero_counts": [], "lower_bound": False}
    zero = sorted(p for p, r in rows.items() if r[count] == 0)
    if len(zero) == len(rows) and len(rows) > 1:
        return {"ratio": None, "max": None, "min": None, "zero_counts": zero, "lower_bound": False}
    floored = {p: max(r[count], 1) / r[total] if p in zero else r[rate] for p, r in rows.items()}
    # The highest is a population with errors: a small one with none would otherwise lead with its floor
    # (0 of 10 pairs is no evidence of a 10% rate). The lowest may be floored, and the ratio is then a
    # lower bound: that population's true rate is at most its floor.
    with_errors = [p for p in rows if p not in zero] or list(rows)
    hi = max(with_errors, key=lambda p: floored[p])
    lo = min(floored, key=lambda p: floored[p])
    return {"ratio": floored[hi] / floored[lo], "max": hi, "min": lo, "zero_counts": zero,
            "lower_bound": lo in zero and lo != hi}


def gap(by_population: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """FMR and FNMR ratios (max / min over populations) of ``rates_at`` results keyed by population."""
    fmr = _ratio(by_population, "fmr", "false_matches", "n_neg")
    fnmr = _ratio(by_population, "fnmr", "false_non_matches", "n_pos")
    return {"fmr_ratio": fmr["ratio"], "fnmr_ratio": fnmr["ratio"],
            "fmr_highest": fmr["max"], "fmr_lowest": fmr["min"],
            "fnmr_highest": fnmr["max"], "fnmr_lowest": fnmr["min"],
            "zero_counts": {"fmr": fmr["zero_counts"], "fnmr": fnmr["zero_counts"]},
            "lower_bound": {"fmr": fmr["lower_bound"], "fnmr": fnmr["lower_bound"]},
            "zero_count_rule": "a population with 0 errors counts as 1 error (rate 1/n) when it is the lowest, "
                               "and the ratio is then a lower bound; it is never the highest; with 0 errors "
                               "everywhere the ratio is null"}
