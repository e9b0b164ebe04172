"""The model card's suite section: benchmarks, the population gap and the reference's change (forgetting).

``record_suite`` writes a suite evaluation of the fine-tuned model against its base (``facefit.eval.report_suite``
makes the document) into the model folder: a section of MODEL_CARD.md between markers, replaced on every call,
and ``metadata.suite`` in facefit-model.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facefit.errors import FacefitError

BEGIN = "<!-- facefit suite: begin -->"
END = "<!-- facefit suite: end -->"
KEYS = ("accuracy", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3")


def card_summary(doc: dict[str, Any], base: str, tuned: str) -> dict[str, Any]:
    """What the card keeps of a suite document: per benchmark the main numbers, per model the populations."""
    ref = doc["suite"]["reference"]
    benchmarks = {name: {"population": b["population"], "n_pairs": b["pairs"]["n_pairs"],
                         "models": {lb: {k: b["models"][lb]["total"].get(k) for k in KEYS} for lb in (base, tuned)}}
                  for name, b in doc["benchmarks"].items()}
    populations = {lb: {k: doc["populations"][lb][k] for k in ("metric", "threshold", "reference_fmr",
                                                                "by_population", "gap")} for lb in (base, tuned)}
    r = benchmarks[ref]["models"]
    change = {k: (r[tuned][k] - r[base][k]) if r[tuned][k] is not None and r[base][k] is not None else None
              for k in KEYS}
    return {"file": doc["suite"]["file"], "sha256": doc["suite"]["sha256"], "created": doc["created"],
            "command": doc["command"], "reference": ref, "fmr": doc["suite"]["fmr"], "base": base, "model": tuned,
            "benchmarks": benchmarks, "populations": populations, "reference_change": change}


def card_section(doc: dict[str, Any], base: str, tuned: str) -> str:
    """The MODEL_CARD.md section: forgetting on the reference, the benchmarks table, the populations, the gap."""
    from facefit.eval.report_suite import benchmarks_table, gap_table, headline, population_table

    s = card_summary(doc, base, tuned)
    ref = s["reference"]
    r = s["benchmarks"][ref]["models"]

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    acc = s["reference_change"]["accuracy"]
    lines = [BEGIN, "## Benchmarks, forgetting and the population gap", "",
             f"Suite `{s['file']}` (sha256 {(s['sha256'] or '')[:12]}), evaluated {s['created']} with "
             f"`{s['command']}`; base `{base}` against this model (`{tuned}`).", ""]
    if line := headline(doc):
        lines += [f"**{line}**", ""]
    lines += [f"- reference `{ref}` (forgetting): accuracy {f(r[base]['accuracy'])} → {f(r[tuned]['accuracy'])} "
              f"({'n/a' if acc is None else f'{acc:+.4f}'}), TAR@FAR=1e-3 {f(r[base]['tar_at_far_1e-3'])} → "
              f"{f(r[tuned]['tar_at_far_1e-3'])}", ""]
    lines += ["### Benchmarks", ""] + benchmarks_table(doc) + [""]
    lines += [f"### Populations at one threshold per model (FMR {s['fmr']:g} on {ref})", ""] + population_table(doc)
    lines += ["", "### The gap (max / min over populations)", ""] + gap_table(doc)
    lines += ["", "A population with no error counts as one error (rate 1/n) when it is the lowest; the ratio is "
                  "then a lower bound (marked ≥).", END]
    return "\n".join(lines) + "\n"


def record_suite(model_dir: Path, doc: dict[str, Any], base: str, tuned: str) -> None:
    """Write the suite section into ``model_dir``'s MODEL_CARD.md and ``metadata.suite`` of its JSON."""
    from facefit.io.files import write_text_atomic
    from facefit.models.artifact import META_FILE

    meta = model_dir / META_FILE
    try:
        desc = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FacefitError(f"{meta}: cannot read the model description: {exc}") from None
    desc.setdefault("metadata", {})["suite"] = card_summary(doc, base, tuned)
    card = model_dir / "MODEL_CARD.md"
    text = card.read_text() if card.is_file() else f"# {tuned}\n"
    section = card_section(doc, base, tuned)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_text_atomic(card, text)
    write_text_atomic(meta, json.dumps(desc, indent=2, sort_keys=True))
