"""``facefit eval``: verification metrics over a pairs file, for one or several models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import (
    CacheOpt,
    Detector,
    EvalDetectorOpt,
    EvalMetric,
    ReportOverwriteOpt,
    WorkersOpt,
    err,
    info,
    out,
    progress_bar,
    warn,
)
from facefit.cli.options import ModelsOpt, PrecisionOpt


def eval_command(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Report folder.", show_default=False)],
    root: Annotated[Path | None, typer.Argument(help="Folder the pairs' image paths are relative to, or an "
                                                     "insightface verification .bin (lfw.bin, agedb_30.bin...); "
                                                     "not with --suite.", show_default=False)] = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", "-p", help="LFW pairs.txt or CSV "
                                                                     "(path_a,path_b,same[,fold],...); not with a "
                                                                     ".bin, which holds its own pairs.",
                                               show_default=False)] = None,
    suite: Annotated[Path | None, typer.Option("--suite", "-s", help="A suite YAML listing benchmarks (root + "
                                                                     "pairs, or bin; population): each is evaluated "
                                                                     "as alone, plus FMR/FNMR per population at one "
                                                                     "shared threshold.", show_default=False)] = None,
    model: ModelsOpt = None,
    precision: PrecisionOpt = None,
    metric: Annotated[EvalMetric, typer.Option("--metric", help="auto: each model's own distance (dlib-resnet: "
                                                                "euclidean; fine-tuned models: cosine); euclidean "
                                                                "(L2 on raw embeddings); cosine (1 - cos).")]
    = EvalMetric.auto,
    flip: Annotated[bool, typer.Option("--flip", help="Average each embedding with its mirror image's.")] = False,
    subtract_mean: Annotated[bool, typer.Option("--subtract-mean", help="Centre embeddings on the mean of the "
                                                                        "other folds' images (affects cosine).")]
    = False,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Folds for CSV files without a fold column.")] = 10,
    detector: EvalDetectorOpt = Detector.model,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
    overwrite: ReportOverwriteOpt = False,
) -> None:
    """Evaluate face verification on a pairs file: k-fold accuracy, VAL/TAR@FAR, AUC, EER, per subgroup.

    Writes metrics.json, report.md, scores.csv, roc.png and scores.png to OUT.
    Detections and embeddings are cached by image content, so a second model
    on the same data only re-embeds. Thresholds are distances (accept when
    distance <= threshold) and can be reused with --threshold-from.
    """
    import shlex
    import sys

    from facefit.data.pairs import read_pairs
    from facefit.defaults import default_model
    from facefit.errors import UsageError
    from facefit.eval.labels import model_labels
    from facefit.eval.report import write_report
    from facefit.eval.run import EvalOptions, evaluate
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache
    from facefit.io.files import check_report_dir, write_report_dir
    from facefit.models import create_model

    check_report_dir(out_dir, overwrite)
    options = EvalOptions(metric=metric.value, flip=flip, subtract_mean=subtract_mean, n_folds=folds,
                          detector=detector.name_or_none, workers=workers)
    if suite is not None:
        if root is not None or pairs is not None:
            raise UsageError("--suite lists its own benchmarks; leave out ROOT and --pairs")
        _eval_suite(suite, out_dir, model, options, cache)
        return
    if root is None:
        raise UsageError("give ROOT (and --pairs), or --suite SUITE.yaml")
    root, pairs = _resolve_pairs(root, pairs, cache)
    if subtract_mean and metric is EvalMetric.euclidean:
        info("note: --subtract-mean changes nothing with --metric euclidean (distances are shift-invariant); "
             "it matters with --metric cosine")
    pair_set = read_pairs(pairs, root, n_folds=folds)
    for note in pair_set.notes:
        info(note)
    for line in pair_set.warnings:
        warn(line)
    names = model or [default_model()]
    models = [(label, create_model(n)) for label, n in zip(model_labels(names), names)]
    info(f"{len(pair_set)} pairs over {len(pair_set.images())} images, {len(pair_set.folds)} folds; "
         f"models: {', '.join(lb for lb, _ in models)}")
    with EvalCache(eval_cache_path(cache)) as store:
        run = evaluate(pair_set, models, options, store, progress=progress_bar)
    command = "facefit eval " + shlex.join(sys.argv[2:])
    doc = write_report_dir(out_dir, lambda tmp: write_report(run, tmp, command=command))
    _print_summary(doc, run)
    err.print(f"report written to {out_dir}/ (metrics.json, report.md, scores.csv, roc.png, scores.png)",
              markup=False)


def _eval_suite(suite_file: Path, out_dir: Path, names: list[str] | None, options, cache: Path | None) -> None:
    """``facefit eval --suite``: every benchmark as a single eval would run it, then the population section."""
    import shlex
    import sys

    from facefit.eval.report_suite import write_suite_report
    from facefit.eval.suite import load_suite
    from facefit.io.files import write_report_dir

    suite = load_suite(suite_file)
    srun, labels = run_suite_for(suite, names, options, cache)
    argv = sys.argv[2:]
    command = "facefit eval " + shlex.join(argv)
    doc = write_report_dir(out_dir, lambda tmp: write_suite_report(srun, tmp, command=command,
                                                                  model_flags=_single_flags(argv)))
    print_suite_summary(doc)
    err.print(f"report written to {out_dir}/ (metrics.json, report.md, populations.png, det.png, "
              f"scores-<benchmark>.csv)", markup=False)


def run_suite_for(suite, names: list[str] | None, options, cache: Path | None):
    """The suite run on the named models (labelled as ``facefit eval`` labels them), with the usual cache."""
    from facefit.defaults import default_model
    from facefit.eval.labels import model_labels
    from facefit.eval.suite import read_suite_pairs, run_suite
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache
    from facefit.models import create_model

    bin_cache = cache.parent if cache else None
    read = read_suite_pairs(suite, n_folds=options.n_folds, bin_cache=bin_cache, log=info)  # before any model
    names = names or [default_model()]
    labels = model_labels(names)
    models = [(label, create_model(n)) for label, n in zip(labels, names)]
    info(f"suite {suite.source}: {len(suite.benchmarks)} benchmark(s), reference {suite.reference_name}, "
         f"FMR {suite.fmr:g}; models: {', '.join(labels)}")
    with EvalCache(eval_cache_path(cache)) as store:
        srun = run_suite(suite, models, options, store, progress=progress_bar, log=info, read=read)
    return srun, labels


def _single_flags(argv: list[str]) -> str:
    """The options of this command line a single ``facefit eval`` of one benchmark takes (all but --suite/--out)."""
    import shlex

    keep, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--suite", "-s", "--out", "-o"):
            skip = True
            continue
        if a.startswith(("--suite=", "--out=")) or a == "--overwrite":
            continue
        keep.append(a)
    return shlex.join(keep)


def print_suite_summary(doc: dict) -> None:
    from rich import box
    from rich.table import Table

    def f(v, digits: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    labels = list(doc["populations"])
    table = Table(title="benchmarks (k-fold verification)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("benchmark", "population", "pairs", "metric", *labels):
        table.add_column(col, justify="left" if col in ("benchmark", "population", "metric") else "right")
    for name, bench in doc["benchmarks"].items():
        for i, (key, head) in enumerate((("accuracy", "accuracy"), ("auc", "AUC"), ("tar_at_far_1e-3", "TAR@1e-3"))):
            lead = (name, bench["population"], str(bench["pairs"]["n_pairs"])) if i == 0 else ("", "", "")
            table.add_row(*lead, head, *[f(bench["models"][lb]["total"].get(key)) for lb in labels])
    out.print(table)
    s = doc["suite"]
    pops = Table(title=f"populations at one threshold per model (FMR {s['fmr']:g} on {s['reference']})",
                 title_justify="left", box=box.SIMPLE_HEAD)
    pops.add_column("population")
    for lb in labels:
        pops.add_column(f"FMR {lb}", justify="right")
        pops.add_column(f"FNMR {lb}", justify="right")
    for pop in doc["populations"][labels[0]]["by_population"]:
        cells = []
        for lb in labels:
            r = doc["populations"][lb]["by_population"][pop]
            cells += [f(r["fmr"], 5), f(r["fnmr"], 4)]
        pops.add_row(pop, *cells)
    gaps = []
    for lb in labels:
        g = doc["populations"][lb]["gap"]
        gaps += [("≥ " if g["lower_bound"][key] and g[f"{key}_ratio"] is not None else "") + f(g[f"{key}_ratio"], 2)
                 for key in ("fmr", "fnmr")]
    pops.add_row("gap (max/min)", *gaps)
    pops.add_row("threshold", *[x for lb in labels for x in (f(doc["populations"][lb]["threshold"]), "")])
    out.print(pops)


def _resolve_pairs(root: Path, pairs: Path | None, cache: Path | None) -> tuple[Path, Path]:
    """ROOT and the pairs file; an insightface .bin is imported once into the cache and read from there."""
    from facefit.errors import UsageError

    if root.suffix == ".bin" and not root.is_dir():
        if pairs is not None:
            raise UsageError(f"{root}: a .bin holds its own pairs; leave out --pairs")
        from facefit.data.convert import cached_bin_import
        from facefit.io.assets import cache_dir

        folder = cached_bin_import(root, cache.parent if cache else cache_dir())
        info(f"{root}: insightface verification set, imported to {folder}")
        return folder, folder / "pairs.csv"
    if pairs is None:
        raise UsageError("--pairs is required (unless ROOT is an insightface .bin)")
    return root, pairs


def _print_summary(doc: dict, run) -> None:
    from rich import box
    from rich.table import Table

    def f(v, digits: int = 4) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    det = doc["detection"]
    info(f"no face detected in {det['no_face']} of {doc['data']['n_images']} images (fallback box used); "
         f"time: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.seconds.items()))
    table = Table(title=f"verification, {doc['pairs']['n_pairs']} pairs", title_justify="left", box=box.SIMPLE_HEAD)
    columns = ("model", "distance", "accuracy", "AUC", "EER", "VAL@1e-3", "TAR@1e-2", "TAR@1e-3", "TAR@1e-4",
               "threshold")
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right")
    for label, m in doc["models"].items():
        t = m["total"]
        acc = f"{f(t.get('accuracy'))} ± {f(t.get('accuracy_std'))}"
        table.add_row(label, m["calibration"]["metric"], acc, f(t.get("auc")), f(t.get("eer")),
                      f(t.get("val")), f(t.get("tar_at_far_1e-2")), f(t.get("tar_at_far_1e-3")),
                      f(t.get("tar_at_far_1e-4")), f(t.get("threshold")))
    out.print(table)
    first = next(iter(doc["models"].values()))
    if first["subgroups"] and len(first["subgroups"]) <= 40:
        sub = Table(title="accuracy per subgroup", title_justify="left", box=box.SIMPLE_HEAD)
        sub.add_column("subgroup")
        sub.add_column("pairs", justify="right")
        for label in doc["models"]:
            sub.add_column(label, justify="right")
        for name, m in sorted(first["subgroups"].items()):
            cells = [f(doc["models"][lb]["subgroups"].get(name, {}).get("accuracy")) for lb in doc["models"]]
            sub.add_row(name, str(m.get("n_pairs")), *cells)
        out.print(sub)
