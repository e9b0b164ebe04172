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


def _hue_matrix(turns: torch.Tensor) -> torch.Tensor:
    """Per-sample (N, 3, 3) hue rotation by ``turns`` of a full circle: a rotation about RGB's grey axis."""
    theta = turns * 2 * math.pi
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1.0 / 3.0
    sq = math.sqrt(k)
    # Rodrigues' rotation about the unit vector (1,1,1)/sqrt(3).
    return torch.stack([
        torch.stack([c + (1 - c) * k, (1 - c) * k - s * sq, (1 - c) * k + s * sq], -1),
        torch.stack([(1 - c) * k + s * sq, c + (1 - c) * k, (1 - c) * k - s * sq], -1),
        torch.stack([(1 - c) * k - s * sq, (1 - c) * k + s * sq, c + (1 - c) * k], -1),
    ], -2)


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


def _colour(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue, tint and greyscale in one pass over the pixels.

    Each is affine in RGB, so together they are one per-sample 3x3 matrix plus an offset. Contrast
    scales about the image's mean grey ``m``: its offset ``(1 - c) * b * m * (1, 1, 1)`` goes through
    the matrices that come after it.
    """
    n, dev = x.shape[0], x.device
    if not (cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue or cfg.tint or cfg.greyscale):
        return x
    eye = torch.eye(3, device=dev).expand(n, 3, 3)
    to_grey = torch.ones(3, 1, device=dev) @ _GREY.to(dev).view(1, 3)  # each row: the grey weights
    gain = torch.ones(n, device=dev)
    offset_scale = torch.zeros(n, device=dev)
    if cfg.brightness:
        gain = gain * (1.0 + _uniform(n, cfg.brightness, g, dev))
    if cfg.contrast:
        c = 1.0 + _uniform(n, cfg.contrast, g, dev)
        offset_scale = (1.0 - c) * gain
        gain = gain * c
    after = eye  # the matrices applied after contrast, multiplied together
    if cfg.saturation:
        s = (1.0 + _uniform(n, cfg.saturation, g, dev)).view(n, 1, 1)
        after = (s * eye + (1.0 - s) * to_grey) @ after
    if cfg.hue:
        after = _hue_matrix(_uniform(n, cfg.hue, g, dev)) @ after
    if cfg.tint:  # channel gains with mean 1: a colour cast that keeps the overall brightness
        gains = 1.0 + (torch.rand(n, 3, generator=g) * 2 - 1).mul_(cfg.tint).to(dev)
        after = torch.diag_embed(gains / gains.mean(1, keepdim=True)) @ after
    if cfg.greyscale:
        grey_now = (torch.rand(n, generator=g) < cfg.greyscale).to(dev).view(n, 1, 1)
        after = torch.where(grey_now, to_grey @ after, after)
    out = torch.einsum("nij,njhw->nihw", after * gain.view(n, 1, 1), x)
    if cfg.contrast:
        mean_grey = (x * _GREY.to(dev)).sum(1).mean((1, 2))  # (N,)
        offset = after.sum(2) * (offset_scale * mean_grey).view(n, 1)  # after @ (1, 1, 1), scaled
        out = out + offset.view(n, 3, 1, 1)
    return out


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
    x = _colour(x, cfg, g)
    x = x.clamp(0.0, 1.0)
    if cfg.gamma:
        x = x.pow(torch.exp(_uniform(n, cfg.gamma, g, dev)).view(n, 1, 1, 1))
    if cfg.blur:
        pick = (torch.rand(n, generator=g) < cfg.blur).to(dev)
        if pick.any():
            sigma = (0.5 + torch.rand(n, generator=g) * 0.8).to(dev)
            x[pick] = _blur(x[pick], sigma[pick])
    return x.clamp(0.0, 1.0) * 255.0
