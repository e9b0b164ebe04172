"""``facefit compare``: the pairwise distance matrix of the faces in some images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import Detector, DetectorOpt, EvalMetric, Faces, distance_threshold, err, out, report_failures
from facefit.cli.options import EXIT_PARTIAL, ModelOpt, PrecisionOpt
from facefit.defaults import DEFAULT_MODEL


def compare(
    images: Annotated[list[Path], typer.Argument(help="Image files (or folders) to compare.", show_default=False)],
    metric: Annotated[EvalMetric, typer.Option("--metric", help="auto: the model's own distance; euclidean: L2 on "
                                                                "raw embeddings (dlib's); cosine: 1 - cosine "
                                                                "similarity.")] = EvalMetric.auto,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also save the matrix as a heat map (PNG/SVG/PDF).",
                                              show_default=False)] = None,
    model: ModelOpt = DEFAULT_MODEL,
    precision: PrecisionOpt = None,
    faces: Annotated[Faces, typer.Option("--faces", help="Faces to take from each image.")] = Faces.largest,
    detector: DetectorOpt = Detector.model,
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are already aligned chips.")] = False,
    threshold: Annotated[float | None, typer.Option("--threshold", callback=distance_threshold,
                                                    help="Mark pairs closer than this distance.",
                                                    show_default=False)] = None,
    threshold_from: Annotated[Path | None, typer.Option("--threshold-from", help="Take the threshold calibrated "
                                                        "for this model (at FAR 1e-3) from a metrics.json.",
                                                        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --plot file.")] = False,
) -> None:
    """Print the distance between every pair of faces (lower = more alike).

    By default the largest face of each image is used; --faces all compares
    every face. Pairs closer than a threshold are marked: --threshold,
    --threshold-from an evaluation's metrics.json, or the model's own default.
    """
    from facefit.distances import pairwise_distances
    from facefit.engine import FaceEngine
    from facefit.io.files import check_not_input, check_writable, collect_images
    from facefit.models import create_model
    from facefit.tables import print_distance_matrix

    if threshold is not None and threshold_from is not None:
        raise typer.BadParameter("give --threshold or --threshold-from, not both")
    if plot is not None:
        from facefit.plots import PLOT_SUFFIXES

        if plot.suffix.lower() not in PLOT_SUFFIXES:
            raise typer.BadParameter(f"{plot}: a figure needs one of the suffixes {', '.join(PLOT_SUFFIXES)}",
                                     param_hint="--plot")
        check_writable(plot, overwrite)
    found = collect_images(images)
    for note in found.notes():
        err.print(note, markup=False)
    if not found.files:
        raise typer.BadParameter("no image files found", param_hint="IMAGES")
    if plot is not None:
        check_not_input(plot, found.files)
    net = create_model(model)
    from facefit.eval.run import model_metric
    from facefit.models.thresholds import choose_threshold

    distance = model_metric(net.contract, metric.value)
    # Chosen before the work, so a wrong calibration file fails at once; a model without one leaves it None.
    chosen = choose_threshold(net.contract, "verify", metric=distance, given=threshold, given_source="--threshold",
                              calibration=threshold_from)
    cal = chosen.calibration
    if cal is not None:
        if (cal.flip and not net.contract.flip_average) or cal.subtract_mean:
            err.print("facefit: warning: that threshold was calibrated with --flip/--subtract-mean, which compare "
                      "does not apply; it may be off", markup=False)
        err.print(f"threshold {cal.threshold:.4f} ({cal.kind}) from {cal.source}", markup=False)
    threshold = chosen.value
    engine = FaceEngine(net, detector=detector.name_or_none, faces=faces.value)
    result = engine.embed_files(found.files, aligned=aligned)
    report_failures(result.failures, None, result.n_images, "images")
    if len(result) < 2:
        err.print(f"facefit: error: need at least 2 faces to compare, found {len(result)}", markup=False)
        raise typer.Exit(1)
    matrix = pairwise_distances(result.embeddings, metric=distance)
    print_distance_matrix(out, result.labels, result.paths, matrix, distance, threshold)
    if plot is not None:
        from facefit.io.files import write_with
        from facefit.plots import distance_heatmap

        write_with(plot, lambda tmp: distance_heatmap(matrix, result.labels, tmp, metric=distance,
                                                      threshold=threshold))
        err.print(f"heat map written to {plot}", markup=False)
    if result.failures:
        raise typer.Exit(EXIT_PARTIAL)
