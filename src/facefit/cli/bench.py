"""``facefit bench ...``: throughput benchmarks (figures for the README, never timed tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.bench_eval import bench_eval
from facefit.cli.bench_serve import bench_serve
from facefit.cli.bench_stream import bench_stream
from facefit.cli.common import BenchJsonOpt, BenchOutOpt, BenchOverwriteOpt, bench_results, info
from facefit.cli.options import PrecisionOpt
from facefit.errors import UsageError

bench_app = typer.Typer(help="Measure throughput on this machine.", no_args_is_help=True)
bench_app.command("stream")(bench_stream)
bench_app.command("serve")(bench_serve)
bench_app.command("eval")(bench_eval)


def _bench_chips(data: Path | None, size: int, n: int = 64):
    """Real aligned chips from the data folder when present, else random pixels (speed is content-blind)."""
    import numpy as np

    from facefit.io.assets import find_data_dir
    from facefit.io.files import collect_images
    from facefit.io.images import load_image

    root = find_data_dir(data)
    johns = root / "fixtures" / "johns" if root else None
    if johns is not None and johns.is_dir():
        files = collect_images([johns]).files[:n]
        chips = [load_image(f) for f in files]
        chips = [c for c in chips if c.shape[:2] == (150, 150)]
        if chips:
            if size == 150:
                return np.stack(chips), f"{len(chips)} real aligned chips from {johns}"
            import cv2

            # Speed does not depend on how the face is cut, only on the chip's size.
            small = [cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in chips]
            return np.stack(small), f"{len(chips)} real chips from {johns}, resized to {size}x{size}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), f"{n} random {size}x{size} chips (no data found)"


@bench_app.command("embed")
def bench_embed(
    batch: Annotated[list[int], typer.Option("--batch", "-b", min=1, help="Batch sizes to time.")] = [1, 32, 64],  # noqa: B006
    seconds: Annotated[float, typer.Option("--seconds", min=0.1, help="Time per measurement.")] = 4.0,
    threads: Annotated[list[int] | None, typer.Option("--threads", "-t", min=1,
                                                      help="torch CPU thread counts to time (default: 1 and all).")]
    = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model name or path; repeat to time "
                                                                          "several (default: dlib-resnet and "
                                                                          "sface).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder with fixtures/johns.")] = None,
    no_dlib: Annotated[bool, typer.Option("--no-dlib", help="Skip dlib's descriptor (slow: ~20 img/s).")] = False,
    precision: PrecisionOpt = None,
    remeasure: Annotated[bool, typer.Option("--remeasure", help="With precision auto: time fp32 against bf16 "
                                                                "again instead of using this machine's cached "
                                                                "choice.")] = False,
    end_to_end: Annotated[bool, typer.Option("--end-to-end", help="Time photos -> embeddings on LFW photos instead: "
                                                                  "detection + alignment alone, embedding alone, "
                                                                  "and the two together as `facefit embed` runs "
                                                                  "them (--batch, --threads, --seconds and "
                                                                  "--no-dlib do not apply).")] = False,
    images: Annotated[int, typer.Option("--images", min=8, help="Photos timed with --end-to-end.")] = 300,
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1, help="Alignment processes with "
                                                                           "--end-to-end.")] = None,
    detector: Annotated[str | None, typer.Option("--detector", help="Detector with --end-to-end: hog, yunet, mmod, "
                                                                    "auto [default: each model's own].",
                                                 show_default=False)] = None,
    as_json: BenchJsonOpt = False,
    out_file: BenchOutOpt = None,
    overwrite: BenchOverwriteOpt = False,
) -> None:
    """Embedding throughput (images/s) of facefit vs dlib's compute_face_descriptor on the same chips.

    With --end-to-end: photos -> embeddings on the first LFW photos, stage by stage and together.
    """
    if end_to_end:
        _bench_end_to_end(model or ["dlib-resnet", "sface"], data, images, workers, detector, as_json, out_file,
                          overwrite)
        return
    import os
    import platform

    import torch
    from rich.table import Table

    from facefit.bench.embed import bench_dlib, bench_facefit
    from facefit.io.assets import RESNET_V1
    from facefit.io.files import check_writable
    from facefit.models import create_model

    if out_file is not None:
        check_writable(out_file, overwrite)
    threads = threads or sorted({1, torch.get_num_threads()})
    rows, dlib_rows, ids, precisions = [], [], [], {}
    for name in model or ["dlib-resnet", "sface"]:
        net = create_model(name)
        size = net.contract.input_size[0]
        chips, what = _bench_chips(data, size)
        info(f"{name}: benchmarking on {what}; torch {torch.__version__}, {os.cpu_count()} CPU(s), "
             f"{platform.processor() or platform.machine()}")
        # Random pixels time fine, but say nothing of how far bf16 moves a face: measure, don't remember.
        choice = net.resolve_precision(chips[:8], remeasure=remeasure, remember="random" not in what)
        info(f"{name}: precision {choice.describe()}")
        precisions[name] = choice.to_json()
        rows += bench_facefit(net, chips, batch, seconds, threads, label=f"{name} {net.precision}")
        ids.append(net.contract.id)
        if not no_dlib and not dlib_rows and net.contract.architecture == "dlib-resnet" and \
                net.contract.weights_sha256 == RESNET_V1.sha256:
            info("dlib's own compute_face_descriptor on the same chips runs on one thread")
            dlib_rows = bench_dlib(chips, batch, seconds)
    threads_used = threads
    by_batch = {r.batch: r for r in dlib_rows}
    table = Table(title="embedding throughput", title_justify="left")
    for col in ("backend", "batch", "images/s", "ms/image", "vs dlib"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for r in rows + dlib_rows:
        ref = by_batch.get(r.batch)
        ratio = f"{r.images_per_s / ref.images_per_s:.1f}x" if ref and r is not ref else ""
        table.add_row(r.backend, str(r.batch), f"{r.images_per_s:.1f}", f"{1000 / r.images_per_s:.2f}", ratio)
    doc = {"rows": [r.as_dict() for r in rows + dlib_rows], "threads": threads_used,
           "torch": torch.__version__, "models": ids,
           "precision": precisions}
    bench_results(table, doc, as_json, out_file)


def _photos(data: Path | None, n: int) -> tuple[list[Path], str]:
    """The first ``n`` LFW photos (by name) of the data folder, else the Yale fixtures."""
    from facefit.io.assets import find_data_dir
    from facefit.io.files import collect_images

    root = find_data_dir(data)
    for sub, what in (("lfw/images", "LFW photos (250x250)"), ("fixtures/yale/original", "Yale photos (320x243)")):
        if root is not None and (root / sub).is_dir():
            files = sorted(collect_images([root / sub]).files)[:n]
            return files, f"{len(files)} {what} from {root / sub}"
    raise UsageError("no photos to time: the data folder has neither lfw/images nor fixtures/yale (give --data DIR)")


def _bench_end_to_end(models: list[str], data: Path | None, n: int, workers: int | None, detector: str | None,
                      as_json: bool, out_file: Path | None, overwrite: bool) -> None:
    import os
    import platform

    import torch
    from rich.table import Table

    from facefit.bench.pipeline import bench_end_to_end
    from facefit.io.files import check_writable
    from facefit.models import create_model

    if out_file is not None:
        check_writable(out_file, overwrite)
    files, what = _photos(data, n)
    info(f"photos -> embeddings on {what}; torch {torch.__version__}, {os.cpu_count()} CPU(s), "
         f"{platform.processor() or platform.machine()}")
    rows, precisions = [], {}
    for name in models:
        net = create_model(name)
        rows += bench_end_to_end(name, net, files, workers, detector)
        precisions[name] = net.precision_choice.to_json() if net.precision_choice is not None else \
            {"precision": net.precision}
    table = Table(title="photos -> embeddings", title_justify="left")
    for col in ("model", "detector", "stage", "photos", "faces", "seconds", "photos/s"):
        table.add_column(col, justify="left" if col in ("model", "detector", "stage") else "right")
    for r in rows:
        table.add_row(f"{r.model} {precisions[r.model]['precision']}", r.detector, r.stage, str(r.images),
                      str(r.faces),
                      f"{r.seconds:.1f}", f"{r.images_per_s:.1f}")
    doc = {"rows": [r.as_dict() for r in rows], "photos": what, "cpus": os.cpu_count(), "torch": torch.__version__,
           "precision": precisions}
    bench_results(table, doc, as_json, out_file)


@bench_app.command("search")
def bench_search(
    size: Annotated[list[int], typer.Option("--size", "-n", min=1, help="Gallery sizes (faces).")]
    = [10_000, 100_000, 1_000_000],  # noqa: B006
    queries: Annotated[int, typer.Option("--queries", min=10, help="Queries per measurement.")] = 1000,
    index: Annotated[list[str], typer.Option("--index", help="Index kinds to time: exact, ivf, hnsw (hnsw takes "
                                             "~7 minutes to build at 1M on 2 cores).")] = ["exact", "ivf"],  # noqa: B006
    nprobe: Annotated[list[int], typer.Option("--nprobe", min=1, help="IVF lists scanned per query.")]
    = [32, 64, 128],  # noqa: B006
    ef: Annotated[list[int], typer.Option("--ef", min=1, help="HNSW efSearch values.")] = [128, 256, 512],  # noqa: B006
    dim: Annotated[int, typer.Option("--dim", min=2, help="Embedding dimension.")] = 128,
    as_json: BenchJsonOpt = False,
    out_file: BenchOutOpt = None,
    overwrite: BenchOverwriteOpt = False,
) -> None:
    """1:N search latency (p50/p99 per query) and recall@1 against exact search, on synthetic embeddings.

    Galleries of clustered synthetic vectors (5 faces per person); queries are
    new samples of enrolled persons, searched one at a time for the best
    person, exactly as 'facefit identify' does. recall@1 is the share of
    queries whose nearest face equals the exact search's.
    """
    import os

    from rich.table import Table

    from facefit.bench.search import bench_size
    from facefit.io.files import check_writable

    if out_file is not None:
        check_writable(out_file, overwrite)
    info(f"{os.cpu_count()} CPU(s); synthetic {dim}-D galleries; {queries} queries each")
    bad = set(index) - {"exact", "ivf", "hnsw"}
    if bad:
        raise typer.BadParameter(f"unknown index kind(s): {', '.join(sorted(bad))}", param_hint="--index")
    rows = []
    for n in size:
        rows += bench_size(n, dim=dim, n_queries=queries, kinds=tuple(index), nprobe=tuple(nprobe),
                           ef_search=tuple(ef), log=info)
    table = Table(title="gallery search (best face per person, top 1)", title_justify="left")
    for col in ("faces", "index", "build s", "p50 ms", "p99 ms", "recall@1", "person recall@1"):
        table.add_column(col, justify="left" if col == "index" else "right")
    for r in rows:
        table.add_row(f"{r.size:,}", r.index, f"{r.build_s:.1f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
                      f"{r.recall_at_1:.4f}", f"{r.person_recall_at_1:.4f}")
    doc = {"rows": [r.as_dict() for r in rows], "dim": dim, "queries": queries}
    bench_results(table, doc, as_json, out_file)
