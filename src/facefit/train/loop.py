"""``train``: a plain PyTorch loop with a time budget, validation every epoch and exact resume.

A run folder holds ``config.yaml`` (the resolved config), ``run.json`` (version,
git revision, command), ``checkpoints/`` (``last.pt`` after every epoch,
``best.pt``, ``reference.pt`` = the standardised pretrained weights the guards
pull toward), ``log.csv``, ``tensorboard/``, ``plots/`` and the exported model in
``model/``. Each epoch draws its batch order and augmentation from the seed and
the epoch number, so a resumed run continues exactly where the last completed
epoch left it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facefit.align.cached import ProgressFactory, no_progress
from facefit.errors import FacefitError, UsageError
from facefit.models.base import FaceEmbedder
from facefit.train.config import TrainConfig, load_config

CKPT_DIR = "checkpoints"


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


class Schedule:
    """Linear warm-up, then cosine decay to zero at ``total`` steps (re-plannable once the speed is known)."""

    def __init__(self, total: int, warmup: float) -> None:
        self.total = max(1, total)
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        w = max(1, int(self.warmup * self.total))
        if step < w:
            return (step + 1) / w
        progress = min(1.0, (step - w) / max(1, self.total - w))
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def _git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool, command: str) -> None:
    import yaml

    cfg_path = run_dir / "config.yaml"
    if resume:
        if not (run_dir / CKPT_DIR / "last.pt").is_file():
            raise UsageError(f"{run_dir}: nothing to resume (no {CKPT_DIR}/last.pt)")
        stored = load_config(cfg_path)
        if stored.digest() != cfg.digest():
            raise UsageError(f"{run_dir} was started with another config (digest {stored.digest()}, this one "
                             f"{cfg.digest()}); resume with the same config, or start a new run folder")
        return
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(f"{run_dir}: already exists and is not empty; continue it with --resume, "
                         f"or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    import facefit

    meta = {"facefit_version": facefit.__version__, "git_revision": _git_revision(), "command": command,
            "config_digest": cfg.digest(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__}
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but torch sees no CUDA device")
    return name


def _epoch_order(labels: np.ndarray, epoch: int, seed: int, pk: int | None) -> np.ndarray:
    """The global sample order of one epoch: a permutation, or P x K person blocks for triplet losses."""
    rng = np.random.default_rng([seed, epoch])
    if pk is None:
        return rng.permutation(len(labels))
    by_person = [np.flatnonzero(labels == k) for k in range(int(labels.max()) + 1)]
    out: list[int] = []
    while len(out) < len(labels):
        for k in rng.permutation(len(by_person)):
            imgs = by_person[k]
            out.extend(rng.choice(imgs, size=pk, replace=len(imgs) < pk))
            if len(out) >= len(labels):
                break
    return np.asarray(out[: (len(labels) // pk) * pk])


class _Step(nn.Module):
    """Backbone (from stage ``start``) + loss as one module, so DDP synchronises the head's gradients too."""

    def __init__(self, model: FaceEmbedder, loss: nn.Module, start: int) -> None:
        super().__init__()
        self.model = model
        self.loss = loss
        self.start = start

    def forward(self, x: torch.Tensor, y: torch.Tensor,
                anchors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        n = len(x)
        if anchors is not None:  # one pass for both, so DDP sees a single forward
            x = torch.cat([x, anchors])
        emb = self.model.run_stages(x, self.start) if self.start else self.model(x)
        return emb[:n], self.loss(emb[:n].float(), y), (emb[n:] if anchors is not None else None)


def _main_rank_first(dist: Any, make: Callable[[], Any]) -> Any:
    """``make()`` on rank 0 first (it detects and caches), then on the other ranks (they read the cache)."""
    out = None
    for turn in (0, 1):
        if dist.main == (turn == 0):
            out = make()
        dist.barrier()
    return out


def _param_groups(model: nn.Module, loss: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    o = cfg.optim
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    if o.layer_lr == "relative" and decay:
        # Pretrained weight tensors differ in scale by 20x and more (dlib-resnet: RMS 0.003 to 0.07); a flat
        # Adam step moves the small ones by a far larger fraction of their size.
        rms = [float(p.detach().float().pow(2).mean().sqrt()) for p in decay]
        ref = float(np.median(rms)) or 1.0
        groups = [{"params": [p], "weight_decay": o.weight_decay, "lr": o.lr * max(r, 1e-12) / ref}
                  for p, r in zip(decay, rms)]
    else:
        groups = [{"params": decay, "weight_decay": o.weight_decay, "lr": o.lr}]
    groups.append({"params": no_decay, "weight_decay": 0.0, "lr": o.lr})
    head = [p for p in loss.parameters() if p.requires_grad]
    if head:
        groups.append({"params": head, "weight_decay": 0.0, "lr": o.lr * o.head_lr_mult})
    return [g for g in groups if g["params"]]


def _better(value: float, best: float | None, metric: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if metric == "val_loss" else value > best


def train(cfg: TrainConfig, run_dir: Path, *, resume: bool = False, progress: ProgressFactory = no_progress,
          log: Callable[[str], None] = print, command: str = "") -> TrainResult:
    """Fine-tune ``cfg.base`` on ``cfg.data``; writes everything into ``run_dir``; returns the best epoch.

    A new run that fails before its first epoch is saved (bad data, a wrong path, Ctrl-C while aligning)
    takes its run folder away again, so the same command can simply be run again.
    """
    existed = run_dir.exists()
    fresh = not resume and not (existed and run_dir.is_dir() and any(run_dir.iterdir()))
    try:
        return _train(cfg, run_dir, resume=resume, progress=progress, log=log, command=command)
    except BaseException:
        if fresh and run_dir.is_dir() and not (run_dir / CKPT_DIR / "last.pt").exists():
            import os
            import shutil

            if os.environ.get("RANK", "0") == "0":
                if existed:  # it was empty: empty it again
                    for child in run_dir.iterdir():
                        if child.is_dir():
                            shutil.rmtree(child)
                        else:
                            child.unlink()
                else:
                    shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(cfg: TrainConfig, run_dir: Path, *, resume: bool, progress: ProgressFactory,
           log: Callable[[str], None], command: str) -> TrainResult:
    from facefit.io.assets import cache_dir
    from facefit.io.cache import EvalCache
    from facefit.models import create_model
    from facefit.models.standardize import standardize_
    from facefit.train.adapters import add_adapters, freeze_all_but_adapters
    from facefit.train.augment import augment
    from facefit.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
    from facefit.train.data import prepare_anchors, prepare_data
    from facefit.train.distributed import Dist
    from facefit.train.ema import WeightEMA
    from facefit.train.export import export_model
    from facefit.train.guard import DISTILLATION, L2SP, freeze_stages
    from facefit.train.logs import TrainLog
    from facefit.train.losses import CLASSIFICATION, build_loss, init_head_from_means
    from facefit.train.validate import PairsValidator, prototype_loss

    device = _device(cfg.device)
    dist = Dist.from_env(device)
    if dist.world > 1 and device.startswith("cuda"):
        device = f"cuda:{dist.local_rank}"
    t_begin = time.perf_counter()
    if dist.main:
        _prepare_run_dir(cfg, run_dir, resume, command)
    dist.barrier()
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    ckpt_dir = run_dir / CKPT_DIR

    model = create_model(cfg.base, pretrained=cfg.pretrained)
    if cfg.flip_average:  # validation, calibration and the exported model all embed this way
        model.contract = replace(model.contract, flip_average=True)
    recipe = model.contract.align
    with EvalCache(cache_dir() / "eval-cache.sqlite") as cache:
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
        for note in data.notes + anchor_notes:
            log(note)
        log(f"training on {len(train_set)} faces of {train_set.n_persons} persons"
            + (f"; {len(val_set)} faces of {val_set.n_persons} held-out persons" if val_set else "")
            + (f"; validating on {validator.n_pairs} pairs" if validator else "; no validation"))

    state = load_checkpoint(ckpt_dir / "last.pt") if resume else None
    if state is not None and state.get("finished"):
        log(f"{run_dir}: the run had finished; exporting its best model again")
    if state is None:
        if cfg.standardize and hasattr(model, "conv_affine_pairs"):
            rng = np.random.default_rng(cfg.seed)
            calib = train_set.chips[rng.choice(len(train_set), min(len(train_set), 1024), replace=False)]
            standardize_(model, calib)
        if dist.main:
            save_checkpoint(ckpt_dir / "reference.pt", {"model": model.state_dict()})
    else:
        model.load_state_dict(load_checkpoint(ckpt_dir / "reference.pt")["model"])  # the pretrained reference
    # channels-last convolutions are ~15% faster on CPU (oneDNN) and on recent GPUs.
    memory_format = torch.channels_last
    model.to(device=device, memory_format=memory_format)

    teacher = None
    distill = DISTILLATION[cfg.guard.distill_kind]
    if cfg.guard.distill_weight > 0:
        frozen_copy = copy.deepcopy(model).eval()
        for p in frozen_copy.parameters():
            p.requires_grad_(False)
        teacher = frozen_copy._inference_net()  # it never changes: use the folded, faster copy
    n_classes = train_set.n_persons
    loss_fn = build_loss(cfg.loss, n_classes, model.embedding_dim).to(device)
    if state is None and cfg.loss.kind in CLASSIFICATION and cfg.loss.head_init == "class-mean":
        emb = torch.from_numpy(model.embed(train_set.chips))
        init_head_from_means(loss_fn, emb, torch.from_numpy(train_set.labels),
                             cfg.loss.sub_centers if cfg.loss.kind == "subcenter-arcface" else 1,
                             torch.Generator().manual_seed(cfg.seed))
    frozen = freeze_stages(model, cfg.guard.freeze_stages)
    if cfg.guard.adapter_rank:
        adapted = add_adapters(model.stage_list()[cfg.guard.freeze_stages:], cfg.guard.adapter_rank, cfg.seed)
        freeze_all_but_adapters(model)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        if dist.main and state is None:
            log(f"rank-{cfg.guard.adapter_rank} adapters on {adapted} layers after the first "
                f"{cfg.guard.freeze_stages} stages; every pretrained weight stays frozen")
    l2sp = L2SP(model).to(device) if cfg.guard.l2sp_weight > 0 else None
    if state is not None:
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
    # Frozen stages are run once, without gradients, and their output feeds student and teacher alike.
    prefix = cfg.guard.freeze_stages
    step_module: nn.Module = _Step(model, loss_fn, prefix)
    if dist.world > 1:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[dist.local_rank] if device.startswith("cuda") else None)
    optimizer = torch.optim.AdamW(_param_groups(model, loss_fn, cfg))
    ema = WeightEMA(model, cfg.optim.ema) if cfg.optim.ema else None
    o = cfg.optim
    batch = min(o.batch_size, len(train_set))
    pk = o.images_per_person if cfg.person_batches else None
    if pk:
        batch -= batch % pk
    steps_per_epoch = max(1, len(train_set) // batch)
    schedule = Schedule(o.epochs * steps_per_epoch, o.warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    use_amp = o.amp and device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # bf16 autocast needs no scaling; kept for fp16 runs
    log_ = TrainLog(run_dir, tensorboard=dist.main)
    if dist.main and log_.note:
        log(log_.note)

    start_epoch, step, elapsed_before, best, best_epoch, stale, planned = 0, 0, 0.0, None, -1, 0, False
    best_metrics: dict[str, Any] = {}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        schedule.total = state["total_steps"]
        start_epoch, step, elapsed_before = state["epoch"], state["step"], state["elapsed"]
        best, best_epoch, stale = state["best"], state["best_epoch"], state["stale"]
        best_metrics, planned = state["best_metrics"], True
        if ema is not None:
            ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        log_.truncate(start_epoch)
        log(f"resuming {run_dir} after epoch {start_epoch} (step {step} of {schedule.total})")
    if dist.main and state is None:
        log(f"{sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6:.2f} M trainable parameters"
            + (f" ({frozen / 1e6:.2f} M frozen)" if frozen else "") + f"; {steps_per_epoch} steps of {batch} "
            f"per epoch; {o.epochs} epochs planned" + (f", within {o.time_budget_min:g} min" if o.time_budget_min
                                                      else "") + f"; device {device}")

    budget = o.time_budget_min * 60 if o.time_budget_min else None
    t0 = time.perf_counter() - elapsed_before
    images_seen, train_seconds = 0, 0.0
    finished = bool(state and state.get("finished"))
    epoch = start_epoch
    trainable = [p for p in list(model.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    while not finished and epoch < o.epochs and step < schedule.total:
        if budget and state is None and epoch in (1, 2):
            # Re-plan from whole epochs, validation included: a plan made from 12 steps on a busy machine
            # can be far off in either direction.
            spent = time.perf_counter() - t0
            fit = step + int(max(0.0, budget * 0.93 - spent) * step / spent)
            fit -= fit % steps_per_epoch  # end on a whole epoch, not on a stub of a few steps
            schedule.total = dist.broadcast_int(min(o.epochs * steps_per_epoch, max(step + 1, fit)))
            if dist.main:
                log(f"time budget {o.time_budget_min:g} min: re-planned to {schedule.total} steps "
                    f"({schedule.total / steps_per_epoch:.1f} epochs) from {step * batch / spent:.0f} img/s")
        order = _epoch_order(train_set.labels, epoch, cfg.seed, pk)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 101 + dist.rank)
        model.train()
        for stage in model.stage_list()[:prefix]:
            stage.eval()  # frozen means frozen: batch-norm layers there keep their running statistics
        sums = {"train_loss": 0.0, "metric_loss": 0.0, "distill_loss": 0.0, "l2sp_loss": 0.0}
        if anchors is not None:
            sums["anchor_loss"] = 0.0
        n_steps, t_epoch = 0, time.perf_counter()
        stop = False
        with progress(f"epoch {epoch + 1}/{o.epochs}", steps_per_epoch) as bar:
            for b in range(steps_per_epoch):
                if step >= schedule.total:
                    break
                idx = np.sort(order[b * batch : (b + 1) * batch][dist.rank :: dist.world])
                x = torch.from_numpy(train_set.chips[idx]).to(device).permute(0, 3, 1, 2).float()
                x = model.normalize(augment(x, cfg.augment, gen)).contiguous(memory_format=memory_format)
                y = torch.from_numpy(train_set.labels[idx]).to(device)
                xa = None
                if anchors is not None:
                    ia = torch.randint(len(anchors), (cfg.guard.anchor_batch,), generator=gen).numpy()
                    xa = torch.from_numpy(anchors[np.sort(ia)]).to(device).permute(0, 3, 1, 2).float()
                    xa = model.normalize(augment(xa, cfg.augment, gen)).contiguous(memory_format=memory_format)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    if prefix:
                        with torch.no_grad():
                            x = model.run_stages(x, 0, prefix)
                            xa = model.run_stages(xa, 0, prefix) if xa is not None else None
                    emb, metric_loss, emb_a = step_module(x, y, xa)
                    loss = metric_loss
                    for key, student, inputs, weight in (
                            ("distill_loss", emb, x, cfg.guard.distill_weight),
                            ("anchor_loss", emb_a, xa, cfg.guard.anchor_weight_or_default)):
                        if teacher is None or student is None:
                            continue
                        with torch.no_grad():
                            target = teacher.run_stages(inputs, prefix) if prefix else teacher(inputs)
                        term = distill(student, target)
                        loss = loss + weight * term
                        sums[key] += term.item()
                    if l2sp is not None:
                        r_loss = l2sp(model)
                        loss = loss + cfg.guard.l2sp_weight * r_loss
                        sums["l2sp_loss"] += r_loss.item()
                if not torch.isfinite(loss):
                    raise FacefitError(f"the loss became {loss.item()} at step {step}; lower optim.lr or check "
                                       f"the data (the last good state is {ckpt_dir / 'last.pt'})")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if o.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, o.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                n_steps += 1
                images_seen += len(idx) * dist.world
                sums["train_loss"] += loss.item()
                sums["metric_loss"] += metric_loss.item()
                bar.advance()
                elapsed = time.perf_counter() - t0
                if budget and not planned and n_steps == 12:
                    # Plan the cosine schedule to end inside the budget, keeping 10% for validation and export.
                    rate = n_steps / (time.perf_counter() - t_epoch)
                    fit = step + int(max(0.0, budget * 0.9 - elapsed) * rate)
                    schedule.total = dist.broadcast_int(min(schedule.total, max(step + 1, fit)))
                    planned = True
                    if dist.main and schedule.total < o.epochs * steps_per_epoch:
                        log(f"time budget {o.time_budget_min:g} min: {rate * batch:.0f} img/s, so the schedule "
                            f"is {schedule.total} steps ({schedule.total / steps_per_epoch:.1f} epochs)")
                if dist.any(bool(budget and elapsed > budget * 0.97)):
                    stop = True
                    break
        train_seconds += time.perf_counter() - t_epoch
        epoch_done = epoch + 1
        finished = stop or step >= schedule.total or epoch_done >= o.epochs
        row: dict[str, Any] = {"epoch": epoch_done, "step": step, "seconds": round(time.perf_counter() - t0, 1),
                               "lr": o.lr * schedule(step),
                               "images_per_s": round(n_steps * batch / max(1e-9, time.perf_counter() - t_epoch), 1)}
        row.update({k: v / max(1, n_steps) for k, v in sums.items()})
        if dist.main:
            averaged = ema.swapped_in(model) if ema is not None else contextlib.nullcontext()
            with averaged:  # validation, selection and best.pt see the averaged weights
                metrics = validator(model, cfg.distance) if validator else {}
                row["val_loss"] = prototype_loss(model, val_set.chips, val_set.labels) if val_set else float("nan")
                row.update({k: metrics.get(k) for k in ("accuracy", "auc", "eer", "tar_at_far_1e-2", "tar_at_far_1e-3",
                                                        "threshold")})
                value = row["val_loss"] if cfg.select_metric == "val_loss" else metrics.get(cfg.select_metric, math.nan)
                if value is None:
                    value = math.nan
                if not (validator or val_set) or _better(value, best, cfg.select_metric):
                    best = value if math.isfinite(value) else best
                    best_epoch, best_metrics, stale = epoch_done, metrics, 0
                    save_checkpoint(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch_done,
                                                           "metrics": metrics})
                else:
                    stale += 1
            log_.add(row)
            log_.plot(run_dir / "plots.png")
            log(_epoch_line(row, cfg, best_epoch == epoch_done))
            if cfg.early_stop and stale >= cfg.early_stop and not finished:
                log(f"early stop: no better {cfg.select_metric} for {stale} epochs")
                finished = True
        finished = dist.any(finished)
        epoch = epoch_done
        if dist.main:
            save_checkpoint(ckpt_dir / "last.pt", {
                "model": model.state_dict(), "loss": loss_fn.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "step": step,
                "total_steps": schedule.total, "elapsed": time.perf_counter() - t0, "best": best,
                "best_epoch": best_epoch, "stale": stale, "best_metrics": best_metrics, "rng": rng_state(),
                "finished": finished, "config_digest": cfg.digest(),
                "ema": ema.state_dict() if ema is not None else None})
        dist.barrier()

    result_dir = run_dir / "model"
    if dist.main:
        best_state = load_checkpoint(ckpt_dir / "best.pt") if (ckpt_dir / "best.pt").is_file() else None
        if best_state is not None:
            model.load_state_dict(best_state["model"])
            best_metrics, best_epoch = best_state["metrics"], best_state["epoch"]
        export_model(model, cfg, run_dir, best_metrics, best_epoch, data.digest, train_set)
        log_.close()
    dist.barrier()
    dist.close()
    seconds = time.perf_counter() - t_begin
    return TrainResult(run_dir, result_dir, best_metrics, best_epoch, epoch, step,
                       images_seen / train_seconds if train_seconds else 0.0, seconds)


def _epoch_line(row: dict[str, Any], cfg: TrainConfig, is_best: bool) -> str:
    def f(key: str, fmt: str = "{:.4f}") -> str:
        v = row.get(key)
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)

    parts = [f"epoch {row['epoch']}", f"step {row['step']}", f"loss {f('train_loss', '{:.3f}')}",
             f"metric {f('metric_loss', '{:.3f}')}"]
    if cfg.guard.distill_weight:
        parts.append(f"distill {f('distill_loss', '{:.4f}')}")
    if cfg.guard.anchors:
        parts.append(f"anchors {f('anchor_loss', '{:.4f}')}")
    parts.append(f"{f('images_per_s', '{:.0f}')} img/s")
    if row.get("accuracy") is not None:
        parts.append(f"val acc {f('accuracy')} AUC {f('auc')} TAR@1e-2 {f('tar_at_far_1e-2', '{:.3f}')}")
    if row.get("val_loss") is not None and math.isfinite(row["val_loss"]):
        parts.append(f"val loss {f('val_loss', '{:.3f}')}")
    return " | ".join(parts) + ("  *best" if is_best else "")
