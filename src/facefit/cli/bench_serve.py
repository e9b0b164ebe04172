"""``facefit bench serve``: request latency of the REST API over real HTTP, with concurrent clients."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import BenchJsonOpt, BenchOutOpt, BenchOverwriteOpt, bench_results, info
from facefit.cli.options import ModelOpt, PrecisionOpt
from facefit.defaults import DEFAULT_MODEL


def bench_serve(
    persons: Annotated[int, typer.Option("--persons", min=2, help="Persons enrolled (2 photos each).")] = 50,
    requests: Annotated[int, typer.Option("--requests", "-n", min=1, help="Requests per endpoint and "
                                          "concurrency.")] = 100,
    concurrency: Annotated[list[int], typer.Option("--concurrency", "-c", min=1, help="Concurrent clients "
                                                   "(one run each).")] = [1, 4],  # noqa: B006
    faces_from: Annotated[Path | None, typer.Option("--faces-from", help="A folder with one sub-folder of photos "
                                                    "per person (default: lfw/images in $FACEFIT_DATA or "
                                                    "../shared/data).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    precision: PrecisionOpt = None,
    as_json: BenchJsonOpt = False,
    out_file: BenchOutOpt = None,
    overwrite: BenchOverwriteOpt = False,
) -> None:
    """Latency and throughput of POST /verify and /identify, served by uvicorn on this machine.

    Enrols the persons with the most photos in a temporary gallery, then sends
    each one's held-back photo (never enrolled) to /identify, and to /verify
    against an enrolled photo, from 1 and 4 concurrent clients. Latency covers
    the whole request: upload, decoding, detection, alignment, embedding and
    search. correct is the share of right names (identify) or accepted
    same-person pairs (verify).
    """
    import os
    import tempfile

    from rich.table import Table

    from facefit.bench.serve import bench_serve as run_bench
    from facefit.bench.stream import faces_folder
    from facefit.errors import FacefitError
    from facefit.io.files import check_writable

    try:
        import fastapi  # noqa: F401
        import httpx  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise FacefitError(f"the serve benchmark needs the [serve] extra and httpx: pip install 'facefit[serve]' "
                           f"httpx ({exc.name} is missing)") from None
    if out_file is not None:
        check_writable(out_file, overwrite)
    folder = faces_folder(faces_from, "enrols and sends real face photos")
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    info(f"{os.cpu_count()} CPU(s){load}; {persons} persons from {folder}")

    def log(r) -> None:
        info(f"  {r.endpoint}, {r.concurrency} client(s): {r.per_s:.1f}/s, p50 {r.p50_ms:.0f} ms")

    with tempfile.TemporaryDirectory(prefix="facefit-bench-serve-") as tmp:
        rows = run_bench(folder, Path(tmp), persons=persons, requests=requests, concurrency=concurrency,
                         model_name=model, on_row=log)
    table = Table(title=f"REST API over HTTP, {persons} persons enrolled, {requests} requests per row",
                  title_justify="left")
    for col in ("endpoint", "clients", "requests/s", "p50 ms", "p95 ms", "p99 ms", "correct"):
        table.add_column(col, justify="left" if col == "endpoint" else "right")
    for r in rows:
        table.add_row(r.endpoint, str(r.concurrency), f"{r.per_s:.1f}", f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}",
                      f"{r.p99_ms:.0f}", f"{r.correct:.2f}")
    doc = {"rows": [r.as_dict() for r in rows], "persons": persons, "cpus": os.cpu_count(),
           "faces_from": str(folder), "model": model}
    bench_results(table, doc, as_json, out_file)
