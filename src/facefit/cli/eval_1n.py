"""``facefit eval-1n``: open-set 1:N identification on an identity-folder data set, for one or several models."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from facefit.cli.common import (
    CacheOpt,
    Detector,
    EvalDetectorOpt,
    EvalMetric,
    ReportOverwriteOpt,
    WorkersOpt,
    distance_threshold,
    err,
    info,
    out,
    progress_bar,
    report_scan,
)
from facefit.cli.options import ModelsOpt, PrecisionOpt

if TYPE_CHECKING:  # only for type hints: importing them for real would slow down ``facefit --help``
    from facefit.eval.open_set import OpenSetRun


class Aggregate(enum.StrEnum):
    best = "best"
    mean = "mean"


def eval_1n_command(
    root: Annotated[Path, typer.Argument(help="Folder with one sub-folder of images per person.",
                                         show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report folder.", show_default=False)],
    model: ModelsOpt = None,
    precision: PrecisionOpt = None,
    metadata: Annotated[Path | None, typer.Option("--metadata", help="CSV of per-image attributes ('path' or "
                                                                     "'file' column) for subgroups.",
                                                  show_default=False)] = None,
    enrol: Annotated[int, typer.Option("--enrol", min=1, help="Images enrolled per gallery person.")] = 1,
    strangers: Annotated[float, typer.Option("--strangers", min=0, help="Persons held out as strangers (all "
                                                                        "their images are non-mated probes): a "
                                                                        "number, or a fraction < 1 of all "
                                                                        "persons.")] = 0.2,
    persons: Annotated[int | None, typer.Option("--persons", min=2, help="At most this many gallery persons "
                                                                         "(default: every person with "
                                                                         "enough images).",
                                                show_default=False)] = None,
    probes_per_person: Annotated[int | None, typer.Option("--probes-per-person", min=1,
                                                          help="At most this many probe images per person, "
                                                               "strangers included.", show_default=False)] = None,
    min_probes: Annotated[int, typer.Option("--min-probes", min=1, help="A gallery person needs --enrol plus this "
                                                                       "many images.")] = 1,
    aggregate: Annotated[Aggregate, typer.Option("--aggregate", help="Distance to a person with several enrolled "
                                                                     "images: best (nearest image) or mean "
                                                                     "(mean template).")] = Aggregate.best,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed; the same seed gives the same "
                                                            "protocol.")] = 0,
    metric: Annotated[EvalMetric, typer.Option("--metric", help="auto: each model's own distance (dlib-resnet: "
                                                                "euclidean); euclidean; cosine (1 - cos).")]
    = EvalMetric.auto,
    threshold: Annotated[float | None, typer.Option("--threshold", callback=distance_threshold,
                                                    help="Fixed operating threshold for every "
                                                                        "model (default: each model's own, "
                                                                        "dlib-resnet 0.6).",
                                                    show_default=False)] = None,
    detector: EvalDetectorOpt = Detector.model,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
    overwrite: ReportOverwriteOpt = False,
) -> None:
    """Evaluate open-set 1:N identification: rank-1/5, TPIR at FPIR 1e-2 and 1e-1, FPIR/TPIR at a fixed threshold.

    Strangers (persons held out of the gallery) should be rejected; every
    other person with enough images enrols --enrol of them and is probed with
    the rest. Reported in total and per subgroup of probe images. Writes
    metrics_1n.json, report_1n.md and det.png to OUT. Detections and
    embeddings share facefit eval's cache, so a re-run is fast.
    """
    import shlex
    import sys

    from facefit.data.folders import IdentityFolders
    from facefit.defaults import default_model
    from facefit.eval.labels import model_labels
    from facefit.eval.open_set import ProtocolOptions, evaluate_open_set, make_protocol
    from facefit.eval.report_1n import write_report_1n
    from facefit.eval.run import EvalOptions
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache
    from facefit.io.files import check_report_dir, write_report_dir
    from facefit.models import create_model

    check_report_dir(out_dir, overwrite)
    data = IdentityFolders.scan(root, metadata=metadata)
    report_scan(data, metadata)
    protocol = make_protocol(data, ProtocolOptions(enrol=enrol, strangers=strangers, persons=persons,
                                                   probes_per_person=probes_per_person, min_probes=min_probes,
                                                   seed=seed))
    for note in protocol.notes:
        info(f"note: {note}")
    c = protocol.counts()
    names = model or [default_model()]
    models = [(label, create_model(n)) for label, n in zip(model_labels(names), names)]
    info(f"{c['gallery_persons']} gallery persons ({c['enrolled_images']} enrolled images), {c['mated_probes']} "
         f"mated probes, {c['stranger_persons']} strangers ({c['nonmated_probes']} probes); "
         f"models: {', '.join(lb for lb, _ in models)}")
    options = EvalOptions(metric=metric.value, detector=detector.name_or_none, workers=workers)
    with EvalCache(eval_cache_path(cache)) as store:
        run = evaluate_open_set(data, protocol, models, options, store, aggregate=aggregate.value,
                                threshold=threshold, progress=progress_bar)
    command = "facefit eval-1n " + shlex.join(sys.argv[2:])
    doc = write_report_dir(out_dir, lambda tmp: write_report_1n(run, tmp, command=command))
    _print_summary(doc, run)
    err.print(f"report written to {out_dir}/ (metrics_1n.json, report_1n.md, det.png)", markup=False)


def _print_summary(doc: dict[str, Any], run: OpenSetRun) -> None:
    from rich import box
    from rich.table import Table

    from facefit.eval.report_1n import _f

    det = doc["detection"]
    info(f"no face detected in {det['no_face']} of {doc['data']['n_images_used']} images (fallback box used); "
         f"time: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.seconds.items()))
    p = doc["protocol"]
    table = Table(title=f"1:N identification, {p['gallery_persons']} gallery persons, {p['mated_probes']} mated + "
                        f"{p['nonmated_probes']} non-mated probes", title_justify="left", box=box.SIMPLE_HEAD)
    columns = ("model", "distance", "rank-1", "rank-5", "TPIR@FPIR=1e-2", "TPIR@FPIR=1e-1", "T", "FPIR@T",
               "TPIR@T")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for label, m in doc["models"].items():
        t = m["total"]
        table.add_row(label, m["metric"], _f(t.get("rank_1")), _f(t.get("rank_5")), _f(t.get("tpir_at_fpir_1e-2")),
                      _f(t.get("tpir_at_fpir_1e-1")), _f(m["threshold"]["value"]), _f(t.get("fpir_at_threshold")),
                      _f(t.get("tpir_at_threshold")))
    out.print(table)
    for note in next(iter(doc["models"].values()))["total"].get("notes", []):
        info(f"note: {note}")
    first = next(iter(doc["models"].values()))
    if first["subgroups"] and len(first["subgroups"]) <= 40:
        sub = Table(title="rank-1 / FPIR@T per subgroup of probes", title_justify="left", box=box.SIMPLE_HEAD)
        sub.add_column("subgroup")
        sub.add_column("mated", justify="right")
        sub.add_column("strangers", justify="right")
        for label in doc["models"]:
            sub.add_column(label, justify="right")
        for name, g in first["subgroups"].items():
            cells = []
            for label in doc["models"]:
                s = doc["models"][label]["subgroups"].get(name, {})
                cells.append(f"{_f(s.get('rank_1'), 3)} / {_f(s.get('fpir_at_threshold'), 3)}")
            sub.add_row(name, str(g.get("n_mated")), str(g.get("n_nonmated")), *cells)
        out.print(sub)
