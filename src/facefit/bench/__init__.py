"""Benchmarks behind ``facefit bench ...``."""
