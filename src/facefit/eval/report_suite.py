"""Writing a suite evaluation: metrics.json, report.md, populations.png, det.png and scores-<benchmark>.csv."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facefit.eval.populations import gap, rates_at, threshold_at_fmr
from facefit.eval.report import _clean, metrics_doc, scores_csv
from facefit.eval.suite import SuiteRun, suite_digest

BENCH_KEYS = ("accuracy", "auc", "tar_at_far_1e-2", "tar_at_far_1e-3")
BENCH_HEADERS = {"accuracy": "accuracy", "auc": "AUC", "tar_at_far_1e-2": "TAR@1e-2", "tar_at_far_1e-3": "TAR@1e-3"}
KEPT = 0.005  # |Δ accuracy| below this reads "kept" in the headline


def _labels(srun: SuiteRun) -> list[str]:
    return [m.label for m in srun.runs[0].run.models]


def _pooled(srun: SuiteRun, names: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    runs = [r.run for r in srun.runs if r.benchmark.name in names]
    dist = np.concatenate([r.models[k].distances for r in runs])
    same = np.concatenate([np.array([p.same for p in r.pairs.pairs], dtype=bool) for r in runs])
    return dist, same


def population_section(srun: SuiteRun) -> dict[str, Any]:
    """Per model: the threshold at the suite's FMR on the reference, FMR/FNMR per population there, the gap."""
    suite = srun.suite
    ref = suite.reference_name
    out: dict[str, Any] = {}
    for k, label in enumerate(_labels(srun)):
        ref_dist, ref_same = _pooled(srun, [ref], k)
        threshold = threshold_at_fmr(ref_dist[~ref_same], suite.fmr)
        by_pop = {}
        for pop, names in suite.populations().items():
            dist, same = _pooled(srun, names, k)
            by_pop[pop] = {**rates_at(dist, same, threshold), "benchmarks": names}
        at_ref = rates_at(ref_dist, ref_same, threshold)
        n_neg = at_ref["n_neg"]
        note = (f"FMR target {suite.fmr:g} is below the resolution 1/{n_neg} of the reference's different-person "
                f"pairs: no such pair is accepted" if suite.fmr * n_neg < 1 else None)
        out[label] = {
            "metric": srun.runs[0].run.models[k].metric,
            "threshold": threshold,
            "accept": "distance <= threshold",
            "reference": ref,
            "fmr_target": suite.fmr,
            "reference_fmr": at_ref["fmr"],
            "reference_fnmr": at_ref["fnmr"],
            "note": note,
            "by_population": by_pop,
            "gap": gap(by_pop),
        }
    return out


def _diff(a: Any, b: Any) -> float | None:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return float(b) - float(a)


def deltas_section(benchmarks: dict[str, Any], populations: dict[str, Any]) -> dict[str, Any]:
    """Each later model against the first: per benchmark and per population, and the gap ratios."""
    labels = list(populations)
    first = labels[0]
    out: dict[str, Any] = {}
    for label in labels[1:]:
        bench = {}
        for name, doc in benchmarks.items():
            a, b = doc["models"][first]["total"], doc["models"][label]["total"]
            bench[name] = {key: _diff(a.get(key), b.get(key)) for key in BENCH_KEYS}
        pops = {}
        for pop, b in populations[label]["by_population"].items():
            a = populations[first]["by_population"][pop]
            pops[pop] = {key: _diff(a[key], b[key]) for key in ("fmr", "fnmr")}
        ga, gb = populations[first]["gap"], populations[label]["gap"]
        out[label] = {"against": first, "benchmarks": bench, "populations": pops,
                      "gap": {key: _diff(ga[key], gb[key]) for key in ("fmr_ratio", "fnmr_ratio")}}
    return out


def suite_doc(srun: SuiteRun, command: str = "", model_flags: str = "") -> dict[str, Any]:
    """The whole metrics.json: the single-eval layout per benchmark, the populations, the deltas."""
    import facefit

    suite = srun.suite
    benchmarks: dict[str, Any] = {}
    for r in srun.runs:
        b = r.benchmark
        data = f"{b.bin}" if b.bin is not None else f"{r.root} --pairs {r.pairs_file}"
        single = metrics_doc(r.run, f"facefit eval {data} --out REPORT {model_flags}".strip())
        for key in ("facefit_version", "created"):
            single.pop(key, None)
        benchmarks[b.name] = {"population": b.population_label, **single}
    populations = population_section(srun)
    doc = {
        "facefit_version": facefit.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "suite": {
            "file": str(suite.source) if suite.source else None,
            "sha256": suite_digest(suite.source) if suite.source else None,
            "reference": suite.reference_name, "fmr": suite.fmr,
            "benchmarks": [{"name": b.name, "population": b.population_label,
                            **{k: str(getattr(b, k)) for k in ("root", "pairs", "bin") if getattr(b, k) is not None}}
                           for b in suite.benchmarks],
        },
        "timing_seconds": srun.seconds,
        "benchmarks": benchmarks,
        "populations": populations,
    }
    if len(populations) > 1:
        doc["deltas"] = deltas_section(benchmarks, populations)
    return _clean(doc)


# -------------------------------------------------------------------------------------------------- report.md


def _f(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _rate(v: Any) -> str:
    return "n/a" if v is None else (f"{v:.2e}" if 0 < v < 1e-3 else f"{v:.4f}")


def _ratio(v: Any, zero: list[str], lower_bound: bool) -> str:
    if v is None:
        return "n/a (no errors)" if zero else "n/a"
    return ("≥ " if lower_bound else "") + f"{v:.2f}×"


def _d(v: Any, lower_is_better: bool = False) -> str:
    if v is None:
        return "n/a"
    better = v < 0 if lower_is_better else v > 0
    return f"{v:+.4f}" + (" ✓" if better and abs(v) > 1e-12 else "")


def headline(doc: dict[str, Any]) -> str:
    """'korean-val up +0.0712, lfw kept -0.0010; FNMR gap 3.10× -> 1.40× (narrowed)', last model vs first."""
    labels = list(doc["populations"])
    if len(labels) < 2:
        return ""
    first, last = labels[0], labels[-1]
    parts = []
    for name, bench in doc["benchmarks"].items():
        d = _diff(bench["models"][first]["total"].get("accuracy"), bench["models"][last]["total"].get("accuracy"))
        if d is None:
            continue
        word = "kept" if abs(d) < KEPT else ("up" if d > 0 else "down")
        parts.append(f"{name} {word} ({d:+.4f} accuracy)")
    gaps = []
    for key, name in (("fmr_ratio", "FMR"), ("fnmr_ratio", "FNMR")):
        a, b = doc["populations"][first]["gap"][key], doc["populations"][last]["gap"][key]
        if a is None or b is None:
            continue
        word = "narrowed" if b < a else ("widened" if b > a else "unchanged")
        gaps.append(f"{name} gap {a:.2f}× → {b:.2f}× ({word})")
    return f"{last} against {first}: " + ", ".join(parts) + ("; " + ", ".join(gaps) if gaps else "")


def benchmarks_table(doc: dict[str, Any]) -> list[str]:
    labels = list(doc["populations"])
    head = "| benchmark | population | pairs | metric | " + " | ".join(labels) + \
        "".join(f" | Δ {lb}" for lb in labels[1:]) + " |"
    lines = [head, "|" + "---|" * (4 + 2 * len(labels) - 1)]
    for name, bench in doc["benchmarks"].items():
        for i, key in enumerate(BENCH_KEYS):
            vals = [bench["models"][lb]["total"].get(key) for lb in labels]
            cells = [_f(v) for v in vals]
            deltas = [_d(_diff(vals[0], v)) for v in vals[1:]]
            lead = f"{name} | {bench['population']} | {bench['pairs']['n_pairs']}" if i == 0 else " | | "
            lines.append(f"| {lead} | {BENCH_HEADERS[key]} | " + " | ".join(cells)
                         + "".join(f" | {d}" for d in deltas) + " |")
    return lines


def population_table(doc: dict[str, Any]) -> list[str]:
    labels = list(doc["populations"])
    pops = list(doc["populations"][labels[0]]["by_population"])
    head = "| population | benchmarks | same / different pairs | " + " | ".join(
        f"FMR {lb} | FNMR {lb}" for lb in labels) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(labels))]
    for pop in pops:
        first = doc["populations"][labels[0]]["by_population"][pop]
        cells = []
        for lb in labels:
            r = doc["populations"][lb]["by_population"][pop]
            cells += [f"{_rate(r['fmr'])} ({r['false_matches']})", f"{_rate(r['fnmr'])} ({r['false_non_matches']})"]
        lines.append(f"| {pop} | {', '.join(first['benchmarks'])} | {first['n_pos']} / {first['n_neg']} | "
                     + " | ".join(cells) + " |")
    lines.append("| **threshold** | | | " + " | ".join(
        f"{doc['populations'][lb]['threshold']:.4f} ({doc['populations'][lb]['metric']}) | " for lb in labels) + " |")
    return lines


def gap_table(doc: dict[str, Any]) -> list[str]:
    lines = ["| model | FMR ratio (max / min) | highest / lowest FMR | FNMR ratio (max / min) | "
             "highest / lowest FNMR |", "|---|---|---|---|---|"]
    for lb, p in doc["populations"].items():
        g = p["gap"]
        ends = {key: f"{g[f'{key}_highest']} / {g[f'{key}_lowest']}" if g[f"{key}_ratio"] is not None else "-"
                for key in ("fmr", "fnmr")}
        lines.append(f"| {lb} | {_ratio(g['fmr_ratio'], g['zero_counts']['fmr'], g['lower_bound']['fmr'])} | "
                     f"{ends['fmr']} | {_ratio(g['fnmr_ratio'], g['zero_counts']['fnmr'], g['lower_bound']['fnmr'])}"
                     f" | {ends['fnmr']} |")
    return lines


def suite_markdown(doc: dict[str, Any]) -> str:
    s = doc["suite"]
    labels = list(doc["populations"])
    out = ["# facefit suite report", ""]
    if line := headline(doc):
        out += [f"**{line}**", ""]
    out += [f"- suite: `{s['file']}` (sha256 {(s['sha256'] or '')[:12]}); {len(s['benchmarks'])} benchmark(s)",
            f"- shared threshold: per model, set to FMR {s['fmr']:g} on the different-person pairs of "
            f"`{s['reference']}`; a pair is a match when distance <= threshold",
            f"- command: `{doc['command']}`",
            "- each benchmark is evaluated exactly as `facefit eval` alone would (same cache, metrics and "
            "numbers); its full single-eval results are under `benchmarks.<name>` in metrics.json", ""]
    out += ["## Benchmarks × models", ""] + benchmarks_table(doc) + [""]
    out += [f"## Populations at one threshold (FMR {s['fmr']:g} on {s['reference']})", "",
            "Rates with error counts in brackets.", ""] + population_table(doc) + [""]
    for lb in labels:
        if note := doc["populations"][lb].get("note"):
            out += [f"- {lb}: {note}", ""]
    out += ["## The gap" + (" before and after" if len(labels) > 1 else ""), ""] + gap_table(doc) + [""]
    out += ["A population with no error counts as one error (rate 1/n) when it is the lowest, and the ratio is then "
            "marked ≥ (a lower bound: its true rate is at most 1/n); it is never taken as the highest; with no "
            "error anywhere the ratio is n/a.", ""]
    if "deltas" in doc:
        out += ["## Changes against " + labels[0], ""]
        out += ["| model | population | Δ FMR | Δ FNMR |", "|---|---|---|---|"]
        for lb, d in doc["deltas"].items():
            for pop, v in d["populations"].items():
                out.append(f"| {lb} | {pop} | {_d(v['fmr'], True)} | {_d(v['fnmr'], True)} |")
        out.append("")
    out += ["![FMR and FNMR per population at the shared threshold](populations.png)", "",
            "![DET curves per population](det.png)", ""]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------------ plots


def plot_populations(doc: dict[str, Any], path: Path) -> None:
    """FMR and FNMR per population and model at each model's shared threshold (log scale; 0 drawn at 1/(2n))."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    labels = list(doc["populations"])
    pops = list(doc["populations"][labels[0]]["by_population"])
    fig, axes = plt.subplots(1, 2, figsize=(max(10.0, 1.2 * len(pops) * len(labels) + 2), 4.2))
    width = 0.8 / len(labels)
    for ax, (rate, count, total) in zip(axes, (("fmr", "false_matches", "n_neg"),
                                               ("fnmr", "false_non_matches", "n_pos"))):
        for j, lb in enumerate(labels):
            rows = [doc["populations"][lb]["by_population"][p] for p in pops]
            vals = [(r[rate] if r[count] else 0.5 / r[total]) if r[total] else np.nan for r in rows]
            xs = np.arange(len(pops)) + (j - (len(labels) - 1) / 2) * width
            bars = ax.bar(xs, vals, width, label=lb)
            for x, r, bar in zip(xs, rows, bars):
                if r[total] and not r[count]:
                    bar.set_hatch("//")
                    ax.text(x, bar.get_height(), "0", ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        lowest = min((0.5 / r[total] for lb in labels for r in doc["populations"][lb]["by_population"].values()
                      if r[total]), default=1e-4)
        ax.set_ylim(lowest / 2, 1.0)
        ax.set_xticks(range(len(pops)), labels=pops, fontsize=8, rotation=30 if len(pops) > 4 else 0)
        ax.set_title(f"{rate.upper()} at the shared threshold", fontsize=10)
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].axhline(doc["suite"]["fmr"], color="grey", lw=0.8, ls=":", label=f"target {doc['suite']['fmr']:g}")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"one threshold per model: FMR {doc['suite']['fmr']:g} on {doc['suite']['reference']} "
                 f"(hatched: no error, drawn at 1/(2n))", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_det(srun: SuiteRun, doc: dict[str, Any], path: Path) -> None:
    """DET curves (FNMR against FMR, log-log) per population, one curve per model, the shared threshold marked."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from facefit.eval.metrics import roc_curve

    labels = _labels(srun)
    pops = srun.suite.populations()
    n = len(pops)
    cols = min(n, 3)  # many populations wrap into rows of three
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 0.6, 4.0 * rows + 0.3), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, (pop, names) in zip(axes.flat, pops.items()):
        floor = 1.0
        for k, lb in enumerate(labels):
            dist, same = _pooled(srun, names, k)
            if not same.any() or same.all():
                continue
            fmr, tar, _ = roc_curve(-dist, same)
            fnmr = 1.0 - tar
            floor = min(floor, 1.0 / max(int((~same).sum()), 1), 1.0 / max(int(same.sum()), 1))
            line, = ax.step(np.clip(fmr, floor / 2, 1), np.clip(fnmr, floor / 2, 1), where="post", label=lb)
            r = doc["populations"][lb]["by_population"][pop]
            if r["fmr"] is not None and r["fnmr"] is not None:
                ax.plot(max(r["fmr"], floor / 2), max(r["fnmr"], floor / 2), "o", color=line.get_color(), ms=5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor / 2, 1)
        ax.set_ylim(floor / 2, 1)
        ax.set_xlabel("FMR (false match rate)")
        ax.set_ylabel("FNMR (false non-match rate)")
        ax.set_title(f"{pop} ({', '.join(names)})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("DET per population; dots: each model's shared threshold", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_suite_report(srun: SuiteRun, out_dir: Path, command: str = "", model_flags: str = "") -> dict[str, Any]:
    """Write every suite report file into ``out_dir`` (which the caller has made and may replace)."""
    doc = suite_doc(srun, command, model_flags)
    (out_dir / "metrics.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "report.md").write_text(suite_markdown(doc))
    for r in srun.runs:
        (out_dir / f"scores-{r.benchmark.name}.csv").write_text(scores_csv(r.run))
    plot_populations(doc, out_dir / "populations.png")
    plot_det(srun, doc, out_dir / "det.png")
    return doc
