"""One threshold policy for 1:1 and 1:N decisions, used by the CLI, the gallery, eval and the REST API.

A decision threshold is, in order: the value given, else one calibrated for this very model by an
evaluation (its metrics.json), else a configured default (e.g. a server setting), else the model's own
(1:1: its best-accuracy threshold; 1:N: the stricter FAR 1e-3 one when it has it). Errors name values and
files, never a command-line option.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facefit.errors import FacefitError
from facefit.models.contract import EmbeddingContract, verification_threshold

KINDS = ("far_1e-3", "far_1e-2", "best_accuracy")
Task = Literal["verify", "identify"]


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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FacefitError(f"{p}: not a facefit metrics.json ({exc})") from None
    if not isinstance(models, dict):
        raise FacefitError(f"{p}: not a facefit metrics.json (its 'models' is not an object)")
    found = []
    for label, m in models.items():
        cid = m.get("contract", {}).get("id") if isinstance(m, dict) else None
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


@dataclass(frozen=True)
class Threshold:
    """A decision threshold (accept when distance <= value) and where it came from."""

    value: float | None
    source: str
    calibration: Calibration | None = None

    def require(self) -> float:
        """The value, or an error saying why there is none and what would give one."""
        if self.value is None:
            raise FacefitError(f"no threshold: {self.source}; give a threshold, or the metrics.json of an "
                               f"evaluation of this model to take its calibrated one")
        return self.value


def choose_threshold(contract: EmbeddingContract, task: Task, *, metric: str | None = None,
                     given: float | None = None, given_source: str = "given",
                     calibration: str | Path | None = None,
                     default: float | None = None, default_source: str = "the configured default") -> Threshold:
    """The threshold for ``task`` under ``contract``, by the module's order; ``metric`` defaults to the model's.

    ``given`` and ``calibration`` exclude each other. A calibration must be of this model (its contract id)
    and of the same distance metric.
    """
    if given is not None and calibration is not None:
        raise FacefitError("both a threshold and a calibration file were given; give one")
    if given is not None and not math.isfinite(given):
        raise FacefitError(f"threshold {given}: not a finite number")
    metric = metric or contract.distance
    if given is not None:
        return Threshold(float(given), given_source)
    if calibration is not None:
        cal = load_calibration(calibration, contract.id)
        if cal.metric != metric:
            raise FacefitError(f"{cal.source} was calibrated with the {cal.metric} distance; this needs {metric}")
        return Threshold(cal.threshold, f"{cal.kind} from {cal.source}", cal)
    if default is not None:
        return Threshold(float(default), default_source)
    value, source = (contract.identification_threshold(metric) if task == "identify"
                     else verification_threshold(contract, None, metric))
    return Threshold(value, source)
