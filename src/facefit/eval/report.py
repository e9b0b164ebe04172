"""Writing an evaluation: metrics.json, report.md, scores.csv, roc.png and scores.png."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facefit.data.pairs import pairs_digest
from facefit.eval.run import EvalRun

COLUMNS = (  # (key, header, format)
    ("threshold", "threshold", "{:.4f}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("val", "VAL@1e-3", "{:.4f}"),
    ("far", "FAR", "{:.5f}"),
    ("auc", "AUC", "{:.4f}"),
    ("eer", "EER", "{:.4f}"),
    ("tar_at_far_1e-2", "TAR@1e-2", "{:.4f}"),
    ("tar_at_far_1e-3", "TAR@1e-3", "{:.4f}"),
    ("tar_at_far_1e-4", "TAR@1e-4", "{:.4f}"),
)
COMPARE_KEYS = ("accuracy", "auc", "eer", "val", "tar_at_far_1e-2", "tar_at_far_1e-3", "tar_at_far_1e-4")
LOWER_IS_BETTER = {"eer", "far"}


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def metrics_doc(run: EvalRun, command: str = "") -> dict[str, Any]:
    import facefit

    metrics_used = sorted({m.metric for m in run.models})
    units = (f"{' / '.join(metrics_used)} distance (per model, see calibration.metric): a pair is accepted as the "
             f"same person when distance <= threshold")
    models = {}
    for m in run.models:
        models[m.label] = {
            "contract": m.contract.to_dict(),
            "precision": m.precision,
            "detection": {"detector": m.detector, "no_face": len(m.no_face),
                          "images_without_face": [_rel(p, run.pairs.root) for p in m.no_face]},
            "total": m.total,
            "subgroups": m.subgroups,
            "calibration": {
                "metric": m.metric,
                "flip": run.options.flip,
                "subtract_mean": run.options.subtract_mean,
                "threshold_best_accuracy": m.total.get("threshold"),
                "threshold_far_1e-3": m.total.get("threshold_at_far_1e-3"),
                "threshold_far_1e-2": m.total.get("threshold_at_far_1e-2"),
                "accept": "distance <= threshold",
            },
        }
    return _clean({
        "facefit_version": facefit.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "threshold_units": units,
        "pairs": {"file": str(run.pairs.source), "sha256": pairs_digest(run.pairs.source),
                  "format": run.pairs.format, "n_pairs": len(run.pairs), "folds": run.pairs.folds,
                  "notes": run.pairs.notes, "warnings": run.pairs.warnings},
        "data": {"root": str(run.pairs.root), "n_images": len(run.pairs.images()), "sha256": run.data_sha256},
        "options": run.options.as_dict(),
        "detection": {
            "detector": run.options.detector or "each model's own: " + ", ".join(
                f"{m.label} {m.detector}" for m in run.models),
            "faces": run.options.faces,
            "no_face": len(run.no_face),  # the first model's; each model's are under models.<label>.detection
            "fallback": "median relative face box of the detected images in this run, scaled to each image; "
                        "landmarks predicted inside it",
            "fallback_box_relative": list(run.fallback_box),
            "images_without_face": [_rel(p, run.pairs.root) for p in run.no_face],
        },
        "timing_seconds": run.seconds,
        "models": models,
    })


def _fmt(m: dict[str, Any], key: str, fmt: str) -> str:
    v = m.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    s = fmt.format(v)
    if key == "accuracy" and m.get("accuracy_std") is not None and math.isfinite(m["accuracy_std"]):
        s += f" ± {m['accuracy_std']:.4f}"
    return s


def _table(rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    head = "| subgroup | pairs (same/diff) | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, m in rows:
        n = f"{m.get('n_pairs', 0)} ({m.get('n_pos', 0)}/{m.get('n_neg', 0)})"
        lines.append(f"| {name} | {n} | " + " | ".join(_fmt(m, k, f) for k, _, f in COLUMNS) + " |")
    return lines


def _delta(a: Any, b: Any, key: str) -> str:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return "n/a"
    d = b - a
    better = d < 0 if key in LOWER_IS_BETTER else d > 0
    return f"{d:+.4f}" + (" ✓" if better and abs(d) > 1e-12 else "")


def report_markdown(doc: dict[str, Any]) -> str:
    labels = list(doc["models"])
    det = doc["detection"]
    out = ["# facefit verification report", ""]
    out += [f"- pairs: `{doc['pairs']['file']}` ({doc['pairs']['format']}, {doc['pairs']['n_pairs']} pairs, "
            f"{len(doc['pairs']['folds'])} folds, sha256 {doc['pairs']['sha256'][:12]})",
            f"- images: {doc['data']['n_images']} under `{doc['data']['root']}` (content sha256 "
            f"{doc['data']['sha256'][:12]})",
            f"- options: metric {doc['options']['metric']}, flip {doc['options']['flip']}, subtract mean "
            f"{doc['options']['subtract_mean']}, detector {det['detector']}, faces {det['faces']}",
            f"- no face detected in {det['no_face']} image(s): {det['fallback']}",
            f"- thresholds: {doc['threshold_units']}",
            f"- command: `{doc['command']}`", ""]
    out[-1:-1] = [f"- warning: {w}" for w in doc["pairs"].get("warnings", [])]
    if len(labels) > 1:
        base = doc["models"][labels[0]]["total"]
        out += ["## Side by side", ""]
        head = "| metric | " + " | ".join(labels) + " | " + " | ".join(f"Δ {lb}" for lb in labels[1:]) + " |"
        out += [head, "|" + "---|" * (1 + 2 * len(labels) - 1)]
        for key in COMPARE_KEYS:
            vals = [doc["models"][lb]["total"].get(key) for lb in labels]
            cells = [("n/a" if v is None else f"{v:.4f}") for v in vals]
            deltas = [_delta(base.get(key), v, key) for v in vals[1:]]
            out.append(f"| {key} | " + " | ".join(cells) + " | " + " | ".join(deltas) + " |")
        subs = sorted(set().union(*(doc["models"][lb]["subgroups"].keys() for lb in labels)))
        if subs:
            out += ["", "Accuracy per subgroup:", "",
                    "| subgroup | pairs | " + " | ".join(labels) + " | " + " | ".join(f"Δ {lb}" for lb in labels[1:])
                    + " |", "|" + "---|" * (2 + 2 * len(labels) - 1)]
            for s in subs:
                ms = [doc["models"][lb]["subgroups"].get(s, {}) for lb in labels]
                vals = [m.get("accuracy") for m in ms]
                cells = [("n/a" if v is None else f"{v:.4f}") for v in vals]
                deltas = [_delta(vals[0], v, "accuracy") for v in vals[1:]]
                out.append(f"| {s} | {ms[0].get('n_pairs', 0)} | " + " | ".join(cells) + " | " + " | ".join(deltas)
                           + " |")
        out.append("")
    for lb in labels:
        m = doc["models"][lb]
        flip = ", test-time flip (the model's own)" if m["contract"].get("flip_average") else ""
        found = m.get("detection", {})
        faces = (f"; detector {found['detector']}, no face in {found['no_face']} image(s)" if found else "")
        out += [f"## {lb}", "", f"contract `{m['contract']['id']}`, {m['calibration']['metric']} distance{flip}{faces}"
                f", precision {m.get('precision', 'fp32')}",
                ""]
        rows = [("**total**", m["total"])] + sorted(m["subgroups"].items())
        out += _table(rows)
        notes = m["total"].get("notes") or []
        if notes:
            out += ["", "Notes:"] + [f"- {n}" for n in notes]
        out.append("")
    if det["images_without_face"]:
        shown = det["images_without_face"][:50]
        out += ["## Images without a detected face", ""] + [f"- `{p}`" for p in shown]
        if det["no_face"] > len(shown):
            out.append(f"- ... and {det['no_face'] - len(shown)} more (all listed in metrics.json)")
    return "\n".join(out) + "\n"


def scores_csv(run: EvalRun) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    attrs = run.pairs.attribute_names
    w.writerow(["path_a", "path_b", "same", "fold", *attrs, *[f"distance_{m.label}" for m in run.models]])
    for i, p in enumerate(run.pairs.pairs):
        w.writerow([_rel(p.a, run.pairs.root), _rel(p.b, run.pairs.root), int(p.same), p.fold,
                    *[p.attrs.get(a, "") for a in attrs], *[f"{m.distances[i]:.6f}" for m in run.models]])
    return buf.getvalue()


def plot_roc(run: EvalRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from facefit.eval.metrics import roc_curve

    same = np.array([p.same for p in run.pairs.pairs])
    n_neg = int((~same).sum())
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    floor = 1.0 / max(n_neg, 1)
    for m in run.models:
        far, tar, _ = roc_curve(-m.distances, same)
        keep = far > 0
        ax.step(np.r_[floor / 2, far[keep]], np.r_[tar[~keep].max() if (~keep).any() else 0, tar[keep]],
                where="post", label=f"{m.label} (AUC {m.total.get('auc', float('nan')):.4f}, "
                                    f"acc {m.total.get('accuracy', float('nan')):.4f})")
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 1.0)
    ax.set_ylim(0, 1.01)
    for t in (1e-3, 1e-2):
        if t >= floor:
            ax.axvline(t, color="grey", lw=0.6, ls=":")
    ax.set_xlabel(f"false accept rate (log; {n_neg} negative pairs, resolution {floor:.0e})")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"ROC, {' / '.join(sorted({m.metric for m in run.models}))} distance, {len(run.pairs)} pairs",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_scores(run: EvalRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    same = np.array([p.same for p in run.pairs.pairs])
    n = len(run.models)
    fig, axes = plt.subplots(n, 1, figsize=(6.4, 2.6 * n + 0.6), squeeze=False)
    for ax, m in zip(axes[:, 0], run.models):
        lo, hi = float(np.min(m.distances)), float(np.max(m.distances))
        bins = np.linspace(lo, hi, 60)
        ax.hist(m.distances[same], bins=bins, alpha=0.6, label=f"same person ({int(same.sum())})", color="tab:green")
        ax.hist(m.distances[~same], bins=bins, alpha=0.6, label=f"different ({int((~same).sum())})",
                color="tab:red")
        thr = m.total.get("threshold")
        if thr is not None and math.isfinite(thr):
            ax.axvline(thr, color="black", lw=1, ls="--", label=f"threshold {thr:.3f}")
        ax.set_title(f"{m.label} ({m.metric} distance)", fontsize=9)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("distance")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(run: EvalRun, out_dir: Path, command: str = "") -> dict[str, Any]:
    """Write every report file into ``out_dir`` (which the caller has made and may replace)."""
    doc = metrics_doc(run, command)
    (out_dir / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "report.md").write_text(report_markdown(doc))
    (out_dir / "scores.csv").write_text(scores_csv(run))
    plot_roc(run, out_dir / "roc.png")
    plot_scores(run, out_dir / "scores.png")
    return doc
