"""Verification evaluation: metrics (pure numpy), runs over pairs files, reports and plots."""
