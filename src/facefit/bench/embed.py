"""Embedding throughput: facefit's PyTorch model against dlib's own descriptor, same chips."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class BenchRow:
    backend: str
    batch: int
    images: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "images_per_s": self.images_per_s}


def _timed(run_batch: Callable[[np.ndarray], None], chips: np.ndarray, batch: int, seconds: float,
           min_batches: int = 3, warmup: int = 1) -> tuple[int, float]:
    """Run ``run_batch`` on cycling slices of ``chips`` for about ``seconds``; returns (images, elapsed)."""
    def batch_at(k: int) -> np.ndarray:
        idx = (np.arange(batch) + k * batch) % len(chips)
        return chips[idx]

    for k in range(warmup):
        run_batch(batch_at(k))
    done, k = 0, 0
    start = time.perf_counter()
    while True:
        run_batch(batch_at(k))
        done += batch
        k += 1
        elapsed = time.perf_counter() - start
        if k >= min_batches and elapsed >= seconds:
            return done, elapsed


def bench_facefit(model, chips: np.ndarray, batches: list[int], seconds: float,
                  threads: list[int], label: str = "facefit torch") -> list[BenchRow]:
    import torch

    rows = []
    before = torch.get_num_threads()
    try:
        for th in threads:
            torch.set_num_threads(th)
            for b in batches:
                n, t = _timed(lambda x, b=b: model.embed(x, batch_size=b), chips, b, seconds)
                rows.append(BenchRow(f"{label}, {th} thread{'s' if th > 1 else ''}", b, n, t))
    finally:
        torch.set_num_threads(before)
    return rows


def bench_dlib(chips: np.ndarray, batches: list[int], seconds: float) -> list[BenchRow]:
    import dlib

    from facefit.io.assets import RESNET_V1, verified

    path, _ = verified(RESNET_V1)
    rec = dlib.face_recognition_model_v1(str(path))
    rows = []
    for b in batches:
        if b == 1:
            def run(x: np.ndarray) -> None:
                rec.compute_face_descriptor(np.ascontiguousarray(x[0]))
        else:
            def run(x: np.ndarray) -> None:
                rec.compute_face_descriptor([np.ascontiguousarray(c) for c in x])
        n, t = _timed(run, chips, b, seconds, min_batches=2 if b > 1 else 3, warmup=0 if b > 1 else 1)
        rows.append(BenchRow("dlib compute_face_descriptor", b, n, t))
    return rows
