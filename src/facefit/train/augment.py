"""Batch augmentation of aligned chips, in plain torch (no torchvision).

Works on float NCHW tensors in pixel units (0-255, RGB), before the model's own
normalisation, so one augmenter serves every architecture. Every sample draws
its own parameters from the given generator, so a seeded run is reproducible.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from facefit.train.config import AugmentConfig

_GREY = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _uniform(n: int, spread: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=g, device="cpu") * 2 - 1).mul_(spread).to(device)


def _rotate_hue(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``turns`` of a full circle: a rotation about the grey axis of RGB space."""
    theta = turns * 2 * math.pi
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1.0 / 3.0
    sq = math.sqrt(k)
    # Rodrigues' rotation about the unit vector (1,1,1)/sqrt(3), one matrix per sample.
    m = torch.stack([
        torch.stack([c + (1 - c) * k, (1 - c) * k - s * sq, (1 - c) * k + s * sq], -1),
        torch.stack([(1 - c) * k + s * sq, c + (1 - c) * k, (1 - c) * k - s * sq], -1),
        torch.stack([(1 - c) * k - s * sq, (1 - c) * k + s * sq, c + (1 - c) * k], -1),
    ], -2)  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    r = torch.arange(-2, 3, dtype=x.dtype, device=x.device)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # (N, 5)
    n, c, h, w = x.shape
    flat = x.reshape(1, n * c, h, w)
    kx = k.repeat_interleave(c, 0).view(n * c, 1, 1, 5)
    ky = k.repeat_interleave(c, 0).view(n * c, 1, 5, 1)
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), kx, groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="replicate"), ky, groups=n * c)
    return flat.view(n, c, h, w)


def augment(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Augment a float NCHW batch in 0-255 RGB; returns a new tensor in the same range."""
    n, dev = x.shape[0], x.device
    x = x / 255.0
    if cfg.flip:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip.to(dev).view(n, 1, 1, 1), x.flip(3), x)
    if cfg.rotate or cfg.scale or cfg.shift:
        ang = _uniform(n, math.radians(cfg.rotate), g, dev)
        sc = 1.0 + _uniform(n, cfg.scale, g, dev)
        tx = _uniform(n, 2 * cfg.shift / x.shape[3], g, dev)
        ty = _uniform(n, 2 * cfg.shift / x.shape[2], g, dev)
        cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.brightness:
        x = x * (1.0 + _uniform(n, cfg.brightness, g, dev)).view(n, 1, 1, 1)
    if cfg.contrast:
        mean = (x * _GREY.to(dev)).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = (x - mean) * (1.0 + _uniform(n, cfg.contrast, g, dev)).view(n, 1, 1, 1) + mean
    if cfg.saturation:
        grey = (x * _GREY.to(dev)).sum(1, keepdim=True)
        x = (x - grey) * (1.0 + _uniform(n, cfg.saturation, g, dev)).view(n, 1, 1, 1) + grey
    if cfg.hue:
        x = _rotate_hue(x, _uniform(n, cfg.hue, g, dev))
    x = x.clamp(0.0, 1.0)
    if cfg.gamma:
        x = x.pow(torch.exp(_uniform(n, cfg.gamma, g, dev)).view(n, 1, 1, 1))
    if cfg.blur:
        pick = (torch.rand(n, generator=g) < cfg.blur).to(dev)
        if pick.any():
            sigma = (0.5 + torch.rand(n, generator=g) * 0.8).to(dev)
            x = torch.where(pick.view(n, 1, 1, 1), _blur(x, sigma), x)
    return x.clamp(0.0, 1.0) * 255.0
