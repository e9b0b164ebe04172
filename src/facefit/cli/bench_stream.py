"""``facefit bench stream``: end-to-end frames per second of ``facefit stream`` on a synthetic video."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import BenchJsonOpt, BenchOutOpt, BenchOverwriteOpt, bench_results, info
from facefit.cli.options import ModelOpt, PrecisionOpt
from facefit.defaults import DEFAULT_MODEL
from facefit.stream import DEFAULT_DETECT_EVERY

MAX_FACES = 4  # lanes of 160 px in a 640 px frame; more faces would overlap


def bench_stream(
    frames: Annotated[int, typer.Option("--frames", "-n", min=10, help="Frames per video.")] = 300,
    faces: Annotated[list[int], typer.Option("--faces", min=1, max=MAX_FACES, help="Faces in the video (one "
                                             "run each).")] = [1, 2, 3],  # noqa: B006
    detect_every: Annotated[list[int], typer.Option("--detect-every", min=1, help="Detector intervals to time.")]
    = [DEFAULT_DETECT_EVERY],  # noqa: B006
    tracker: Annotated[list[str], typer.Option("--tracker", help="Trackers to time: flow, correlation, none.")]
    = ["flow"],  # noqa: B006
    faces_from: Annotated[Path | None, typer.Option("--faces-from", help="A folder with one sub-folder of photos "
                                                    "per person (default: lfw/images in $FACEFIT_DATA or "
                                                    "../shared/data).", show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    precision: PrecisionOpt = None,
    as_json: BenchJsonOpt = False,
    out_file: BenchOutOpt = None,
    overwrite: BenchOverwriteOpt = False,
) -> None:
    """Frames per second of 'facefit stream' on a 640x480 video of 1-3 real faces.

    Builds, in a temporary folder that is deleted afterwards, a video of face
    photos pasted on a background and drifting slowly, and a gallery of the
    same persons enrolled from their other photos; then times the whole loop
    (decode, detect on every N-th frame, track, identify, draw), without and
    with writing the annotated video. box IoU and recall score the tracked
    boxes against the true face positions; named is the share of tracks
    given the right name.
    """
    import os
    import tempfile

    from rich.table import Table

    from facefit.bench.stream import bench_stream as run_bench
    from facefit.bench.stream import faces_folder
    from facefit.io.files import check_writable
    from facefit.stream.runner import StreamConfig

    for t in tracker:
        StreamConfig(tracker=t)  # validates the name before the slow part
    if out_file is not None:
        check_writable(out_file, overwrite)
    folder = faces_folder(faces_from, "builds its video from real face photos")
    import torch

    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    info(f"{os.cpu_count()} CPU(s){load}; torch {torch.__version__}; faces from {folder}")

    def log(r) -> None:
        info(f"  {r.faces} face(s), detect every {r.detect_every}, {r.tracker}, "
             f"{'writing' if r.write else 'no output'}: {r.fps:.1f} FPS")

    with tempfile.TemporaryDirectory(prefix="facefit-bench-stream-") as tmp:
        rows = run_bench(folder, Path(tmp), faces=faces, frames=frames, detect_every=detect_every,
                         trackers=tracker, model_name=model, on_row=log)
    table = Table(title=f"stream, 640x480, {frames} frames (FPS: the whole loop, decoding included)",
                  title_justify="left")
    for col in ("faces", "detect every", "tracker", "output", "FPS", "ms/frame", "det. runs", "identified",
                "box IoU", "recall", "named"):
        table.add_column(col, justify="left" if col in ("tracker", "output") else "right")
    for r in rows:
        table.add_row(str(r.faces), str(r.detect_every), r.tracker, "MJPG .avi" if r.write else "none",
                      f"{r.fps:.1f}", f"{1000 / r.fps:.1f}", str(r.detections), str(r.identifications),
                      f"{r.box_iou:.3f}", f"{r.face_recall:.3f}", f"{r.named:.2f}")
    doc = {"rows": [r.as_dict() for r in rows], "frames": frames, "cpus": os.cpu_count(),
           "torch_threads": StreamConfig().torch_threads, "faces_from": str(folder)}
    bench_results(table, doc, as_json, out_file)
