"""``facefit compare``: the pairwise distance matrix of the faces in some images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import Detector, Faces, Metric, err, out, report_failures

EXIT_PARTIAL = 3


def compare(
    images: Annotated[list[Path], typer.Argument(help="Image files (or folders) to compare.", show_default=False)],
    metric: Annotated[Metric, typer.Option("--metric", help="euclidean: L2 on raw embeddings (dlib's); "
                                                            "cosine: 1 - cosine similarity.")] = Metric.euclidean,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also save the matrix as a heat map (PNG/SVG/PDF).",
                                              show_default=False)] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or path.")] = "dlib-resnet",
    faces: Annotated[Faces, typer.Option("--faces", help="Faces to take from each image.")] = Faces.largest,
    detector: Annotated[Detector, typer.Option("--detector", help="Face detector.")] = Detector.hog,
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are already aligned chips.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --plot file.")] = False,
) -> None:
    """Print the distance between every pair of faces (lower = more alike).

    By default the largest face of each image is used; --faces all compares
    every face. Pairs closer than the model's calibrated threshold are marked.
    """
    from facefit.distances import pairwise_distances
    from facefit.io.files import check_writable, collect_images
    from facefit.models import create_model
    from facefit.pipeline import embed_files
    from facefit.tables import print_distance_matrix

    if plot is not None:
        check_writable(plot, overwrite)
    found = collect_images(images)
    if not found.files:
        raise typer.BadParameter("no image files found", param_hint="IMAGES")
    net = create_model(model)
    result = embed_files(found.files, net, faces=faces.value, detector=detector.value, aligned=aligned)
    report_failures(result.failures, None, result.n_images, "images")
    if len(result) < 2:
        err.print(f"facefit: error: need at least 2 faces to compare, found {len(result)}", markup=False)
        raise typer.Exit(1)
    matrix = pairwise_distances(result.embeddings, metric=metric.value)
    threshold = net.contract.thresholds.get(metric.value)
    print_distance_matrix(out, result.labels, result.paths, matrix, metric.value, threshold)
    if plot is not None:
        from facefit.io.files import write_with
        from facefit.plots import distance_heatmap

        write_with(plot, lambda tmp: distance_heatmap(matrix, result.labels, tmp, metric=metric.value,
                                                      threshold=threshold))
        err.print(f"heat map written to {plot}", markup=False)
    if result.failures:
        raise typer.Exit(EXIT_PARTIAL)
