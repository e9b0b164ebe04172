"""``facefit bench eval``: how long a suite evaluation takes from an empty cache and from a filled one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import (
    BenchJsonOpt,
    BenchOutOpt,
    BenchOverwriteOpt,
    Detector,
    EvalDetectorOpt,
    WorkersOpt,
    bench_results,
    info,
)
from facefit.cli.options import ModelsOpt


def bench_eval(
    suite: Annotated[Path, typer.Option("--suite", "-s", help="Suite YAML to time (e.g. suites/demo.yaml).",
                                        show_default=False)],
    model: ModelsOpt = None,
    detector: EvalDetectorOpt = Detector.model,
    workers: WorkersOpt = None,
    as_json: BenchJsonOpt = False,
    out_file: BenchOutOpt = None,
    overwrite: BenchOverwriteOpt = False,
) -> None:
    """Wall time of 'facefit eval --suite' with a cold and a warm cache.

    The cold pass starts from an empty detection + embedding cache in a
    temporary folder (deleted afterwards; your own cache is neither read nor
    changed), so every image is detected, aligned and embedded; the warm pass
    repeats the evaluation on the filled cache, as a re-run does.
    """
    import os
    import platform
    import tempfile

    import torch
    from rich.table import Table

    from facefit.bench.eval import bench_suite
    from facefit.defaults import default_model
    from facefit.eval.labels import model_labels
    from facefit.eval.run import EvalOptions
    from facefit.eval.suite import load_suite
    from facefit.io.files import check_writable
    from facefit.models import create_model

    loaded = load_suite(suite)
    if out_file is not None:
        check_writable(out_file, overwrite)
    names = model or [default_model()]
    models = [(label, create_model(n)) for label, n in zip(model_labels(names), names)]
    options = EvalOptions(metric="auto", detector=detector.name_or_none, workers=workers)
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    info(f"{os.cpu_count()} CPU(s){load}, {platform.processor() or platform.machine()}; torch {torch.__version__}; "
         f"suite {suite} ({len(loaded.benchmarks)} benchmark(s)); models: {', '.join(lb for lb, _ in models)}")
    with tempfile.TemporaryDirectory(prefix="facefit-bench-eval-") as tmp:
        rows = bench_suite(loaded, models, options, Path(tmp) / "eval-cache.sqlite", log=info)
    table = Table(title=f"suite evaluation wall time ({suite})", title_justify="left")
    for col in ("cache", "seconds", "pairs", "images", "detected", "embedded", "pairs/s",
                *[b.name for b in loaded.benchmarks]):
        table.add_column(col, justify="left" if col == "cache" else "right")
    for r in rows:
        table.add_row(r.cache, f"{r.seconds:.1f}", str(r.n_pairs), str(r.n_images), str(r.detected),
                      str(r.embedded), f"{r.pairs_per_s:.0f}", *[f"{r.per_benchmark[b.name]:.1f}"
                                                                for b in loaded.benchmarks])
    doc = {"rows": [r.as_dict() for r in rows], "suite": str(suite), "models": [lb for lb, _ in models],
           "cpus": os.cpu_count(), "torch": torch.__version__}
    bench_results(table, doc, as_json, out_file)
