"""One epoch of optimisation steps: the batch order, the loss with its guards, the update."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facefit.errors import FacefitError
from facefit.io.progress import ProgressFactory
from facefit.models.base import FaceEmbedder
from facefit.train.augment import augment
from facefit.train.config import TrainConfig
from facefit.train.schedule import Schedule, TimeBudget

# channels-last convolutions are ~15% faster on CPU (oneDNN) and on recent GPUs.
MEMORY_FORMAT = torch.channels_last


def epoch_order(labels: np.ndarray, epoch: int, seed: int, pk: int | None) -> np.ndarray:
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


class StepModule(nn.Module):
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


@dataclass
class Stepper:
    """Everything an optimisation step touches (built once by ``facefit.train.setup.build_stepper``)."""

    cfg: TrainConfig
    model: FaceEmbedder
    loss_fn: nn.Module
    module: nn.Module  # the StepModule, wrapped in DDP when there are several ranks
    teacher: nn.Module | None
    distill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    l2sp: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: Any  # WeightEMA | None
    schedule: Schedule
    device: str
    batch: int
    steps_per_epoch: int
    person_block: int | None  # K of P x K batches, or None for a plain permutation
    trainable: list[nn.Parameter] = field(default_factory=list)
    bf16: bool = False  # bf16 autocast of the forward passes (see ``facefit.train.setup.training_bf16``)

    @property
    def prefix(self) -> int:
        """Frozen stages: run once without gradients; their output feeds student and teacher alike."""
        return self.cfg.guard.freeze_stages

    def chips(self, chips: np.ndarray, gen: torch.Generator) -> torch.Tensor:
        """A batch of uint8 HWC chips, augmented and normalised, on the device."""
        x = torch.from_numpy(chips).to(self.device).permute(0, 3, 1, 2).float()
        return self.model.normalize(augment(x, self.cfg.augment, gen)).contiguous(memory_format=MEMORY_FORMAT)

    def loss(self, x: torch.Tensor, y: torch.Tensor, xa: torch.Tensor | None,
             sums: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's total loss and its metric-loss part; adds each guard's term to ``sums``."""
        guard = self.cfg.guard
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=self.bf16):
            if self.prefix:
                with torch.no_grad():
                    x = self.model.run_stages(x, 0, self.prefix)
                    xa = self.model.run_stages(xa, 0, self.prefix) if xa is not None else None
            emb, metric_loss, emb_a = self.module(x, y, xa)
            loss = metric_loss
            for key, student, inputs, weight in (("distill_loss", emb, x, guard.distill_weight),
                                                 ("anchor_loss", emb_a, xa, guard.anchor_weight_or_default)):
                if self.teacher is None or student is None:
                    continue
                with torch.no_grad():
                    target = self.teacher.run_stages(inputs, self.prefix) if self.prefix else self.teacher(inputs)
                term = self.distill(student, target)
                loss = loss + weight * term
                sums[key] += term.item()
            if self.l2sp is not None:
                r_loss = self.l2sp(self.model)
                loss = loss + guard.l2sp_weight * r_loss
                sums["l2sp_loss"] += r_loss.item()
        return loss, metric_loss

    def update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)


@dataclass
class EpochOutcome:
    sums: dict[str, float]
    steps: int
    images: int  # over all ranks
    seconds: float
    out_of_time: bool


def run_epoch(s: Stepper, chips: np.ndarray, labels: np.ndarray, anchors: np.ndarray | None, epoch: int,
              step: int, *, budget: TimeBudget, clock: Callable[[], float], dist: Any,
              progress: ProgressFactory, log: Callable[[str], None], last_good: Path) -> tuple[int, EpochOutcome]:
    """Steps through one epoch from global step ``step``; returns the new step count and the epoch's sums.

    ``clock()`` gives the seconds since the run began (resumed runs included), for the budget.
    """
    import time

    cfg = s.cfg
    order = epoch_order(labels, epoch, cfg.seed, s.person_block)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 101 + dist.rank)
    s.model.train()
    for stage in s.model.stage_list()[: s.prefix]:
        stage.eval()  # frozen means frozen: batch-norm layers there keep their running statistics
    if cfg.guard.bn == "frozen":
        for layer in s.model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()  # normalise with the pretrained statistics; the affine part still learns
    sums = {"train_loss": 0.0, "metric_loss": 0.0, "distill_loss": 0.0, "l2sp_loss": 0.0}
    if anchors is not None:
        sums["anchor_loss"] = 0.0
    n_steps, images, t_epoch, out_of_time = 0, 0, time.perf_counter(), False
    with progress(f"epoch {epoch + 1}/{cfg.optim.epochs}", s.steps_per_epoch) as bar:
        for b in range(s.steps_per_epoch):
            if step >= s.schedule.total:
                break
            idx = np.sort(order[b * s.batch : (b + 1) * s.batch][dist.rank :: dist.world])
            x = s.chips(chips[idx], gen)
            y = torch.from_numpy(labels[idx]).to(s.device)
            xa = None
            if anchors is not None:
                ia = torch.randint(len(anchors), (cfg.guard.anchor_batch,), generator=gen).numpy()
                xa = s.chips(anchors[np.sort(ia)], gen)
            loss, metric_loss = s.loss(x, y, xa, sums)
            if not torch.isfinite(loss):
                raise FacefitError(f"the loss became {loss.item()} at step {step}; lower optim.lr or check the "
                                   f"data (the last good state is {last_good})")
            s.update(loss)
            step += 1
            n_steps += 1
            images += len(idx) * dist.world
            sums["train_loss"] += loss.item()
            sums["metric_loss"] += metric_loss.item()
            bar.advance()
            elapsed = clock()
            note = budget.plan(step, n_steps, time.perf_counter() - t_epoch, elapsed)
            if note and dist.main:
                log(note)
            if dist.any(budget.spent(elapsed)):
                out_of_time = True
                break
    return step, EpochOutcome(sums, n_steps, images, time.perf_counter() - t_epoch, out_of_time)
