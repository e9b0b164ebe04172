"""Carrying calibrated thresholds from an evaluation (metrics.json) into 1:1 and 1:N use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from facefit.errors import FacefitError

KINDS = ("far_1e-3", "far_1e-2", "best_accuracy")


@dataclass(frozen=True)
class Calibration:
    threshold: float  # accept as the same person when distance <= threshold
    metric: str
    flip: bool
    subtract_mean: bool
    contract_id: str
    kind: str
    source: str


def load_calibration(path: str | Path, contract_id: str, *, kind: str = "far_1e-3") -> Calibration:
    """The threshold calibrated for the model with ``contract_id`` in a facefit metrics.json.

    Thresholds belong to one model and one scoring setup: using another model's
    threshold is the classic way strangers get accepted, so a mismatch is an error.
    """
    if kind not in KINDS:
        raise FacefitError(f"unknown threshold kind {kind!r}; choose one of {', '.join(KINDS)}")
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
        models = doc["models"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FacefitError(f"{p}: not a facefit metrics.json ({exc})") from None
    found = []
    for label, m in models.items():
        cid = m.get("contract", {}).get("id")
        found.append(f"{label} ({cid})")
        if cid != contract_id:
            continue
        cal = m.get("calibration", {})
        key = "threshold_best_accuracy" if kind == "best_accuracy" else f"threshold_{kind}"
        value = cal.get(key)
        if value is None:
            raise FacefitError(f"{p}: no {kind} threshold recorded for {label} (too few negative pairs?)")
        return Calibration(float(value), cal.get("metric", "euclidean"), bool(cal.get("flip", False)),
                           bool(cal.get("subtract_mean", False)), cid, kind, f"{p} [{label}]")
    raise FacefitError(f"{p}: has thresholds for {', '.join(found) or 'no model'}, not for this model "
                       f"({contract_id}); evaluate this model first")
