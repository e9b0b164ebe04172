"""Low-rank adapters (LoRA) on a backbone's conv and linear weights, merged back on export.

Each adapted weight becomes ``W0 + rms(W0) * (B @ A) / sqrt(rank)`` with ``W0`` frozen and only
``A`` (rank x fan-in) and ``B`` (out x rank) trained. ``B`` starts at zero, so the adapted network
starts as exactly the pretrained one. The update is scaled by the pretrained tensor's RMS because
dlib-resnet's tensors differ in scale by 20x: the same optimizer step then changes each layer by a
similar fraction of its size. A merged adapter is an ordinary weight again, so the exported model
has the base architecture, the same state-dict keys and the same cost at inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from facefit.models.base import bake_parametrizations

ADAPTED = (nn.Conv2d, nn.Linear)


class LowRankDelta(nn.Module):
    """A parametrization ``W -> W + s * (B @ A).view_as(W)`` for one conv or linear weight."""

    def __init__(self, weight: torch.Tensor, rank: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        out_features = weight.shape[0]
        fan_in = weight[0].numel()
        self.rank = max(1, min(rank, out_features, fan_in))
        scale = float(weight.detach().float().pow(2).mean().sqrt()) or 1.0
        self.register_buffer("scale", torch.tensor(scale / math.sqrt(self.rank)))
        a = torch.randn(self.rank, fan_in, generator=generator, dtype=torch.float32)
        self.A = nn.Parameter(a.to(device=weight.device, dtype=weight.dtype))
        self.B = nn.Parameter(torch.zeros(out_features, self.rank, device=weight.device, dtype=weight.dtype))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.scale * (self.B @ self.A)).view_as(weight)


def add_adapters(modules: list[nn.Module], rank: int, seed: int = 0) -> int:
    """Adapt every conv and linear layer inside ``modules``; freezes their own weights and biases.

    Returns the number of adapted layers. Layers reachable twice are adapted once.
    """
    if rank < 1:
        raise ValueError(f"adapter rank must be >= 1, got {rank}")
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    count = 0
    for root in modules:
        for layer in root.modules():
            if not isinstance(layer, ADAPTED) or id(layer) in seen:
                continue
            seen.add(id(layer))
            if parametrize.is_parametrized(layer, "weight"):
                raise ValueError(f"{type(layer).__name__} already has a parametrized weight")
            for p in layer.parameters():
                p.requires_grad_(False)
            parametrize.register_parametrization(layer, "weight", LowRankDelta(layer.weight, rank, gen))
            count += 1
    return count


def freeze_all_but_adapters(model: nn.Module) -> None:
    """Only the adapters learn: every other parameter of ``model`` (affines, biases, norms) is frozen."""
    for name, p in model.named_parameters():
        p.requires_grad_(".parametrizations." in name and not name.endswith(".original"))


def merge_adapters(model: nn.Module) -> int:
    """Fold every adapter into its weight in place; returns how many were merged."""
    return bake_parametrizations(model)
