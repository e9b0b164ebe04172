"""The demo: the main job end to end on the shared fixtures.

Align the Yale photos, embed them and dlib's example chips, prove the port
against dlib itself, show distance matrices and how dlib's threshold separates
same-person from different-person pairs; then verify the pre-trained models
(dlib-resnet and facefit's default, SFace) on the Korean validation pairs and LFW,
fine-tune both on the Korean training persons within a time budget each, combine
them into an ensemble, and print the pre-trained vs fine-tuned vs ensemble table from an evaluation suite
(``suites/demo.yaml`` under ``make demo``; otherwise the same benchmarks found in the data folder), with FMR and
FNMR per population at one shared threshold and the gap between them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from facefit.align.cached import ProgressFactory, no_progress
from facefit.errors import UsageError

ENV_DATA = "FACEFIT_DATA"


def _looks_like_data(path: Path) -> bool:
    return (path / "fixtures").is_dir() or (path / "lfw").is_dir() or (path / "kfamily").is_dir()


def find_data_dir(explicit: Path | None = None) -> Path | None:
    """The shared data folder: --data, else $FACEFIT_DATA, else ../shared/data from the working folder."""
    if explicit is not None:
        if not explicit.is_dir():
            raise UsageError(f"{explicit}: no such data folder")
        return explicit
    env = os.environ.get(ENV_DATA)
    if env:
        if not Path(env).is_dir():
            raise UsageError(f"{env}: no such data folder (from ${ENV_DATA})")
        return Path(env)
    default = Path.cwd().parent / "shared" / "data"
    return default if default.is_dir() and _looks_like_data(default) else None


def _identity(path: str) -> str:
    return Path(path).parent.name


def _pair_summary(emb: np.ndarray, ids: list[str], threshold: float) -> dict[str, float]:
    from facefit.distances import pairwise_distances

    d = pairwise_distances(emb)
    iu = np.triu_indices(len(ids), k=1)
    same = (np.asarray(ids)[:, None] == np.asarray(ids)[None, :])[iu]
    dist = d[iu]
    accept = dist < threshold
    return {
        "pairs": int(len(dist)), "same": int(same.sum()), "diff": int((~same).sum()),
        "tar": float(accept[same].mean()) if same.any() else float("nan"),
        "trr": float((~accept[~same]).mean()) if (~same).any() else float("nan"),
        "acc": float((accept == same).mean()),
        "same_mean": float(dist[same].mean()) if same.any() else float("nan"),
        "diff_mean": float(dist[~same].mean()) if (~same).any() else float("nan"),
    }


def _benchmarks(data: Path, lfw: bool) -> list[tuple[str, str, str]]:
    found = []
    if (data / "kfamily" / "val_pairs.csv").is_file():
        found.append(("korean-val", "kfamily/val", "kfamily/val_pairs.csv"))
    if lfw and (data / "lfw" / "pairs.txt").is_file():
        found.append(("lfw", "lfw/images", "lfw/pairs.txt"))
    return found


POPULATIONS = {"korean-val": "korean", "lfw": "lfw"}


def demo_suite(data: Path, lfw: bool, suite_file: Path | None = None):  # noqa: ANN201
    """The suite of the final table: ``suite_file``, else the demo's benchmarks in ``data`` (as suites/demo.yaml)."""
    from facefit.eval.suite import Suite, SuiteBenchmark, load_suite

    if suite_file is not None:
        return load_suite(suite_file)
    benches = _benchmarks(data, lfw)
    if not benches:
        return None
    names = [n for n, _, _ in benches]
    return Suite(reference="lfw" if "lfw" in names else None, fmr=1e-3,
                 benchmarks=[SuiteBenchmark(name=n, root=data / r, pairs=data / p, population=POPULATIONS[n])
                             for n, r, p in benches])


def _run_suite(suite, models: list, out_dir: Path, workers: int | None,  # noqa: ANN001
               progress) -> tuple[dict[str, dict[str, dict]], dict, float]:  # noqa: ANN001
    """The suite on ``models``: each benchmark's single-eval report in eval-<name>/, the suite's in suite/."""
    import shutil

    from facefit.eval.report import write_report
    from facefit.eval.report_suite import write_suite_report
    from facefit.eval.run import EvalOptions
    from facefit.eval.suite import run_suite
    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache

    t0 = time.perf_counter()
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
        srun = run_suite(suite, models, EvalOptions(metric="auto", workers=workers), cache, progress=progress)
    flags = " ".join(f"--model {label}" for label, _ in models)
    for r in srun.runs:
        d = out_dir / f"eval-{r.benchmark.name}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        write_report(r.run, d, command=f"facefit eval {r.root} --pairs {r.pairs_file} --out REPORT {flags}")
    shutil.rmtree(out_dir / "suite", ignore_errors=True)
    (out_dir / "suite").mkdir(parents=True)
    where = suite.source or "the demo's benchmarks"
    doc = write_suite_report(srun, out_dir / "suite", command=f"facefit eval --suite {where} --out REPORT {flags}",
                             model_flags=flags)
    keys = ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3", "threshold")
    results = {name: {lb: {"metric": m["calibration"]["metric"], "n_pairs": b["pairs"]["n_pairs"],
                           **{k: m["total"][k] for k in keys}} for lb, m in b["models"].items()}
               for name, b in doc["benchmarks"].items()}
    return results, doc, time.perf_counter() - t0


def _population_table(doc: dict):  # noqa: ANN202
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


def _verify(name: str, root: Path, pairs_file: Path, models: list, out_dir: Path,  # noqa: ANN001
            workers: int | None, progress) -> tuple[dict[str, dict], float]:  # noqa: ANN001
    """One verification run of ``models`` (label, model) with the cached pipeline; report in ``out_dir``."""
    import shutil

    from facefit.data.pairs import read_pairs
    from facefit.eval.report import write_report
    from facefit.eval.run import EvalOptions, evaluate
    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache

    pairs = read_pairs(pairs_file, root)
    t0 = time.perf_counter()
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
        run = evaluate(pairs, models, EvalOptions(metric="auto", workers=workers), cache, progress=progress)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    flags = " ".join(f"--model {label}" for label, _ in models)
    write_report(run, out_dir, command=f"facefit eval {root} --pairs {pairs_file} --out REPORT {flags}")
    keys = ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3", "threshold")
    results = {m.label: {"metric": m.metric, "n_pairs": len(pairs), **{k: m.total[k] for k in keys}}
               for m in run.models}
    return results, time.perf_counter() - t0


def _print_verification(out: Console, step: str, name: str, res: dict, seconds: float, out_dir: Path) -> None:
    out.print(f"\n[bold]{step}. verification[/bold] on {name} ({res['n_pairs']} pairs, 10 folds, {seconds:.0f} s; "
              f"detections and embeddings are cached for re-runs): accuracy {res['accuracy']:.4f} "
              f"± {res['accuracy_std']:.4f}, AUC {res['auc']:.4f}, EER {res['eer']:.4f}, TAR@FAR=1e-2 "
              f"{res['tar_at_far_1e-2']:.3f}, TAR@FAR=1e-3 {res['tar_at_far_1e-3']:.3f}; best-accuracy "
              f"{res['metric']} threshold {res['threshold']:.3f}; report in {out_dir}/")


def _finetune(data: Path, base: str, run_dir: Path, minutes: float, out: Console, workers: int | None,
              progress) -> Path:  # noqa: ANN001
    """``base``'s default recipe on kfamily/train, planned to fit ``minutes``; returns the run folder."""
    import shutil

    from rich.markup import escape

    from facefit.train.config import load_config
    from facefit.train.loop import train

    cfg = load_config(overrides={"base": base, "data.train": [str(data / "kfamily" / "train")],
                                 "optim.time_budget_min": minutes, "optim.fit_budget": True, "workers": workers})
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own run folder from an earlier demo
    out.print(f"\n[bold]7. fine-tune[/bold] {base} on {escape(str(data / 'kfamily' / 'train'))} with its default "
              f"recipe, planned to fit {minutes:g} minutes (as `facefit train DATA --base {base} --out RUN "
              f"--time-budget {minutes:g} --set optim.fit_budget=true`): held-out persons pick the best epoch; the "
              f"validation pairs are not seen")
    command = (f"facefit train {data / 'kfamily' / 'train'} --base {base} --out {run_dir} --time-budget {minutes:g} "
               f"--set optim.fit_budget=true")
    result = train(cfg, run_dir, progress=progress, log=lambda line: out.print("   " + line, markup=False),
                   command=command)
    out.print(f"   trained {result.steps} steps ({result.epochs} epochs) at {result.images_per_s:.0f} img/s; "
              f"whole run {result.seconds / 60:.1f} min; best epoch {result.best_epoch}; model in {result.model_dir}",
              markup=False)
    return run_dir


def _ensemble(runs: list[Path], out_dir: Path, out: Console, workers: int | None, progress) -> Path:  # noqa: ANN001
    """The fine-tuned models as one, weights and thresholds fitted on the persons their training held out."""
    import shutil

    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache
    from facefit.train.ensemble import build_ensemble

    shutil.rmtree(out_dir, ignore_errors=True)
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
        report = build_ensemble([str(r) for r in runs], out_dir, cache=cache, workers=workers, progress=progress)
    weights = ", ".join(f"{d['name']} {d['weight']:.3f}" for d in report.model.contract.members)
    held = report.metrics.get("ensemble", {})
    out.print(f"   ensemble (as `facefit ensemble {' '.join(str(r) for r in runs)} --out {out_dir}`): weights "
              f"{weights} ({report.weights_source}); on the held-out persons accuracy "
              f"{held.get('accuracy', float('nan')):.4f}", markup=False)
    return out_dir


def _comparison_table(results: dict[str, dict[str, dict]]):  # noqa: ANN202
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


def _identify_1n(data: Path, models: list, out_dir: Path, workers: int | None,  # noqa: ANN001
                 progress) -> tuple[dict[str, dict], dict[str, int], float]:  # noqa: ANN001
    """Open-set 1:N on the Korean validation persons: enrol one photo each, probe with the rest and strangers."""
    import shutil

    from facefit.data.folders import IdentityFolders
    from facefit.eval.open_set import ProtocolOptions, evaluate_open_set, make_protocol
    from facefit.eval.report_1n import write_report_1n
    from facefit.eval.run import EvalOptions
    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache

    t0 = time.perf_counter()
    root = data / "kfamily" / "val"
    meta = data / "kfamily" / "val_metadata.csv"
    folders = IdentityFolders.scan(root, metadata=meta if meta.is_file() else None)
    protocol = make_protocol(folders, ProtocolOptions(enrol=1, strangers=0.2, seed=0))
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
        run = evaluate_open_set(folders, protocol, models, EvalOptions(metric="auto", workers=workers), cache,
                                progress=progress)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    flags = " ".join(f"--model {label}" for label, _ in models)
    write_report_1n(run, out_dir, command=f"facefit eval-1n {root} --metadata {meta} --out REPORT {flags}")
    return {m.label: m.total for m in run.models}, protocol.counts(), time.perf_counter() - t0


def _print_1n(out: Console, results: dict[str, dict], counts: dict[str, int], seconds: float, out_dir: Path) -> None:
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
    out.print()
    out.print(table)
    out.print(f"   one photo enrolled per person, the others probe; strangers are persons never enrolled. "
              f"report in {out_dir}/", markup=False)


DEMO_MARK = ".facefit-demo"


def _claim_out_dir(out_dir: Path) -> None:
    """Make ``out_dir`` the demo's own: new or empty, or marked by an earlier demo (whose files it replaces).

    The demo removes and rewrites its outputs, so a folder of anyone else's files is refused, not reused.
    """
    mark = out_dir / DEMO_MARK
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: is a file; --out must be a folder for the demo's outputs")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not mark.is_file():
        raise UsageError(f"{out_dir}: not empty and not written by facefit demo (no {DEMO_MARK} in it); the demo "
                         f"replaces its outputs there, so choose a new or empty --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        mark.write_text("This folder holds facefit demo outputs; the next demo run replaces them.\n")
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot create the demo's folder: {exc.strerror or exc}") from None


def run_demo(data: Path, out_dir: Path, console: Console, *, workers: int | None = None, lfw: bool = True,
             train_minutes: float = 5.0, progress: ProgressFactory = no_progress, suite: Path | None = None) -> dict:
    """Run the demo on ``data`` (a folder holding fixtures/), writing figures, reports and a run to ``out_dir``.

    ``suite``: the suite file of the final table (default: the Korean validation pairs and LFW found in ``data``).
    """
    from rich.table import Table

    from facefit.io.embeddings import save_embeddings
    from facefit.io.files import collect_images
    from facefit.models import create_model
    from facefit.pipeline import embed_files
    from facefit.plots import distance_heatmap
    from facefit.tables import print_distance_matrix

    out = console

    johns_dir, yale_dir = data / "fixtures" / "johns", data / "fixtures" / "yale" / "original"
    for d in (johns_dir, yale_dir):
        if not d.is_dir():
            raise UsageError(f"{d}: missing; --data must point to a folder with fixtures/johns and fixtures/yale")
    final_suite = demo_suite(data, lfw, suite)  # a bad suite file fails before anything runs
    _claim_out_dir(out_dir)
    out.rule("[bold]facefit demo[/bold]: align, embed and compare faces with dlib's ResNet in PyTorch")
    out.print(f"data: {data}", markup=False)

    t0 = time.perf_counter()
    model = create_model("dlib-resnet", precision="fp32")  # the exactness check compares fp32 with dlib
    n_params = sum(p.numel() for p in model.parameters())
    c = model.contract
    out.print(f"model: dlib-resnet, {n_params / 1e6:.3f} M parameters, {c.embedding_dim}-D, loaded in "
              f"{time.perf_counter() - t0:.2f} s; contract {c.id} (weights sha256 {c.weights_sha256[:12]}..., "
              f"alignment {c.align.label})", markup=False)

    # 1. Detect and align the Yale photos (uncropped, 320x243 grey).
    yale_files = collect_images([yale_dir]).files
    t0 = time.perf_counter()
    yale = embed_files(yale_files, model, faces="largest", workers=workers, keep_chips=True)
    t_yale = time.perf_counter() - t0
    missed = ", ".join(Path(p).name for p, _ in yale.failures) or "none"
    out.print(f"\n[bold]1. detect + align + embed[/bold] {len(yale_files)} Yale photos (HOG detector, 5 landmarks, "
              f"dlib chip): {len(yale)} faces in {t_yale:.1f} s; no face found in: {missed}")

    # 2. Embed dlib's own example chips (already aligned).
    johns_files = collect_images([johns_dir]).files
    t0 = time.perf_counter()
    johns = embed_files(johns_files, model, aligned=True, keep_chips=True)
    t_johns = time.perf_counter() - t0
    out.print(f"[bold]2. embed[/bold] {len(johns)} aligned chips of dlib's example faces in {t_johns:.2f} s "
              f"({len(johns) / max(t_johns, 1e-9):.0f} faces/s including JPEG decoding)")

    # 3. Exactness against dlib's own implementation.
    import dlib

    from facefit.io.assets import RESNET_V1, verified

    rec = dlib.face_recognition_model_v1(str(verified(RESNET_V1)[0]))
    sample = list(range(0, len(yale), max(1, len(yale) // 12)))[:12] if len(yale) else []
    ref = np.array([np.array(rec.compute_face_descriptor(yale.chips[i])) for i in sample], dtype=np.float64)
    diff = float(np.abs(ref - yale.embeddings[sample]).max()) if sample else float("nan")
    out.print(f"[bold]3. exactness[/bold]: max |facefit - dlib compute_face_descriptor| over {len(sample)} "
              f"Yale faces = {diff:.1e} (the tests require <= 1e-4)")

    # 4. A distance matrix: one face per person.
    threshold = c.thresholds.get("euclidean", 0.6)
    pick: dict[str, int] = {}
    for i, p in enumerate(johns.paths):
        pick.setdefault(_identity(p), i)
    j_idx = list(pick.values())[:5]
    y_pick: dict[str, int] = {}
    for i, p in enumerate(yale.paths):
        if p.endswith("normal.png"):
            y_pick.setdefault(_identity(p), i)
    y_idx = list(y_pick.values())[:5]
    emb = np.concatenate([johns.embeddings[j_idx], yale.embeddings[y_idx]])
    labels = [Path(johns.paths[i]).parent.name for i in j_idx] + [Path(yale.paths[i]).name for i in y_idx]
    paths = [johns.paths[i] for i in j_idx] + [yale.paths[i] for i in y_idx]
    from facefit.distances import pairwise_distances

    out.print("\n[bold]4. distance matrix[/bold], one face per person (5 of dlib's Johns, 5 Yale subjects):")
    print_distance_matrix(out, labels, paths, pairwise_distances(emb), "euclidean", threshold)

    # 5. Same vs different person at dlib's threshold, every pair.
    from rich import box

    table = Table(title=f"5. every pair at dlib's threshold {threshold:g} (Euclidean)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for col in ("set", "faces", "same/diff pairs", "same kept", "diff rejected", "accuracy", "mean d same",
                "mean d diff"):
        table.add_column(col, justify="left" if col == "set" else "right")
    summary = {}
    for name, res in (("Johns (chips)", johns), ("Yale (detected)", yale)):
        s = _pair_summary(res.embeddings, [_identity(p) for p in res.paths], threshold)
        summary[name] = s
        table.add_row(name, str(len(res)), f"{s['same']}/{s['diff']}", f"{s['tar']:.3f}",
                      f"{s['trr']:.3f}", f"{s['acc']:.4f}", f"{s['same_mean']:.3f}", f"{s['diff_mean']:.3f}")
    out.print()
    out.print(table)

    # Outputs (the demo owns out_dir and replaces its own files).
    for name, res in (("johns", johns), ("yale", yale)):
        order = np.argsort([_identity(p) for p in res.paths], kind="stable")
        m = pairwise_distances(res.embeddings[order])
        distance_heatmap(m, [Path(res.paths[i]).parent.name for i in order], out_dir / f"{name}_matrix.png",
                         metric="euclidean", title=f"{name}: pairwise distance, sorted by person")
    all_paths = johns.paths + yale.paths
    save_embeddings(out_dir / "embeddings.npz", paths=all_paths,
                    embeddings=np.concatenate([johns.embeddings, yale.embeddings]), contract_json=c.to_json())
    files = "embeddings.npz, johns_matrix.png, yale_matrix.png"

    # 6. Verification of the pre-trained models on the Korean validation pairs (and LFW): dlib-resnet, and
    # facefit's default model, SFace.
    pre = [("dlib-resnet", model), ("sface", create_model("sface"))]
    verification: dict[str, dict[str, dict]] = {}
    benches = _benchmarks(data, lfw)
    for name, rel_root, rel_pairs in benches:
        res, secs = _verify(name, data / rel_root, data / rel_pairs, pre, out_dir / f"eval-{name}", workers,
                            progress)
        verification[name] = res
        for label, r in res.items():
            _print_verification(out, "6", f"{name}, {label}", r, secs, out_dir / f"eval-{name}")
        files += f", eval-{name}/"
    if not (data / "kfamily").is_dir():
        out.print("(no kfamily/ in the data folder: skipping the Korean verification and fine-tuning steps)")

    # 7-8. Fine-tune both families on the Korean training persons, combine them, compare on the same pairs.
    from facefit.models import create_model as load

    every = list(pre)
    suite_doc: dict | None = None
    if train_minutes and (data / "kfamily" / "train").is_dir() and benches:
        runs = [_finetune(data, base, out_dir / f"train-{base}", train_minutes, out, workers, progress)
                for base in ("sface", "dlib-resnet")]
        ens = _ensemble(runs, out_dir / "ensemble", out, workers, progress)
        every += [("sface-finetuned", load(str(runs[0]))), ("dlib-finetuned", load(str(runs[1]))),
                  ("ensemble", load(str(ens)))]
        final, suite_doc, _ = _run_suite(final_suite, every, out_dir, workers, progress)
        verification.update(final)
        out.print()
        out.print(_comparison_table(final))
        out.print(_population_table(suite_doc))
        metrics = {b: {m: r["metric"] for m, r in by.items()} for b, by in final.items()}
        where = final_suite.source or "the demo's benchmarks"
        out.print(f"from the suite {where} (as `facefit eval --suite`); distances: {metrics}; side-by-side reports "
                  f"with ROC curves in eval-*/report.md, the suite's with DET curves in suite/report.md",
                  markup=False)
        files += ", train-sface/, train-dlib-resnet/ (run folders: log.csv, plots.png, model/), ensemble/, suite/"
        if train_minutes < 30:
            out.print(f"(a {train_minutes:g}-minute budget per model keeps the demo short; each base's full recipe "
                      f"is a fixed number of epochs: `facefit train DATA --base sface --out RUN`)")
    elif not train_minutes:
        out.print("(fine-tuning skipped: --train-minutes 0)")

    # 9. 1:N identification on the Korean validation persons, the deployment question.
    identification: dict[str, dict] = {}
    if (data / "kfamily" / "val").is_dir():
        identification, counts, secs = _identify_1n(data, every, out_dir / "eval-1n-korean-val", workers, progress)
        _print_1n(out, identification, counts, secs, out_dir / "eval-1n-korean-val")
        files += ", eval-1n-korean-val/"
    out.print(f"\noutputs in {out_dir}/: {files}")
    out.print("next: enrol people with `facefit gallery add NAME PHOTO...`, then `facefit identify PHOTO` or "
              "`facefit stream VIDEO` (see the README).")
    return {"verification": verification, "identification": identification, "suite": suite_doc, "yale_faces": len(yale),
            "yale_failures": yale.failures, "johns_faces": len(johns),
            "max_abs_diff_vs_dlib": diff, "pairs": summary}
