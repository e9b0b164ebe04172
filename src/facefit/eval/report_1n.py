"""Writing a 1:N identification run: metrics_1n.json, report_1n.md and det.png."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facefit.eval.identification import FPIR_TARGETS, RANKS, fpir_key
from facefit.eval.open_set import OpenSetRun
from facefit.eval.report import _clean, _rel

UNITS = "distance (per model, see metric): a probe is matched to its nearest gallery person when distance <= threshold"


def metrics_doc(run: OpenSetRun, command: str = "") -> dict[str, Any]:
    import facefit

    proto = run.protocol
    models = {}
    for m in run.models:
        models[m.label] = {
            "contract": m.contract.to_dict(),
            "contract_id": m.contract.id,
            "metric": m.metric,
            "threshold": {"value": m.threshold, "source": m.threshold_source},
            "total": m.total,
            "subgroups": m.subgroups,
            "embedded_now": m.embedded_now,
        }
    return _clean({
        "facefit_version": facefit.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "threshold_units": UNITS,
        "data": {"root": str(run.data.root), "n_persons": len(run.data.persons), "n_images": run.data.n_images,
                 "n_images_used": len(set(proto.images())), "sha256_used": run.data_sha256},
        "protocol": {**proto.options.as_dict(), "aggregate": run.aggregate, **proto.counts(),
                     "rank_ties": "count against the probe (an impostor tied with the true person is a miss)",
                     "notes": proto.notes, "gallery_names": proto.gallery, "stranger_names": proto.strangers},
        "options": run.options.as_dict(),
        "detection": {
            "detector": run.options.detector, "faces": run.options.faces, "no_face": len(run.no_face),
            "detected_now": run.detected_now,
            "fallback": "median relative face box of the detected images in this run, scaled to each image; "
                        "landmarks predicted inside it",
            "fallback_box_relative": list(run.fallback_box),
            "images_without_face": [_rel(p, run.data.root) for p in run.no_face],
        },
        "subgroup_notes": run.group_notes,
        "timing_seconds": run.seconds,
        "models": models,
    })


def _f(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _total_columns() -> list[tuple[str, str]]:
    cols = [(f"rank_{k}", f"rank-{k}") for k in RANKS]
    for t in FPIR_TARGETS:
        cols += [(f"tpir_at_{fpir_key(t)}", f"TPIR@FPIR={t:g}"), (f"threshold_at_{fpir_key(t)}", "threshold")]
    return cols + [("threshold", "fixed T"), ("fpir_at_threshold", "FPIR@T"), ("tpir_at_threshold", "TPIR@T")]


def _group_columns() -> list[tuple[str, str]]:
    cols = [("rank_1", "rank-1")] + [(f"tpir_at_{fpir_key(t)}", f"TPIR@FPIR={t:g}") for t in FPIR_TARGETS]
    return cols + [("tpir_at_threshold", "TPIR@T"), ("fpir_at_threshold", "FPIR@T (strangers)")]


def report_markdown(doc: dict[str, Any]) -> str:
    p, det = doc["protocol"], doc["detection"]
    out = ["# facefit 1:N identification report", "",
           f"- data: `{doc['data']['root']}` ({doc['data']['n_persons']} persons, {doc['data']['n_images']} "
           f"images; {doc['data']['n_images_used']} used, content sha256 {doc['data']['sha256_used'][:12]})",
           f"- protocol (seed {p['seed']}): {p['gallery_persons']} gallery persons enrol {p['enrol']} image(s) "
           f"each ({p['aggregate']} over a person's images); {p['mated_probes']} mated probes; "
           f"{p['stranger_persons']} strangers give {p['nonmated_probes']} non-mated probes"
           + (f"; at most {p['probes_per_person']} probes per person" if p["probes_per_person"] else ""),
           f"- options: metric {doc['options']['metric']}, detector {det['detector']}, faces {det['faces']}",
           f"- no face detected in {det['no_face']} image(s): {det['fallback']}",
           f"- thresholds: {doc['threshold_units']}; rank ties {p['rank_ties']}",
           f"- command: `{doc['command']}`", ""]
    out += [f"- note: {n}" for n in p["notes"] + doc["subgroup_notes"]]
    cols = _total_columns()
    out += ["", "## Side by side", "", "| model | metric | " + " | ".join(h for _, h in cols) + " |",
            "|" + "---|" * (len(cols) + 2)]
    for label, m in doc["models"].items():
        out.append(f"| {label} | {m['metric']} | " + " | ".join(_f(m["total"].get(k)) for k, _ in cols) + " |")
    out.append("")
    gcols = _group_columns()
    for label, m in doc["models"].items():
        t = m["total"]
        out += [f"## {label}", "", f"contract `{m['contract_id']}`, {m['metric']} distance; fixed threshold T: "
                f"{_f(m['threshold']['value'])} ({m['threshold']['source']}); per subgroup of probe images at "
                f"the thresholds chosen on all probes", "",
                "| subgroup | mated | strangers | " + " | ".join(h for _, h in gcols) + " |",
                "|" + "---|" * (len(gcols) + 3)]
        rows = [("**total**", t)] + list(m["subgroups"].items())
        for name, g in rows:
            out.append(f"| {name} | {g.get('n_mated', 0)} | {g.get('n_nonmated', 0)} | "
                       + " | ".join(_f(g.get(k)) for k, _ in gcols) + " |")
        if t.get("notes"):
            out += ["", "Notes:"] + [f"- {n}" for n in t["notes"]]
        out.append("")
    if det["images_without_face"]:
        shown = det["images_without_face"][:50]
        out += ["## Images without a detected face", ""] + [f"- `{x}`" for x in shown]
        if det["no_face"] > len(shown):
            out.append(f"- ... and {det['no_face'] - len(shown)} more (all listed in metrics_1n.json)")
    return "\n".join(out) + "\n"


def plot_det(run: OpenSetRun, path: Path) -> None:
    """FNIR against FPIR (log) per model, with each model's fixed threshold marked."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from facefit.eval.identification import det_curve, operating_point

    labels = run.labels
    n_non = int(np.count_nonzero(labels < 0))
    floor = 1.0 / max(n_non, 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for m in run.models:
        fpir, fnir, _ = det_curve(m.dist, labels)
        if np.isnan(fpir).all() or np.isnan(fnir).all():
            continue
        # FPIR = 0 cannot sit on a log axis: it is drawn at half the resolution.
        line = ax.step(np.maximum(fpir, floor / 2), fnir, where="post",
                       label=f"{m.label} (rank-1 {_f(m.total.get('rank_1'), 3)})")
        if m.threshold is not None:
            op = operating_point(m.dist, labels, m.threshold)
            ax.plot([max(op["fpir"], floor / 2)], [op["fnir"]], "o", color=line[0].get_color(),
                    label=f"{m.label} at T={m.threshold:g}")
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 1.0)
    ax.set_ylim(0, 1.01)
    for t in FPIR_TARGETS:
        if t >= floor:
            ax.axvline(t, color="grey", lw=0.6, ls=":")
    ax.set_xlabel(f"FPIR: strangers matched to someone (log; {n_non} non-mated probes)")
    ax.set_ylabel("FNIR: mated probes not identified at rank 1")
    ax.set_title(f"open-set identification, {len(run.protocol.gallery)} gallery persons, "
                 f"{int(np.count_nonzero(labels >= 0))} mated probes", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report_1n(run: OpenSetRun, out_dir: Path, command: str = "") -> dict[str, Any]:
    """Write every report file into ``out_dir`` (which the caller has made and may replace)."""
    doc = metrics_doc(run, command)
    (out_dir / "metrics_1n.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "report_1n.md").write_text(report_markdown(doc))
    plot_det(run, out_dir / "det.png")
    return doc
