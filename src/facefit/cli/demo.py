"""``facefit demo``: the main job end to end on the shared data; ``facefit.demo`` computes, this prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from facefit.cli.common import err, out, progress_bar


def demo(
    data: Annotated[Path | None, typer.Option("--data", help="Data folder holding fixtures/ (default: "
                                                             "$FACEFIT_DATA or ../shared/data).", show_default=False)]
    = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder the demo owns and writes its figures, reports and "
                                                        "training run to: new, empty, or an earlier demo's (whose "
                                                        "outputs are replaced).")]
    = Path("out/demo"),
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1, help="Detection processes.")] = None,
    lfw: Annotated[bool, typer.Option("--lfw/--no-lfw", help="Also verify on LFW (about 3 minutes the first "
                                                             "time, then cached).")] = True,
    train_minutes: Annotated[float, typer.Option("--train-minutes", min=0.0, help="Fine-tuning budget in minutes "
                                                 "(0 skips fine-tuning; the default recipe's budget is 30).")]
    = 5.0,
    suite: Annotated[Path | None, typer.Option("--suite", help="Suite YAML of the final pre-trained vs fine-tuned "
                                               "table (make demo: suites/demo.yaml) [default: the Korean validation "
                                               "pairs and LFW in the data folder].", show_default=False)] = None,
) -> None:
    """Run the main job: align, embed, check against dlib, verify, fine-tune on Korean faces, compare."""
    from facefit.demo import run_demo
    from facefit.io.assets import find_data_dir

    root = find_data_dir(data)
    if root is None:
        err.print("facefit: error: no data folder found (looked for $FACEFIT_DATA and ../shared/data); "
                  "pass --data DIR, a folder holding fixtures/johns and fixtures/yale/original", markup=False)
        raise typer.Exit(2)
    run_demo(root, out_dir, ConsoleReport(out), workers=workers, lfw=lfw, train_minutes=train_minutes,
             progress=progress_bar, suite=suite)


class ConsoleReport:
    """The demo's steps as the terminal shows them (``facefit.demo.DemoReport``)."""

    def __init__(self, console: Console) -> None:
        self.out = console

    def started(self, data: Path, model: Any, load_s: float) -> None:
        c = model.contract
        n_params = sum(p.numel() for p in model.parameters())
        self.out.rule("[bold]facefit demo[/bold]: align, embed and compare faces with dlib's ResNet in PyTorch")
        self.out.print(f"data: {data}", markup=False)
        self.out.print(f"model: dlib-resnet, {n_params / 1e6:.3f} M parameters, {c.embedding_dim}-D, loaded in "
                       f"{load_s:.2f} s; contract {c.id} (weights sha256 {c.weights_sha256[:12]}..., "
                       f"alignment {c.align.label})", markup=False)

    def fixtures(self, f: Any) -> None:
        from rich import box
        from rich.table import Table

        from facefit.tables import print_distance_matrix

        o = self.out
        missed = ", ".join(Path(p).name for p, _ in f.yale.failures) or "none"
        o.print(f"\n[bold]1. detect + align + embed[/bold] {f.yale.n_images} Yale photos (HOG detector, 5 landmarks, "
                f"dlib chip): {len(f.yale)} faces in {f.yale_s:.1f} s; no face found in: {missed}")
        o.print(f"[bold]2. embed[/bold] {len(f.johns)} aligned chips of dlib's example faces in {f.johns_s:.2f} s "
                f"({len(f.johns) / max(f.johns_s, 1e-9):.0f} faces/s including JPEG decoding)")
        o.print(f"[bold]3. exactness[/bold]: max |facefit - dlib compute_face_descriptor| over {f.checked} "
                f"Yale faces = {f.max_diff:.1e} (the tests require <= 1e-4)")
        o.print("\n[bold]4. distance matrix[/bold], one face per person (5 of dlib's Johns, 5 Yale subjects):")
        print_distance_matrix(o, f.labels, f.paths, f.distances, "euclidean", f.threshold)
        table = Table(title=f"5. every pair at dlib's threshold {f.threshold:g} (Euclidean)", title_justify="left",
                      box=box.SIMPLE_HEAD)
        for col in ("set", "faces", "same/diff pairs", "same kept", "diff rejected", "accuracy", "mean d same",
                    "mean d diff"):
            table.add_column(col, justify="left" if col == "set" else "right")
        for name, res in (("Johns (chips)", f.johns), ("Yale (detected)", f.yale)):
            s = f.pairs[name]
            table.add_row(name, str(len(res)), f"{s['same']}/{s['diff']}", f"{s['tar']:.3f}",
                          f"{s['trr']:.3f}", f"{s['acc']:.4f}", f"{s['same_mean']:.3f}", f"{s['diff_mean']:.3f}")
        o.print()
        o.print(table)

    def verified(self, bench: str, label: str, res: dict, seconds: float, report_dir: Path) -> None:
        self.out.print(f"\n[bold]6. verification[/bold] on {bench}, {label} ({res['n_pairs']} pairs, 10 folds, "
                       f"{seconds:.0f} s; detections and embeddings are cached for re-runs): accuracy "
                       f"{res['accuracy']:.4f} ± {res['accuracy_std']:.4f}, AUC {res['auc']:.4f}, EER "
                       f"{res['eer']:.4f}, TAR@FAR=1e-2 {res['tar_at_far_1e-2']:.3f}, TAR@FAR=1e-3 "
                       f"{res['tar_at_far_1e-3']:.3f}; best-accuracy {res['metric']} threshold "
                       f"{res['threshold']:.3f}; report in {report_dir}/")

    def skipped(self, what: str) -> None:
        self.out.print({"kfamily": "(no kfamily/ in the data folder: skipping the Korean verification and "
                                   "fine-tuning steps)",
                        "fine-tuning": "(fine-tuning skipped: --train-minutes 0)"}[what])

    def finetuning(self, base: str, train_dir: Path, minutes: float) -> None:
        self.out.print(f"\n[bold]7. fine-tune[/bold] {base} on {escape(str(train_dir))} with its default recipe, "
                       f"planned to fit {minutes:g} minutes (as `facefit train DATA --base {base} --out RUN "
                       f"--time-budget {minutes:g} --set optim.fit_budget=true`): held-out persons pick the best "
                       f"epoch; the validation pairs are not seen")

    def train_log(self, line: str) -> None:
        self.out.print("   " + line, markup=False)

    def finetuned(self, r: Any) -> None:
        self.out.print(f"   trained {r.steps} steps ({r.epochs} epochs) at {r.images_per_s:.0f} img/s; whole run "
                       f"{r.seconds / 60:.1f} min; best epoch {r.best_epoch}; model in {r.model_dir}", markup=False)

    def ensembled(self, runs: list[Path], out_dir: Path, built: Any) -> None:
        weights = ", ".join(f"{d['name']} {d['weight']:.3f}" for d in built.model.contract.members)
        held = built.metrics.get("ensemble", {})
        self.out.print(f"   ensemble (as `facefit ensemble {' '.join(str(r) for r in runs)} --out {out_dir}`): "
                       f"weights {weights} ({built.weights_source}); on the held-out persons accuracy "
                       f"{held.get('accuracy', float('nan')):.4f}", markup=False)

    def compared(self, results: dict[str, dict[str, dict]], suite_doc: dict, where: str,
                 train_minutes: float) -> None:
        self.out.print()
        self.out.print(_comparison_table(results))
        self.out.print(_population_table(suite_doc))
        metrics = {b: {m: r["metric"] for m, r in by.items()} for b, by in results.items()}
        self.out.print(f"from the suite {where} (as `facefit eval --suite`); distances: {metrics}; side-by-side "
                       f"reports with ROC curves in eval-*/report.md, the suite's with DET curves in "
                       f"suite/report.md", markup=False)
        if train_minutes < 30:
            self.out.print(f"(a {train_minutes:g}-minute budget per model keeps the demo short; each base's full "
                           f"recipe is a fixed number of epochs: `facefit train DATA --base sface --out RUN`)")

    def identified(self, results: dict[str, dict], counts: dict[str, int], seconds: float,
                   report_dir: Path) -> None:
        from rich import box
        from rich.table import Table

        what = (f"{counts['gallery_persons']} persons enrolled, {counts['stranger_persons']} strangers, "
                f"{counts['probes']} probe photos")
        table = Table(title=f"9. 1:N identification on new Korean persons ({what}; {seconds:.0f} s)",
                      title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("model", "rank-1", "rank-5", "TPIR@FPIR=1e-2", "TPIR@FPIR=1e-1", "own threshold",
                    "strangers rejected there", "found there"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for label, m in results.items():
            thr = m.get("threshold")
            rejected = 1 - m["fpir_at_threshold"] if thr is not None else float("nan")
            table.add_row(label, f"{m['rank_1']:.3f}", f"{m['rank_5']:.3f}", f"{m['tpir_at_fpir_1e-2']:.3f}",
                          f"{m['tpir_at_fpir_1e-1']:.3f}", "" if thr is None else f"{thr:.3f}", f"{rejected:.3f}",
                          "" if thr is None else f"{m['tpir_at_threshold']:.3f}")
        self.out.print()
        self.out.print(table)
        self.out.print(f"   one photo enrolled per person, the others probe; strangers are persons never enrolled. "
                       f"report in {report_dir}/", markup=False)

    def finished(self, out_dir: Path, files: list[str]) -> None:
        self.out.print(f"\noutputs in {out_dir}/: {', '.join(files)}")
        self.out.print("next: enrol people with `facefit gallery add NAME PHOTO...`, then `facefit identify PHOTO` or "
                       "`facefit stream VIDEO` (see the README).")


def _population_table(doc: dict):
    from rich import box
    from rich.table import Table

    s = doc["suite"]
    labels = list(doc["populations"])
    table = Table(title=f"FMR / FNMR per population at one threshold per model (FMR {s['fmr']:g} on "
                        f"{s['reference']})", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("population")
    table.add_column("rate")
    for lb in labels:
        table.add_column(lb, justify="right")
    for pop in doc["populations"][labels[0]]["by_population"]:
        for rate in ("fmr", "fnmr"):
            cells = [doc["populations"][lb]["by_population"][pop][rate] for lb in labels]
            table.add_row(pop if rate == "fmr" else "", rate.upper(),
                          *["n/a" if v is None else f"{v:.4f}" for v in cells])
    for key, name in (("fmr_ratio", "FMR gap"), ("fnmr_ratio", "FNMR gap")):
        cells = []
        for lb in labels:
            g = doc["populations"][lb]["gap"]
            v, bound = g[key], g["lower_bound"][key.split("_")[0]]
            cells.append("n/a" if v is None else ("≥ " if bound else "") + f"{v:.2f}x")
        table.add_row("max/min" if key == "fmr_ratio" else "", name, *cells)
    return table


def _comparison_table(results: dict[str, dict[str, dict]]):
    from rich import box
    from rich.table import Table

    labels = list(next(iter(results.values())))
    table = Table(title="8. pre-trained vs fine-tuned vs ensemble (10-fold verification)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("benchmark", "metric", *labels):
        table.add_column(col, justify="left" if col in ("benchmark", "metric") else "right")
    for bench, by_model in results.items():
        for key, label in (("accuracy", "accuracy"), ("auc", "AUC"), ("tar_at_far_1e-2", "TAR@FAR=1e-2"),
                           ("tar_at_far_1e-3", "TAR@FAR=1e-3")):
            table.add_row(bench if key == "accuracy" else "", label,
                          *[f"{by_model[m][key]:.4f}" if m in by_model else "" for m in labels])
    return table



