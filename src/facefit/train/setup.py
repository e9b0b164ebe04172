"""Building what the loop steps: teacher, loss head, frozen stages or adapters, optimiser, schedule.

The order of the calls here is part of a run's reproducibility: the loss head draws from torch's
global generator, so a resumed run must build everything in the same order before its saved
generator states are restored.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from facefit.models.base import FaceEmbedder
from facefit.train.config import TrainConfig
from facefit.train.schedule import Schedule
from facefit.train.step import StepModule, Stepper


def param_groups(model: nn.Module, loss: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: decayed weight tensors, undecayed vectors, and the loss head at its own rate."""
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


def training_bf16(cfg: TrainConfig, model: FaceEmbedder, chips: np.ndarray, device: str,
                  state: dict[str, Any] | None) -> bool:
    """Whether the forward passes run under bf16 autocast: as ``optim.precision`` asks, or as the run began."""
    if state is not None:  # an exact resume needs the precision the run started with
        return bool(state.get("bf16", device.startswith("cuda") and cfg.optim.amp))  # older runs: the old rule
    from facefit.models.precision import MIN_SPEEDUP, choose_precision, requested_precision

    # optim.precision auto defers to $FACEFIT_PRECISION when it is set (the machine's preference).
    asked = cfg.optim.precision if cfg.optim.precision != "auto" else requested_precision(None)
    if device.startswith("cuda"):
        return asked == "bf16" or (asked == "auto" and cfg.optim.amp)
    if asked == "fp32":
        return False
    # On a CPU, auto follows this machine's measured bf16 speed-up for the base model (cached per machine): the
    # inference rule's cosine check does not apply, since validation and the exported model run in fp32 and
    # measure what bf16 training made. bf16 asked where the CPU lacks it is refused rather than run slowly.
    choice = choose_precision(model, asked, chips[:8])
    bf16 = choice.precision == "bf16" or (choice.speedup or 0.0) >= MIN_SPEEDUP
    model.__dict__.pop("_inference_cache", None)  # the copies made to measure; training changes the weights
    return bf16


def build_stepper(cfg: TrainConfig, model: FaceEmbedder, train_set: Any, state: dict[str, Any] | None, *,
                  device: str, dist: Any, log: Callable[[str], None]) -> tuple[Stepper, int]:
    """The stepper for ``model`` (already on ``device``), restored from ``state`` when resuming.

    Returns it and the number of frozen parameters.
    """
    from facefit.train.adapters import add_adapters, freeze_all_but_adapters
    from facefit.train.ema import WeightEMA
    from facefit.train.guard import DISTILLATION, L2SP, freeze_stages
    from facefit.train.losses import CLASSIFICATION, build_loss, init_head_from_means

    guard, o = cfg.guard, cfg.optim
    teacher = None
    if guard.distill_weight > 0:
        frozen_copy = copy.deepcopy(model).eval()
        for p in frozen_copy.parameters():
            p.requires_grad_(False)
        teacher = frozen_copy._inference_net()  # it never changes: use the folded, faster copy
    loss_fn = build_loss(cfg.loss, train_set.n_persons, model.embedding_dim).to(device)
    if state is None and cfg.loss.kind in CLASSIFICATION and cfg.loss.head_init == "class-mean":
        emb = torch.from_numpy(model.embed(train_set.chips))
        init_head_from_means(loss_fn, emb, torch.from_numpy(train_set.labels),
                             cfg.loss.sub_centers if cfg.loss.kind == "subcenter-arcface" else 1,
                             torch.Generator().manual_seed(cfg.seed))
    frozen = freeze_stages(model, guard.freeze_stages)
    if guard.adapter_rank:
        adapted = add_adapters(model.stage_list()[guard.freeze_stages:], guard.adapter_rank, cfg.seed)
        freeze_all_but_adapters(model)
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        if dist.main and state is None:
            log(f"rank-{guard.adapter_rank} adapters on {adapted} layers after the first "
                f"{guard.freeze_stages} stages; every pretrained weight stays frozen")
    l2sp = L2SP(model).to(device) if guard.l2sp_weight > 0 else None
    if state is not None:
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
    module: nn.Module = StepModule(model, loss_fn, guard.freeze_stages)
    if dist.world > 1:
        module = nn.parallel.DistributedDataParallel(
            module, device_ids=[dist.local_rank] if device.startswith("cuda") else None)
    optimizer = torch.optim.AdamW(param_groups(model, loss_fn, cfg))
    ema = WeightEMA(model, o.ema) if o.ema else None
    batch = min(o.batch_size, len(train_set))
    person_block = o.images_per_person if cfg.person_batches else None
    if person_block:
        batch -= batch % person_block
    steps_per_epoch = max(1, len(train_set) // batch)
    schedule = Schedule(o.epochs * steps_per_epoch, o.warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=False)  # bf16 autocast needs no scaling; kept for fp16 runs
    trainable = [p for p in list(model.parameters()) + list(loss_fn.parameters()) if p.requires_grad]
    stepper = Stepper(cfg, model, loss_fn, module, teacher, DISTILLATION[guard.distill_kind], l2sp, optimizer,
                      scheduler, scaler, ema, schedule, device, batch, steps_per_epoch, person_block, trainable,
                      # Rank 0 decides (it measures once), so every rank trains at the same precision.
                      bool(dist.broadcast_int(int(training_bf16(cfg, model, train_set.chips, device, state))
                                              if dist.main else 0)))
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        schedule.total = state["total_steps"]
        if ema is not None:
            ema.load_state_dict(state["ema"])
    return stepper, frozen

