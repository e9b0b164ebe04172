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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facefit.errors import UsageError
from facefit.io.progress import ProgressFactory, no_progress

if TYPE_CHECKING:
    from facefit.engine import EmbeddedFaces
    from facefit.models.base import FaceEmbedder


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


def demo_suite(data: Path, lfw: bool, suite_file: Path | None = None):
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


def _run_suite(suite, models: list, out_dir: Path, workers: int | None,
               progress) -> tuple[dict[str, dict[str, dict]], dict, float]:
    """The suite on ``models``: each benchmark's single-eval report in eval-<name>/, the suite's in suite/."""
    import shutil

    from facefit.eval.report import write_report
    from facefit.eval.report_suite import write_suite_report
    from facefit.eval.run import EvalOptions
    from facefit.eval.suite import run_suite
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache

    t0 = time.perf_counter()
    with EvalCache(eval_cache_path()) as cache:
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


def _verify(name: str, root: Path, pairs_file: Path, models: list, out_dir: Path,
            workers: int | None, progress) -> tuple[dict[str, dict], float]:
    """One verification run of ``models`` (label, model) with the cached pipeline; report in ``out_dir``."""
    import shutil

    from facefit.data.pairs import read_pairs
    from facefit.eval.report import write_report
    from facefit.eval.run import EvalOptions, evaluate
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache

    pairs = read_pairs(pairs_file, root)
    t0 = time.perf_counter()
    with EvalCache(eval_cache_path()) as cache:
        run = evaluate(pairs, models, EvalOptions(metric="auto", workers=workers), cache, progress=progress)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    flags = " ".join(f"--model {label}" for label, _ in models)
    write_report(run, out_dir, command=f"facefit eval {root} --pairs {pairs_file} --out REPORT {flags}")
    keys = ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3", "threshold")
    results = {m.label: {"metric": m.metric, "n_pairs": len(pairs), **{k: m.total[k] for k in keys}}
               for m in run.models}
    return results, time.perf_counter() - t0


def _finetune(data: Path, base: str, run_dir: Path, minutes: float, report: DemoReport, workers: int | None,
              progress: ProgressFactory) -> Path:
    """``base``'s default recipe on kfamily/train, planned to fit ``minutes``; returns the run folder."""
    import shutil

    from facefit.train.config import load_config
    from facefit.train.loop import train

    train_dir = data / "kfamily" / "train"
    cfg = load_config(overrides={"base": base, "data.train": [str(train_dir)],
                                 "optim.time_budget_min": minutes, "optim.fit_budget": True, "workers": workers})
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo's own run folder from an earlier demo
    report.finetuning(base, train_dir, minutes)
    command = (f"facefit train {train_dir} --base {base} --out {run_dir} --time-budget {minutes:g} "
               f"--set optim.fit_budget=true")
    result = train(cfg, run_dir, progress=progress, log=report.train_log, command=command)
    report.finetuned(result)
    return run_dir


def _ensemble(runs: list[Path], out_dir: Path, report: DemoReport, workers: int | None,
              progress: ProgressFactory) -> Path:
    """The fine-tuned models as one, weights and thresholds fitted on the persons their training held out."""
    import shutil

    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache
    from facefit.train.ensemble import build_ensemble

    shutil.rmtree(out_dir, ignore_errors=True)
    with EvalCache(eval_cache_path()) as cache:
        built = build_ensemble([str(r) for r in runs], out_dir, cache=cache, workers=workers, progress=progress)
    report.ensembled(runs, out_dir, built)
    return out_dir


def _identify_1n(data: Path, models: list, out_dir: Path, workers: int | None,
                 progress) -> tuple[dict[str, dict], dict[str, int], float]:
    """Open-set 1:N on the Korean validation persons: enrol one photo each, probe with the rest and strangers."""
    import shutil

    from facefit.data.folders import IdentityFolders
    from facefit.eval.open_set import ProtocolOptions, evaluate_open_set, make_protocol
    from facefit.eval.report_1n import write_report_1n
    from facefit.eval.run import EvalOptions
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache

    t0 = time.perf_counter()
    root = data / "kfamily" / "val"
    meta = data / "kfamily" / "val_metadata.csv"
    folders = IdentityFolders.scan(root, metadata=meta if meta.is_file() else None)
    protocol = make_protocol(folders, ProtocolOptions(enrol=1, strangers=0.2, seed=0))
    with EvalCache(eval_cache_path()) as cache:
        run = evaluate_open_set(folders, protocol, models, EvalOptions(metric="auto", workers=workers), cache,
                                progress=progress)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    flags = " ".join(f"--model {label}" for label, _ in models)
    write_report_1n(run, out_dir, command=f"facefit eval-1n {root} --metadata {meta} --out REPORT {flags}")
    return {m.label: m.total for m in run.models}, protocol.counts(), time.perf_counter() - t0


DEMO_MARK = ".facefit-demo"


def _claim_out_dir(out_dir: Path) -> None:
    """Make ``out_dir`` the demo's own: new or empty, or marked by an earlier demo (whose files it replaces).

    The demo removes and rewrites its outputs, so a folder of anyone else's files is refused, not reused.
    """
    mark = out_dir / DEMO_MARK
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: is a file, not a folder for the demo's outputs")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not mark.is_file():
        raise UsageError(f"{out_dir}: not empty and not written by facefit demo (no {DEMO_MARK} in it); the demo "
                         f"replaces its outputs there, so choose a new or empty folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        mark.write_text("This folder holds facefit demo outputs; the next demo run replaces them.\n")
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot create the demo's folder: {exc.strerror or exc}") from None


@dataclass
class Fixtures:
    """Steps 1-5 on the fixtures: the Yale photos detected and embedded, dlib's chips embedded, the port
    checked against dlib, one face per person compared, and every pair scored at dlib's threshold."""

    yale: EmbeddedFaces
    johns: EmbeddedFaces
    yale_s: float
    johns_s: float
    checked: int  # Yale faces compared with dlib's compute_face_descriptor
    max_diff: float
    labels: list[str]  # the distance matrix's faces: 5 Johns, 5 Yale subjects
    paths: list[str]
    distances: np.ndarray
    threshold: float
    pairs: dict[str, dict[str, float]]  # per set, _pair_summary


def fixtures_step(data: Path, model: FaceEmbedder, out_dir: Path, workers: int | None) -> Fixtures:
    """Steps 1-5, writing embeddings.npz and the two distance heat maps into ``out_dir``."""
    import dlib

    from facefit.distances import pairwise_distances
    from facefit.engine import FaceEngine
    from facefit.io.assets import RESNET_V1, verified
    from facefit.io.embeddings import save_embeddings
    from facefit.io.files import collect_images
    from facefit.plots import distance_heatmap

    yale_files = collect_images([data / "fixtures" / "yale" / "original"]).files
    t0 = time.perf_counter()
    yale = FaceEngine(model, faces="largest", workers=workers).embed_files(yale_files, keep_chips=True)
    yale_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    johns = FaceEngine(model).embed_files(collect_images([data / "fixtures" / "johns"]).files, aligned=True,
                                          keep_chips=True)
    johns_s = time.perf_counter() - t0

    rec = dlib.face_recognition_model_v1(str(verified(RESNET_V1)[0]))
    sample = list(range(0, len(yale), max(1, len(yale) // 12)))[:12] if len(yale) else []
    ref = np.array([np.array(rec.compute_face_descriptor(yale.chips[i])) for i in sample], dtype=np.float64)
    diff = float(np.abs(ref - yale.embeddings[sample]).max()) if sample else float("nan")

    threshold = model.contract.thresholds.get("euclidean", 0.6)
    j_first: dict[str, int] = {}
    for i, p in enumerate(johns.paths):
        j_first.setdefault(_identity(p), i)
    y_first: dict[str, int] = {}
    for i, p in enumerate(yale.paths):
        if p.endswith("normal.png"):
            y_first.setdefault(_identity(p), i)
    j_idx, y_idx = list(j_first.values())[:5], list(y_first.values())[:5]
    emb = np.concatenate([johns.embeddings[j_idx], yale.embeddings[y_idx]])
    labels = [Path(johns.paths[i]).parent.name for i in j_idx] + [Path(yale.paths[i]).name for i in y_idx]
    paths = [johns.paths[i] for i in j_idx] + [yale.paths[i] for i in y_idx]
    pairs = {name: _pair_summary(res.embeddings, [_identity(p) for p in res.paths], threshold)
             for name, res in (("Johns (chips)", johns), ("Yale (detected)", yale))}

    for name, res in (("johns", johns), ("yale", yale)):
        order = np.argsort([_identity(p) for p in res.paths], kind="stable")
        distance_heatmap(pairwise_distances(res.embeddings[order]), [Path(res.paths[i]).parent.name for i in order],
                         out_dir / f"{name}_matrix.png", metric="euclidean",
                         title=f"{name}: pairwise distance, sorted by person")
    save_embeddings(out_dir / "embeddings.npz", paths=johns.paths + yale.paths,
                    embeddings=np.concatenate([johns.embeddings, yale.embeddings]),
                    contract_json=model.contract.to_json())
    return Fixtures(yale, johns, yale_s, johns_s, len(sample), diff, labels, paths, pairwise_distances(emb),
                    threshold, pairs)


class DemoReport(Protocol):
    """What the demo tells as it goes; ``facefit.cli.demo`` prints it."""

    def started(self, data: Path, model: FaceEmbedder, load_s: float) -> None: ...
    def fixtures(self, f: Fixtures) -> None: ...
    def verified(self, bench: str, label: str, result: dict, seconds: float, report_dir: Path) -> None: ...
    def skipped(self, what: str) -> None: ...
    def finetuning(self, base: str, train_dir: Path, minutes: float) -> None: ...
    def train_log(self, line: str) -> None: ...
    def finetuned(self, result: Any) -> None: ...
    def ensembled(self, runs: list[Path], out_dir: Path, built: Any) -> None: ...
    def compared(self, results: dict[str, dict[str, dict]], suite_doc: dict, where: str,
                 train_minutes: float) -> None: ...
    def identified(self, results: dict[str, dict], counts: dict[str, int], seconds: float,
                   report_dir: Path) -> None: ...
    def finished(self, out_dir: Path, files: list[str]) -> None: ...


def run_demo(data: Path, out_dir: Path, report: DemoReport, *, workers: int | None = None, lfw: bool = True,
             train_minutes: float = 5.0, progress: ProgressFactory = no_progress, suite: Path | None = None) -> dict:
    """Run the demo on ``data`` (a folder holding fixtures/), writing figures, reports and runs to ``out_dir``.

    ``suite``: the suite file of the final table (default: the Korean validation pairs and LFW found in ``data``).
    """
    from facefit.models import create_model

    for d in (data / "fixtures" / "johns", data / "fixtures" / "yale" / "original"):
        if not d.is_dir():
            raise UsageError(f"{d}: missing; the data folder must hold fixtures/johns and fixtures/yale")
    final_suite = demo_suite(data, lfw, suite)  # a bad suite file fails before anything runs
    _claim_out_dir(out_dir)
    t0 = time.perf_counter()
    model = create_model("dlib-resnet", precision="fp32")  # the exactness check compares fp32 with dlib
    report.started(data, model, time.perf_counter() - t0)
    fixtures = fixtures_step(data, model, out_dir, workers)
    report.fixtures(fixtures)
    files = ["embeddings.npz", "johns_matrix.png", "yale_matrix.png"]

    # 6. The pre-trained models on the Korean validation pairs (and LFW): dlib-resnet and the default, SFace.
    pre = [("dlib-resnet", model), ("sface", create_model("sface"))]
    verification: dict[str, dict[str, dict]] = {}
    benches = _benchmarks(data, lfw)
    for name, rel_root, rel_pairs in benches:
        res, secs = _verify(name, data / rel_root, data / rel_pairs, pre, out_dir / f"eval-{name}", workers,
                            progress)
        verification[name] = res
        for label, r in res.items():
            report.verified(name, label, r, secs, out_dir / f"eval-{name}")
        files.append(f"eval-{name}/")
    if not (data / "kfamily").is_dir():
        report.skipped("kfamily")

    # 7-8. Fine-tune both families on the Korean training persons, combine them, compare on the same pairs.
    every = list(pre)
    suite_doc: dict | None = None
    if train_minutes and (data / "kfamily" / "train").is_dir() and benches:
        runs = [_finetune(data, base, out_dir / f"train-{base}", train_minutes, report, workers, progress)
                for base in ("sface", "dlib-resnet")]
        ens = _ensemble(runs, out_dir / "ensemble", report, workers, progress)
        every += [("sface-finetuned", create_model(str(runs[0]))), ("dlib-finetuned", create_model(str(runs[1]))),
                  ("ensemble", create_model(str(ens)))]
        final, suite_doc, _ = _run_suite(final_suite, every, out_dir, workers, progress)
        verification.update(final)
        report.compared(final, suite_doc, final_suite.source or "the demo's benchmarks", train_minutes)
        files += ["train-sface/", "train-dlib-resnet/ (run folders: log.csv, plots.png, model/)", "ensemble/",
                  "suite/"]
    elif not train_minutes:
        report.skipped("fine-tuning")

    # 9. 1:N identification on the Korean validation persons, the deployment question.
    identification: dict[str, dict] = {}
    if (data / "kfamily" / "val").is_dir():
        identification, counts, secs = _identify_1n(data, every, out_dir / "eval-1n-korean-val", workers, progress)
        report.identified(identification, counts, secs, out_dir / "eval-1n-korean-val")
        files.append("eval-1n-korean-val/")
    report.finished(out_dir, files)
    return {"verification": verification, "identification": identification, "suite": suite_doc,
            "yale_faces": len(fixtures.yale), "yale_failures": fixtures.yale.failures,
            "johns_faces": len(fixtures.johns), "max_abs_diff_vs_dlib": fixtures.max_diff, "pairs": fixtures.pairs}
