"""``facefit ensemble``: several models as one, weighted and calibrated on held-out persons."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import CacheOpt, WorkersOpt, info, out, progress_bar


def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected numbers separated by commas, e.g. 0.6,0.4; got {text!r}",
                                 param_hint="--weights") from None


def ensemble(
    members: Annotated[list[str], typer.Argument(help="Two or more models: registered names, model folders or "
                                                      "training run folders.", show_default=False)],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The ensemble's model folder (new or empty).",
                                          show_default=False)],
    weights: Annotated[str | None, typer.Option("--weights", help="Comma-separated member weights (scaled to sum "
                                                                  "to 1). Default: z-normalisation fitted on "
                                                                  "held-out persons.", show_default=False)] = None,
    calibrate: Annotated[Path | None, typer.Option("--calibrate", help="Identity folders (ROOT/<person>/<photo>) "
                                                                       "to fit weights and thresholds on. Default: "
                                                                       "the persons the first fine-tuned member held "
                                                                       "out of its training.", show_default=False)]
    = None,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Combine models into one: its cosine similarity is the weighted mean of the members'.

    Each member cuts its own chip from the same detected face (the first member's
    detector finds the faces). The result is a model folder that works wherever a
    model does (eval, embed, compare, gallery, identify, stream, serve); its
    thresholds are calibrated on persons the members did not train on.
    """
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache
    from facefit.io.files import check_report_dir
    from facefit.train.ensemble import build_ensemble

    check_report_dir(out_dir, overwrite=False)
    if calibrate is not None and not calibrate.is_dir():
        raise typer.BadParameter(f"{calibrate}: not a folder", param_hint="--calibrate")
    with EvalCache(eval_cache_path(cache)) as store:
        report = build_ensemble(members, out_dir, weights=_weights(weights), calibrate=calibrate, cache=store,
                                workers=workers, progress=progress_bar, log=info)
    for note in report.notes:
        info(note)
    contract = report.model.contract
    for d in contract.members:
        out.print(f"{d['name']}: weight {d['weight']:.4f} ({d['id']})", markup=False)
    out.print(f"weights: {report.weights_source}", markup=False)
    for label, m in report.metrics.items():
        out.print(f"held-out {label}: accuracy {m['accuracy']:.4f}, AUC {m['auc']:.4f}, TAR@FAR=1e-2 "
                  f"{m['tar_at_far_1e-2']:.4f}", markup=False)
    if contract.thresholds:
        out.print(f"thresholds (cosine distance): {contract.thresholds}", markup=False)
    info(f"ensemble written to {report.path} ({contract.id})")
