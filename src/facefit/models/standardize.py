"""Function-preserving re-standardisation of conv layers, so released weights train.

dlib's released weights are badly scaled for gradient descent (tiny conv
weights, affine scales of 2-23): a few Adam steps wreck the embedding. For each
conv output channel we measure mean ``m`` and std ``s`` on real faces, rescale
the conv to output ``(x - m) / s`` and fold ``s`` and ``m`` into the affine that
follows (``g*x + b == (g*s) * x' + (b + g*m)``), so the network's function is
unchanged while every conv works at unit scale.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from facefit.models.base import FaceEmbedder


class _ChannelStats:
    """Running per-channel sum and sum of squares (float64) of a conv's output."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.s1 = torch.zeros(channels, dtype=torch.float64)
        self.s2 = torch.zeros(channels, dtype=torch.float64)

    def __call__(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        y = output.detach().double().transpose(0, 1).reshape(output.shape[1], -1)
        self.n += y.shape[1]
        self.s1 += y.sum(dim=1).cpu()
        self.s2 += (y * y).sum(dim=1).cpu()

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.s1 / self.n
        var = (self.s2 / self.n - mean * mean).clamp_min(0.0)
        return mean, var.sqrt()


def _pairs(model: FaceEmbedder) -> list[tuple[nn.Conv2d, nn.Module]]:
    getter = getattr(model, "conv_affine_pairs", None)
    if getter is None:
        raise TypeError(f"{type(model).__name__} does not expose conv_affine_pairs(); cannot standardise it")
    return list(getter())


@torch.no_grad()
def standardize_(
    model: FaceEmbedder,
    chips: np.ndarray | Iterable[np.ndarray],
    batch_size: int = 64,
    min_std: float = 1e-8,
) -> FaceEmbedder:
    """Re-standardise ``model`` in place on calibration ``chips`` (uint8 N,H,W,3); returns it.

    Standardising a layer leaves every downstream activation unchanged, so the
    statistics of all convs are measured in one pass before any is rescaled.
    Channels whose std is below ``min_std`` (dead filters) are only re-centred.
    """
    arr = model.check_chips(chips if isinstance(chips, np.ndarray) else np.stack(list(chips)))
    if len(arr) < 2:
        raise ValueError("standardisation needs at least 2 calibration faces")
    pairs = _pairs(model)
    stats = [_ChannelStats(conv.out_channels) for conv, _ in pairs]
    hooks = [conv.register_forward_hook(st) for (conv, _), st in zip(pairs, stats)]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(arr), batch_size):
            x = model.preprocess(torch.from_numpy(arr[start : start + batch_size]))
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    for (conv, aff), st in zip(pairs, stats):
        mean, std = st.mean_std()
        scale = torch.where(std > min_std, std, torch.ones_like(std))
        w = conv.weight.double()
        b = conv.bias.double() if conv.bias is not None else torch.zeros_like(mean)
        conv.weight.copy_((w / scale.view(-1, 1, 1, 1).to(w.device)).to(conv.weight.dtype))
        if conv.bias is not None:
            conv.bias.copy_(((b - mean.to(b.device)) / scale.to(b.device)).to(conv.bias.dtype))
        g = aff.weight.double()
        beta = aff.bias.double()
        aff.bias.copy_((beta + g * mean.to(g.device)).to(aff.bias.dtype))
        aff.weight.copy_((g * scale.to(g.device)).to(aff.weight.dtype))
    return model
