"""``facefit train``: fine-tune a face model on identity folders of the target population."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facefit.cli.common import err, info, progress_bar


def train_command(
    data: Annotated[list[Path] | None, typer.Argument(help="Identity folders (ROOT/<person>/<image>); several are "
                                                           "merged.", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (must not exist, or be empty).",
                                             show_default=False)] = None,
    base: Annotated[str | None, typer.Option("--base", "-b", help="Model to start from: name or path "
                                                                  "[config default: sface].",
                                             show_default=False)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (sections data, augment, loss, "
                                                                       "optim, guard).", show_default=False)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override one config value, e.g. optim.lr=3e-4 "
                                                                 "(repeatable).", show_default=False)] = None,
    val_pairs: Annotated[Path | None, typer.Option("--val-pairs", help="Verification pairs scored after each epoch "
                                                                       "(CSV or LFW pairs.txt).",
                                                   show_default=False)] = None,
    val_root: Annotated[Path | None, typer.Option("--val-root", help="Folder the val pairs refer to.",
                                                  show_default=False)] = None,
    metadata: Annotated[list[Path] | None, typer.Option("--metadata", help="Per-image attribute CSV, one per DATA "
                                                                           "folder.", show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs [the base's recipe: dlib-resnet 12, "
                                                                    "sface 3].",
                                               show_default=False)] = None,
    time_budget: Annotated[float | None, typer.Option("--time-budget", min=0.1, help="Cap on the whole run's "
                                                      "minutes: a run that would take longer stops and says so "
                                                      "[config default: 30].",
                                                      show_default=False)] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the run in this folder from its last "
                                                                 "completed epoch.", show_default=False)] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda, cuda:1 ...",
                                               show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1, help="Alignment processes.")] = None,
    report_suite: Annotated[Path | None, typer.Option("--report-suite", help="After training, evaluate the model "
                                                      "and its base on this suite YAML and write the benchmarks, "
                                                      "forgetting and the population gap into the model card (as "
                                                      "`facefit card RUN --suite`).", show_default=False)] = None,
) -> None:
    """Fine-tune a face-embedding model on photos of a target population.

    The default recipe (base sface): ArcFace (margin 0.3 rad) with a head
    started at each person's mean embedding, distillation to the pretrained
    model, frozen BatchNorm statistics and the first blocks frozen against
    forgetting, AdamW with warm-up and cosine decay, 3 epochs (dlib-resnet:
    12), capped by a 30-minute budget. Without
    --val-pairs, 10% of the persons are held out to select the best epoch and
    calibrate thresholds. The run folder gets
    config.yaml, log.csv, plots.png, TensorBoard logs, checkpoints (resume with
    --resume RUN) and the exported model in RUN/model, which
    `facefit eval/embed/compare --model RUN` load directly.
    """
    import shlex
    import sys

    from facefit.errors import UsageError
    from facefit.train.config import load_config, parse_set
    from facefit.train.loop import train
    from facefit.train.rundir import resume_config

    suite = None
    if report_suite is not None:
        from facefit.eval.suite import load_suite

        suite = load_suite(report_suite)  # a bad suite fails now, not after the training
    overrides = parse_set(set_ or [])
    for key, value in (("base", base), ("optim.epochs", epochs), ("optim.time_budget_min", time_budget),
                       ("device", device), ("workers", workers)):
        if value is not None:
            overrides[key] = value
    if resume is not None:
        given = {"DATA": data, "--out": out, "--config": config, "--set": set_, "--base": base, "--epochs": epochs,
                 "--time-budget": time_budget, "--val-pairs": val_pairs, "--val-root": val_root,
                 "--metadata": metadata}
        cfg = resume_config(resume, changed=[k for k, v in given.items() if v], overrides={"device": device,
                                                                                          "workers": workers})
        run_dir, is_resume = resume, True
    else:
        if out is None:
            raise UsageError("give --out RUN (a new folder for the run), or --resume RUN")
        if data:
            overrides["data.train"] = [str(p) for p in data]
        if metadata:
            overrides["data.metadata"] = [str(p) for p in metadata]
        if val_pairs is not None:
            overrides["data.val_pairs"] = str(val_pairs)
            overrides["data.val_root"] = str(val_root) if val_root else None
        elif val_root is not None:
            raise UsageError("--val-root goes with --val-pairs")
        if val_pairs is not None and val_root is None:
            raise UsageError("--val-pairs needs --val-root, the folder its image paths are relative to")
        cfg = load_config(config, overrides)
        run_dir, is_resume = out, False
    try:
        result = train(cfg, run_dir, resume=is_resume, progress=progress_bar, log=info,
                       command="facefit " + shlex.join(sys.argv[1:]))
    except KeyboardInterrupt:
        if (run_dir / "checkpoints" / "last.pt").is_file():
            info(f"interrupted; every finished epoch is saved: continue with facefit train --resume "
                 f"{shlex.quote(str(run_dir))}")
        else:
            info("interrupted before the first epoch was saved; the run folder was removed")
        raise
    best = result.best
    summary = ", ".join(f"{k} {best[k]:.4f}" for k in ("accuracy", "auc", "tar_at_far_1e-2") if best.get(k) is not None)
    err.print(f"done in {result.seconds / 60:.1f} min ({result.images_per_s:.0f} img/s training); best epoch "
              f"{result.best_epoch}" + (f": {summary}" if summary else "") + f"; model: {result.model_dir}",
              markup=False)
    if suite is not None:
        from facefit.cli.card import suite_card

        suite_card(run_dir, suite, base=cfg.base, workers=cfg.workers)
    else:
        err.print(f"evaluate it: facefit eval ROOT --pairs PAIRS --out REPORT --model {cfg.base} --model {run_dir}",
                  markup=False)
