"""Evaluation speed: a suite's wall time with an empty (cold) and a filled (warm) detection + embedding cache."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EvalBenchRow:
    cache: str  # "cold" or "warm"
    seconds: float  # the whole suite, pairs reading to metrics
    n_pairs: int
    n_images: int
    detected: int  # images run through a detector in this pass (summed over benchmarks)
    embedded: int  # embeddings computed in this pass (summed over benchmarks and models)
    per_benchmark: dict[str, float] = field(default_factory=dict)

    @property
    def pairs_per_s(self) -> float:
        return self.n_pairs / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pairs_per_s": self.pairs_per_s}


def bench_suite(suite: Any, models: list[tuple[str, Any]], options: Any, cache_file: Path, *,
                progress: Any = None, log: Callable[[str], None] = lambda _: None) -> list[EvalBenchRow]:
    """Run ``suite`` twice on ``cache_file`` (which should not exist yet): cold, then warm.

    Insightface .bin sets are imported before timing (a one-off data conversion, cached like ``facefit eval``
    does), so both passes time the evaluation only.
    """
    from facefit.eval.suite import read_suite_pairs, run_suite
    from facefit.io.cache import EvalCache

    read_suite_pairs(suite, n_folds=options.n_folds, log=log)  # checks and .bin imports, untimed
    rows = []
    for which in ("cold", "warm"):
        t0 = time.perf_counter()
        with EvalCache(cache_file) as cache:
            srun = run_suite(suite, models, options, cache, progress=progress)
        seconds = time.perf_counter() - t0
        runs = [r.run for r in srun.runs]
        row = EvalBenchRow(which, seconds, sum(len(r.pairs) for r in runs), sum(len(r.pairs.images()) for r in runs),
                           sum(r.detected_now for r in runs), sum(m.embedded_now for r in runs for m in r.models),
                           dict(srun.seconds))
        log(f"{which} cache: {seconds:.1f} s ({row.detected} images detected, {row.embedded} embeddings computed)")
        rows.append(row)
    return rows
