"""``train``: a plain PyTorch loop with a time budget, validation every epoch and exact resume.

A run folder holds ``config.yaml`` (the resolved config), ``run.json`` (version,
git revision, command), ``checkpoints/`` (``last.pt`` after every epoch,
``best.pt``, ``reference.pt`` = the standardised pretrained weights the guards
pull toward), ``log.csv``, ``tensorboard/``, ``plots/`` and the exported model in
``model/``. Each epoch draws its batch order and augmentation from the seed and
the epoch number, so a resumed run continues exactly where the last completed
epoch left it.

The parts: ``rundir`` (the folder), ``train.data`` (chips), ``setup`` (what is
stepped), ``step`` (one epoch), ``schedule`` (learning rate and time budget),
``validate`` (selection), ``export``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefit.errors import UsageError
from facefit.io.progress import ProgressFactory, no_progress
from facefit.train.checkpoint import Progress
from facefit.train.config import TrainConfig
from facefit.train.rundir import CKPT_DIR, is_fresh, remove_failed_start

__all__ = ["CKPT_DIR", "TrainResult", "train"]


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    best: dict[str, Any]
    best_epoch: int
    epochs: int
    steps: int
    images_per_s: float
    seconds: float


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False, progress: ProgressFactory = no_progress,
          log: Callable[[str], None] = print, command: str = "") -> TrainResult:
    """Fine-tune ``cfg.base`` on ``cfg.data``; writes everything into ``run_dir``; returns the best epoch.

    A new run that fails before its first epoch is saved (bad data, a wrong path, Ctrl-C while aligning)
    takes its run folder away again, so the same command can simply be run again.
    """
    existed, fresh = run_dir.exists(), is_fresh(run_dir, resume)
    try:
        return _train(cfg, run_dir, resume=resume, progress=progress, log=log, command=command)
    except BaseException:
        if fresh:
            remove_failed_start(run_dir, existed)
        raise


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but torch sees no CUDA device")
    return name


def _main_rank_first(dist: Any, make: Callable[[], Any]) -> Any:
    """``make()`` on rank 0 first (it detects and caches), then on the other ranks (they read the cache)."""
    out = None
    for turn in (0, 1):
        if dist.main == (turn == 0):
            out = make()
        dist.barrier()
    return out


def _better(value: float, best: float | None, metric: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def _load_data(cfg: TrainConfig, recipe: Any, dist: Any, progress: ProgressFactory,
               log: Callable[[str], None]) -> tuple[Any, np.ndarray | None, Any]:
    """The aligned training chips, the anchor chips (or None) and the validator (rank 0 only, or None)."""
    from facefit.io.assets import eval_cache_path
    from facefit.io.cache import EvalCache
    from facefit.train.data import prepare_anchors, prepare_data, val_overlap_note
    from facefit.train.validate import PairsValidator

    with EvalCache(eval_cache_path()) as cache:
        bar = progress if dist.main else no_progress
        data = _main_rank_first(dist, lambda: prepare_data(cfg.data, recipe, cache, seed=cfg.seed,
                                                           workers=cfg.workers, progress=bar))
        anchors, anchor_notes = None, []
        if cfg.guard.anchors:
            anchors, anchor_notes = _main_rank_first(dist, lambda: prepare_anchors(
                cfg.guard.anchors, recipe, cache, detector=cfg.data.detector, workers=cfg.workers, progress=bar))
        validator = None
        if cfg.data.val_pairs is not None and dist.main:
            validator = PairsValidator.build(cfg.data.val_pairs, cfg.data.val_root, recipe, cache,
                                             workers=cfg.workers, progress=progress)
    train_set, val_set = data.train, data.val
    if dist.main and validator is None and val_set is not None:
        validator = PairsValidator.from_held_out(val_set.chips, val_set.labels, cfg.seed)
    if dist.main:
        overlap = val_overlap_note(train_set, validator.pairs.images(), cfg.data.val_root) \
            if validator is not None and cfg.data.val_pairs is not None else None
        repeats = validator.pairs.warnings if validator is not None else []  # repeated pairs, self-pairs
        for note in data.notes + anchor_notes + ([overlap] if overlap else []) + repeats:
            log(note)
        log(f"training on {len(train_set)} faces of {train_set.n_persons} persons"
            + (f"; {len(val_set)} faces of {val_set.n_persons} held-out persons" if val_set else "")
            + (f"; validating on {validator.n_pairs} pairs" if validator else "; no validation"))
    return data, anchors, validator


def _start_weights(cfg: TrainConfig, model: Any, train_set: Any, ckpt_dir: Path, resumed: bool, main: bool) -> None:
    """A new run standardises the pretrained weights and saves them as the guards' reference; a resumed
    run reloads that reference (its own weights come later, once the adapters exist)."""
    from facefit.models.standardize import standardize_
    from facefit.train.checkpoint import load_checkpoint, save_checkpoint

    if resumed:
        model.load_state_dict(load_checkpoint(ckpt_dir / "reference.pt")["model"])
        return
    if cfg.standardize and hasattr(model, "conv_affine_pairs"):
        rng = np.random.default_rng(cfg.seed)
        calib = train_set.chips[rng.choice(len(train_set), min(len(train_set), 1024), replace=False)]
        standardize_(model, calib)
    if main:
        save_checkpoint(ckpt_dir / "reference.pt", {"model": model.state_dict()})


def _validate(cfg: TrainConfig, model: Any, validator: Any, val_set: Any, row: dict[str, Any],
              run: Progress, ckpt_dir: Path) -> bool:
    """Scores the epoch into ``row``, keeps ``best.pt`` and the stale count; returns whether it is the best."""
    from facefit.train.checkpoint import save_checkpoint
    from facefit.train.validate import prototype_loss

    metrics = validator(model, cfg.distance) if validator else {}
    row["val_loss"] = prototype_loss(model, val_set.chips, val_set.labels) if val_set else float("nan")
    row.update({k: metrics.get(k) for k in ("accuracy", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3",
                                            "threshold")})
    value = row["val_loss"] if cfg.select_metric == "val_loss" else metrics.get(cfg.select_metric, math.nan)
    if value is None:
        value = math.nan
    if not (validator or val_set) or _better(value, run.best, cfg.select_metric):
        run.best = value if math.isfinite(value) else run.best
        run.best_epoch, run.best_metrics, run.stale = row["epoch"], metrics, 0
        save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": row["epoch"],
                                               "metrics": metrics})
        return True
    run.stale += 1
    return False


def _train(cfg: TrainConfig, run_dir: Path, *, resume: bool, progress: ProgressFactory,
           log: Callable[[str], None], command: str) -> TrainResult:
    from facefit.models import create_model
    from facefit.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
    from facefit.train.distributed import Dist
    from facefit.train.export import export_model
    from facefit.train.logs import TrainLog, epoch_line
    from facefit.train.rundir import prepare_run_dir
    from facefit.train.schedule import TimeBudget
    from facefit.train.setup import build_stepper
    from facefit.train.step import MEMORY_FORMAT, run_epoch

    device = _device(cfg.device)
    dist = Dist.from_env(device)
    if dist.world > 1 and device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"
    t_begin = time.perf_counter()
    if dist.main:
        prepare_run_dir(cfg, run_dir, resume, command)
    dist.barrier()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    ckpt_dir = run_dir / CKPT_DIR

    # Validation, the head's start and calibration embed in fp32: exact and the same on every machine.
    model = create_model(cfg.base, pretrained=cfg.pretrained, precision="fp32")
    if cfg.flip_average:  # validation, calibration and the exported model all embed this way
        model.contract = replace(model.contract, flip_average=True)
    data, anchors, validator = _load_data(cfg, model.contract.align, dist, progress, log)
    train_set, val_set = data.train, data.val

    state = load_checkpoint(ckpt_dir / "last.pt") if resume else None
    if state is not None and state.get("data_digest", data.digest) != data.digest:
        raise UsageError(f"{run_dir}: the training images changed since the run started (content digest "
                         f"{state['data_digest'][:12]}, now {data.digest[:12]}); an exact resume needs the same "
                         f"data: put it back, or start a new run with --out")
    if state is not None and state.get("finished"):
        from facefit.models.artifact import META_FILE

        if (run_dir / "model" / META_FILE).is_file():  # its exported model (and any notes in it) stays as it is
            raise UsageError(f"{run_dir}: the run has finished and its model is in {run_dir / 'model'}; nothing "
                             f"to resume (to export it again, move that folder away first)")
        log(f"{run_dir}: the run had finished; exporting its best model again")
    _start_weights(cfg, model, train_set, ckpt_dir, state is not None, dist.main)
    model.to(device=device, memory_format=MEMORY_FORMAT)
    s, frozen = build_stepper(cfg, model, train_set, state, device=device, dist=dist, log=log)
    train_log = TrainLog(run_dir, tensorboard=dist.main)
    if dist.main and train_log.note:
        log(train_log.note)

    o = cfg.optim
    run = Progress()
    if state is not None:
        run = Progress.from_checkpoint(state)
        set_rng_state(state["rng"])
        train_log.truncate(run.epoch)
        log(f"resuming {run_dir} after epoch {run.epoch} (step {run.step} of {s.schedule.total})")
    elif dist.main:
        log(f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.2f} M trainable parameters"
            + (f" ({frozen / 1e6:.2f} M frozen)" if frozen else "") + f"; {s.steps_per_epoch} steps of {s.batch} "
            f"per epoch; {o.epochs} epochs planned" + (f", within {o.time_budget_min:g} min" if o.time_budget_min
                                                      else "") + f"; device {device}"
            + (", bf16 autocast" if s.bf16 else ", fp32"))
    budget = TimeBudget(o.time_budget_min, s.schedule, steps_per_epoch=s.steps_per_epoch, batch=s.batch,
                        max_steps=o.epochs * s.steps_per_epoch, broadcast=dist.broadcast_int,
                        resumed=state is not None, fit=o.fit_budget)
    t0 = time.perf_counter() - run.elapsed
    images_seen, train_seconds = 0, 0.0
    while not run.finished and run.epoch < o.epochs and run.step < s.schedule.total:
        note = budget.replan(run.epoch, run.step, time.perf_counter() - t0)
        if note and dist.main:
            log(note)
        run.step, done = run_epoch(s, train_set.chips, train_set.labels, anchors, run.epoch, run.step,
                                   budget=budget, clock=lambda: time.perf_counter() - t0, dist=dist,
                                   progress=progress, log=log, last_good=ckpt_dir / "last.pt")
        train_seconds += done.seconds
        images_seen += done.images
        run.epoch += 1
        if done.out_of_time and dist.main:
            log(f"time budget {o.time_budget_min:g} min reached: stopped in epoch {run.epoch} of {o.epochs} (step "
                f"{run.step} of {s.schedule.total}); the learning rate had not decayed to its end. Raise "
                f"--time-budget to run the whole schedule, or set optim.fit_budget=true to plan it within the time")
        run.finished = done.out_of_time or run.step >= s.schedule.total or run.epoch >= o.epochs
        row: dict[str, Any] = {"epoch": run.epoch, "step": run.step, "seconds": round(time.perf_counter() - t0, 1),
                               "lr": o.lr * s.schedule(run.step),
                               "images_per_s": round(done.steps * s.batch / max(1e-9, done.seconds), 1)}
        row.update({k: v / max(1, done.steps) for k, v in done.sums.items()})
        if dist.main:
            averaged = s.ema.swapped_in(model) if s.ema is not None else contextlib.nullcontext()
            with averaged:  # validation, selection and best.pt see the averaged weights
                is_best = _validate(cfg, model, validator, val_set, row, run, ckpt_dir)
            train_log.add(row)
            train_log.plot(run_dir / "plots.png")
            log(epoch_line(row, cfg, is_best))
            if cfg.early_stop and run.stale >= cfg.early_stop and not run.finished:
                log(f"early stop: no better {cfg.select_metric} for {run.stale} epochs")
                run.finished = True
        run.finished = dist.any(run.finished)
        run.elapsed = time.perf_counter() - t0
        if dist.main:
            save_checkpoint(ckpt_dir / "last.pt", {
                "model": model.state_dict(), "loss": s.loss_fn.state_dict(), "optimizer": s.optimizer.state_dict(),
                "scheduler": s.scheduler.state_dict(), "scaler": s.scaler.state_dict(),
                "total_steps": s.schedule.total, "rng": rng_state(), "config_digest": cfg.digest(),
                "data_digest": data.digest, "bf16": s.bf16,
                "ema": s.ema.state_dict() if s.ema is not None else None, **run.to_checkpoint()})
        dist.barrier()

    if dist.main:
        best_state = load_checkpoint(ckpt_dir / "best.pt") if (ckpt_dir / "best.pt").is_file() else None
        if best_state is not None:
            model.load_state_dict(best_state["model"])
            run.best_metrics, run.best_epoch = best_state["metrics"], best_state["epoch"]
        export_model(model, cfg, run_dir, run.best_metrics, run.best_epoch, data.digest, train_set,
                     "bf16 autocast" if s.bf16 else "fp32")
        train_log.close()
    dist.barrier()
    dist.close()
    return TrainResult(run_dir, run_dir / "model", run.best_metrics, run.best_epoch, run.epoch, run.step,
                       images_seen / train_seconds if train_seconds else 0.0, time.perf_counter() - t_begin)
