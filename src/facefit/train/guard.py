"""Guards against forgetting: distillation to the frozen pretrained model (per face, or of the
batch's pairwise similarities), an L2 pull toward the pretrained weights (L2-SP), and freezing
the first stages of the backbone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def backbone_stages(model: nn.Module) -> list[nn.Module]:
    """The backbone's stages from the input side; each architecture says what its stages are."""
    try:
        return model.stage_list()
    except (AttributeError, TypeError):
        raise TypeError(f"{type(model).__name__} does not list its stages; cannot freeze part of it") from None


def freeze_stages(model: nn.Module, n: int) -> int:
    """Freeze the first ``n`` stages; returns how many parameters were frozen."""
    if n <= 0:
        return 0
    stages = backbone_stages(model)
    if n >= len(stages):
        raise ValueError(f"freeze_stages={n} would freeze all {len(stages)} stages of {type(model).__name__}")
    count = 0
    for stage in stages[:n]:
        for p in stage.parameters():
            p.requires_grad_(False)
            count += p.numel()
    return count


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cosine) between the fine-tuned and the frozen pretrained embeddings of the same faces."""
    return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1)).mean()


def relational_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the batch's pairwise cosine similarities, fine-tuned vs pretrained.

    It keeps how the faces of a batch sit relative to one another, not where each sits: the
    embedding may turn as a whole, which a per-face pull (``distillation_loss``) forbids.
    """
    s = F.normalize(student.float(), dim=1)
    t = F.normalize(teacher.float(), dim=1)
    return (s @ s.T - t @ t.T).pow(2).mean()


DISTILLATION = {"feature": distillation_loss, "relational": relational_distillation_loss}


class L2SP(nn.Module):
    """Squared distance of the trainable weights from where they started (Li et al.'s L2-SP)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        for i, n in enumerate(self.names):
            self.register_buffer(f"ref{i}", dict(model.named_parameters())[n].detach().clone(), persistent=False)

    def forward(self, model: nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        total = torch.zeros((), device=next(iter(params.values())).device)
        for i, n in enumerate(self.names):
            total = total + (params[n] - getattr(self, f"ref{i}")).pow(2).sum()
        return total
