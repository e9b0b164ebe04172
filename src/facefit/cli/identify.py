"""``facefit identify``: who is in these photos? Open-set 1:N search against the gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import Detector, DetectorOpt, distance_threshold, info, out, report_failures
from facefit.cli.gallery import gallery_model, open_gallery, resolve_threshold
from facefit.cli.options import EXIT_PARTIAL, GalleryModelOpt, GalleryOpt, JsonOpt, PrecisionOpt, ThresholdFromOpt


def identify(
    images: Annotated[list[Path], typer.Argument(help="Photos (files or folders).", show_default=False)],
    gallery: GalleryOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Matches to list per face.")] = 3,
    threshold: Annotated[float | None, typer.Option("--threshold", callback=distance_threshold,
                                                    help="Accept a match when its distance is at "
                                                    "most this (default: the model's own).", show_default=False)]
    = None,
    threshold_from: ThresholdFromOpt = None,
    aggregate: Annotated[str, typer.Option("--aggregate", help="Score a person by their best face or by their "
                                           "mean template (best|mean).")] = "best",
    index: Annotated[str, typer.Option("--index", help="auto (exact below 200k faces, IVF above), exact, ivf "
                                       "(faiss inverted lists) or hnsw (faiss graph).")] = "auto",
    model: GalleryModelOpt = None,
    precision: PrecisionOpt = None,
    detector: DetectorOpt = Detector.model,
    json_out: JsonOpt = False,
) -> None:
    """Identify every face in the photos against the gallery, or call it unknown.

    Distances are the model's own (dlib-resnet: Euclidean; lower = more alike).
    A face whose best match is farther than the threshold is "unknown": that
    is what keeps strangers from being matched to someone. With --json each
    face is one line: {"image", "face", "box", "name", "distance", "metric",
    "matches": [{"name", "distance"}, ...]}, where name
    is null when unknown.
    """
    import json

    from rich.table import Table

    from facefit.engine import FaceEngine
    from facefit.io.files import collect_images

    found = collect_images(images)
    if not found.files:
        raise typer.BadParameter("no image files found", param_hint="IMAGES")
    with open_gallery(gallery, aggregation=aggregate, index=index) as g:
        net = gallery_model(g, model)
        g.check_model(net)
        limit, source = resolve_threshold(g, net, threshold, threshold_from)
        result = FaceEngine(net, detector=detector.name_or_none).embed_files(found.files)
        answers = g.identify(result.embeddings, net, threshold=limit, top_k=top_k) if len(result) else []
        metric = g.metric
    report_failures(result.failures, None, result.n_images, "images")
    if json_out:
        for path, k, box, a in zip(result.paths, result.face_index, result.boxes, answers):
            print(json.dumps({"image": path, "face": k, "box": [round(v, 1) for v in box], "name": a.name,
                              # "score" is the old name of "distance" (as the REST API calls it); kept for
                              # one release.
                              "distance": None if a.distance is None else round(a.distance, 4),
                              "score": None if a.distance is None else round(a.distance, 4), "metric": metric,
                              "matches": [{"name": m.name, "distance": round(m.distance, 4),
                                           "score": round(m.distance, 4)} for m in a.matches]}),
                  flush=True)
    else:
        table = Table(title=f"threshold {limit:.4f} ({source}); {metric} distance, lower = more alike",
                      title_justify="left")
        for col in ("face", "name", "distance", "next matches"):
            table.add_column(col)
        for label, a in zip(result.labels, answers):
            others = ", ".join(f"{m.name} {m.distance:.3f}" for m in a.matches[1:])
            dist = "" if a.distance is None else f"{a.distance:.3f}"
            table.add_row(label, a.name or "unknown", dist, others)
        out.print(table)
        known = sum(a.name is not None for a in answers)
        info(f"{len(answers)} face(s) in {result.n_images} image(s): {known} identified, {len(answers) - known} "
             f"unknown")
    if result.failures:
        raise typer.Exit(EXIT_PARTIAL)
