"""``facefit embed``: faces in image files -> an .npz of embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import Detector, DetectorOpt, Faces, err, info, progress_bar, report_failures, write_failures
from facefit.cli.options import EXIT_PARTIAL, ModelOpt, PrecisionOpt
from facefit.defaults import DEFAULT_MODEL


def embed(
    inputs: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).",
                                                 show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file.", show_default=False)],
    model: ModelOpt = DEFAULT_MODEL,
    precision: PrecisionOpt = None,
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are already aligned chips: skip detection.")]
    = False,
    faces: Annotated[Faces, typer.Option("--faces", help="Which faces to keep from each image.")] = Faces.all,
    detector: DetectorOpt = Detector.model,
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1,
                                                help="Detection processes (default: CPU cores, at most 4).")]
    = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Faces per forward pass.")] = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Detect, align and embed every face in the inputs; write them to an .npz.

    The file holds `paths` (one per face), `embeddings` (float32, N x D, the
    model's raw output), `boxes` and `landmarks` (absent with --aligned),
    `face_index`, `scores`, and the model's embedding `contract`. Files that
    fail (unreadable, no face) are listed on stderr and, beside a written
    output, in OUT.failures.tsv; the exit code is 3 when some failed and 1
    when all did (then nothing is written).
    """
    from facefit.engine import FaceEngine
    from facefit.io.embeddings import save_embeddings
    from facefit.io.files import check_not_input, check_writable, collect_images
    from facefit.models import create_model

    out = check_writable(out, overwrite)
    failures_path = out.with_name(out.name + ".failures.tsv")
    check_writable(failures_path, overwrite)
    found = collect_images(inputs)
    for note in found.notes():
        info(note)
    if not found.files:
        raise typer.BadParameter("no image files found in the inputs", param_hint="INPUTS")
    for path in (out, failures_path):
        check_not_input(path, found.files)
    net = create_model(model)
    with progress_bar("embedding", total=len(found.files)) as bar:
        engine = FaceEngine(net, detector=detector.name_or_none, faces=faces.value, workers=workers,
                            batch_size=batch_size)
        result = engine.embed_files(found.files, aligned=aligned, on_image=bar.advance)
    report_failures(result.failures, None, result.n_images, "images")  # before writing: a late failure loses none
    if not len(result):
        err.print("facefit: error: no face was embedded; nothing written", markup=False)
        raise typer.Exit(1)
    import numpy as np

    extra = {"face_index": np.asarray(result.face_index, np.int32), "scores": np.asarray(result.scores, np.float32),
             "detectors": np.asarray(result.detectors, dtype=str)}
    if not aligned:
        extra["boxes"] = np.asarray(result.boxes, np.float32).reshape(-1, 4)
        extra["landmarks"] = np.asarray(result.landmarks, np.float32).reshape(-1, 5, 2)
    save_embeddings(out, paths=result.paths, embeddings=result.embeddings, contract_json=net.contract.to_json(),
                    extra=extra)
    if result.failures:
        write_failures(failures_path, result.failures)
        info(f"the failed images are listed in {failures_path}")
    elif failures_path.exists():
        failures_path.unlink()  # a stale list from an earlier run (we were allowed to overwrite) would mislead
    n_ok = result.n_images - len(result.failures)
    info(f"wrote {len(result)} face embedding(s) from {n_ok} of {result.n_images} image(s) to {out} "
         f"[{net.contract.id}]")
    if result.failures:
        raise typer.Exit(EXIT_PARTIAL)
