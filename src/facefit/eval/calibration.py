"""Calibrated thresholds from an evaluation's metrics.json; the policy lives in ``facefit.models.thresholds``."""

from facefit.models.thresholds import KINDS, Calibration, load_calibration

__all__ = ["KINDS", "Calibration", "load_calibration"]
