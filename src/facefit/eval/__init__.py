"""Verification evaluation: metrics (pure numpy), runs over pairs files, reports and plots."""

from facefit.eval.metrics import subgroup_metrics, verification_metrics

__all__ = ["subgroup_metrics", "verification_metrics"]
