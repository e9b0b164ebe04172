"""MobileFaceNet (the ``mbf`` backbone of insightface ``arcface_torch``) in PyTorch.

Architecture only: no file access. This is the widened (x2) MobileFaceNet that
arcface_torch trains as ``mbf``, with its module names, so its backbone state
dicts load after ``checkpoint_filter_fn``.

Layout (input 112x112): a 3x3/2 conv, a grouped 3x3 conv, then three stride-2
depthwise-separable bottlenecks (1x1 expand -> 3x3 depthwise -> linear 1x1
project), each followed by residual bottlenecks (4, 6 and 2 of them); a 1x1
conv to 512 channels, the GDC head (a 7x7 global depthwise conv), a bias-free
512 -> D linear layer and BatchNorm1d. BN eps 1e-5, PReLU activations.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from facefit.models.base import FaceEmbedder, he_init_
from facefit.models.contract import EmbeddingContract
from facefit.models.iresnet import ARCFACE_CHIP_112
from facefit.models.registry import register_model
from facefit.models.weights import match_checkpoint

Size = int | tuple[int, int]


class ConvBlock(nn.Module):
    """Bias-free conv -> BN, then PReLU unless ``linear`` (the bottleneck's projection keeps no activation)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: Size = 1, stride: int = 1, padding: Size = 0,
                 groups: int = 1, linear: bool = False) -> None:
        super().__init__()
        parts: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if not linear:
            parts.append(nn.PReLU(out_ch))
        self.layers = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 to ``hidden`` channels, 3x3 depthwise (with the stride), linear 1x1 to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int, hidden: int, stride: int = 1, residual: bool = False) -> None:
        super().__init__()
        if residual and (stride != 1 or in_ch != out_ch):
            raise ValueError("a residual bottleneck keeps its shape")
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_ch, hidden),
            ConvBlock(hidden, hidden, 3, stride, 1, groups=hidden),
            ConvBlock(hidden, out_ch, linear=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class Residual(nn.Module):
    """``n`` shape-keeping residual bottlenecks."""

    def __init__(self, ch: int, n: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(DepthWise(ch, ch, hidden, residual=True) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the 7x7 map, then a bias-free linear layer to D and BatchNorm1d."""

    def __init__(self, ch: int, dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(ch, ch, 7, groups=ch, linear=True),
            nn.Flatten(1),
            nn.Linear(ch, dim, bias=False),
            nn.BatchNorm1d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(FaceEmbedder):
    """arcface_torch's MobileFaceNet (``mbf``): 112x112 RGB -> D raw numbers (compare with cosine)."""

    def __init__(self, contract: EmbeddingContract, blocks: tuple[int, int, int, int] = (1, 4, 6, 2),
                 scale: int = 2) -> None:
        super().__init__(contract)
        if tuple(contract.input_size) != (112, 112):
            raise ValueError(f"MobileFaceNet needs 112x112 input (its GDC head is 7x7), contract says "
                             f"{contract.input_size}")
        if blocks[0] != 1:
            raise ValueError("only the single-conv second layer (blocks[0] == 1) is implemented")
        c1, c2 = 64 * scale, 128 * scale
        # Widths and hidden sizes are arcface_torch's (the 64-group conv included); names index like its list.
        self.layers = nn.ModuleList([
            ConvBlock(3, c1, 3, 2, 1),
            ConvBlock(c1, c1, 3, 1, 1, groups=64),
            DepthWise(c1, c1, hidden=128, stride=2),
            Residual(c1, blocks[1], hidden=128),
            DepthWise(c1, c2, hidden=256, stride=2),
            Residual(c2, blocks[2], hidden=256),
            DepthWise(c2, c2, hidden=512, stride=2),
            Residual(c2, blocks[3], hidden=256),
        ])
        self.conv_sep = ConvBlock(c2, 512)
        self.features = GDC(512, contract.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """arcface_torch's initialisation: He-normal (fan-out) convs and linears, unit-scale zero-shift BNs."""
        he_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"MobileFaceNet needs 112x112 input, got {tuple(x.shape[-2:])}")
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))

    def stages(self) -> list[nn.Module]:
        """[stem (112 -> 56), three stages down to 28, 14 and 7, head (conv_sep + GDC)], input side first.

        Each is a view over this model's own submodules (sharing their parameters,
        not registered), for freezing; run in turn they compute ``forward``.
        """
        ls = self.layers
        return [
            nn.Sequential(ls[0], ls[1]),
            nn.Sequential(ls[2], ls[3]),
            nn.Sequential(ls[4], ls[5]),
            nn.Sequential(ls[6], ls[7]),
            nn.Sequential(self.conv_sep, self.features),
        ]


def checkpoint_filter_fn(state_dict: Mapping[str, object], model: MobileFaceNet) -> dict[str, torch.Tensor]:
    """An arcface_torch ``mbf`` checkpoint as ``model``'s state dict (``module.``/``backbone.`` stripped, checked)."""
    return match_checkpoint(state_dict, model)


MOBILEFACENET_CONTRACT = EmbeddingContract(
    architecture="mobilefacenet",
    input_size=(112, 112),
    mean=(127.5, 127.5, 127.5),
    std=(127.5, 127.5, 127.5),
    align=ARCFACE_CHIP_112,  # insightface's 5-point template (YuNet's points), as its MobileFaceNets were trained on
    embedding_dim=512,
    normalized=False,
    weights_sha256=None,
    name="mobilefacenet",
    distance="cosine",
    thresholds={},  # uncalibrated: thresholds depend on the weights the user brings
    licence="MIT (architecture); weights: supplied by the user",
    source="insightface arcface_torch backbones/mobilefacenet.py, mbf (architecture only; no weights shipped)",
)


@register_model(
    "mobilefacenet",
    contract=MOBILEFACENET_CONTRACT,
    description="MobileFaceNet (arcface_torch mbf, GDC head), 112x112 chips -> 512-D; bring your own weights",
)
def mobilefacenet(contract: EmbeddingContract) -> MobileFaceNet:
    """arcface_torch's MobileFaceNet."""
    return MobileFaceNet(contract)
