"""ArcFace's IResNet-50 and IResNet-100 (insightface ``arcface_torch`` backbones) in PyTorch.

Architecture only: no file access. The module tree reproduces insightface's
``iresnet50``/``iresnet100`` parameter and buffer names and shapes exactly, so
their state dicts load with ``strict=True`` after ``checkpoint_filter_fn``.

Layout (input 112x112): a 3x3/1 stem conv + BN + PReLU, four stages of
pre-activation blocks (64, 128, 256, 512 channels), each opened by a stride-2
block with a 1x1 projection shortcut, then BN, dropout, a 512*7*7 -> D linear
layer and a BatchNorm1d whose scale is fixed at 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from facefit.align.recipe import ARCFACE_YUNET_112
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract
from facefit.models.registry import register_model
from facefit.models.weights import match_checkpoint

BN_EPS = 1e-5


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class IBasicBlock(nn.Module):
    """BN -> 3x3 conv -> BN -> PReLU -> 3x3 conv (carries the stride) -> BN, plus the shortcut."""

    def __init__(self, in_ch: int, ch: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = _bn(in_ch)
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = _bn(ch)
        self.prelu = nn.PReLU(ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride=stride, padding=1, bias=False)
        self.bn3 = _bn(ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, ch, 1, stride=stride, bias=False), _bn(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNet(FaceEmbedder):
    """ArcFace's improved ResNet: 112x112 RGB -> D raw numbers (compare with cosine)."""

    widths = (64, 128, 256, 512)
    fc_spatial = 7  # 112 / 2**4: the fc layer flattens a fixed 7x7 map, so the input size is fixed

    def __init__(self, contract: EmbeddingContract, layers: tuple[int, int, int, int], dropout: float = 0.0) -> None:
        super().__init__(contract)
        if tuple(contract.input_size) != (self.fc_spatial * 16,) * 2:
            raise ValueError(f"IResNet needs 112x112 input, contract says {contract.input_size}")
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.prelu = nn.PReLU(64)
        in_ch = 64
        for i, (ch, n) in enumerate(zip(self.widths, layers), start=1):
            blocks = [IBasicBlock(in_ch, ch, stride=2)] + [IBasicBlock(ch, ch) for _ in range(n - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_ch = ch
        self.bn2 = _bn(in_ch)
        self.dropout = nn.Dropout(p=dropout)
        dim = contract.embedding_dim
        self.fc = nn.Linear(in_ch * self.fc_spatial**2, dim)
        self.features = nn.BatchNorm1d(dim, eps=BN_EPS)
        # arcface_torch keeps this scale at 1 (requires_grad=False). A buffer under the same name loads the
        # same checkpoints and stays fixed even when training code unfreezes every parameter of the head.
        del self.features.weight
        self.features.register_buffer("weight", torch.ones(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation: He-normal convs, unit-scale zero-shift BNs, PyTorch defaults elsewhere."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # insightface draws convs from N(0, 0.1); with fresh BN statistics that overflows to inf/NaN
                # in eval mode (iresnet100), so an untrained model could not even be embedded with. He init
                # keeps it finite; under BN the scale only shifts the early effective learning rate.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"IResNet needs 112x112 input, got {tuple(x.shape[-2:])}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))

    def stages(self) -> list[nn.Module]:
        """[stem, layer1..layer4, head], input side first.

        Each is a view over this model's own submodules (sharing their parameters,
        not registered), for freezing; run in turn they compute ``forward``.
        """
        stem = nn.Sequential(self.conv1, self.bn1, self.prelu)
        head = nn.Sequential(self.bn2, nn.Flatten(1), self.dropout, self.fc, self.features)
        return [stem, self.layer1, self.layer2, self.layer3, self.layer4, head]


def checkpoint_filter_fn(state_dict: Mapping[str, object], model: IResNet) -> dict[str, torch.Tensor]:
    """An insightface ``arcface_torch`` iresnet checkpoint as ``model``'s state dict (prefixes stripped, checked)."""
    return match_checkpoint(state_dict, model)


# insightface's own crop: the 5-point ArcFace template (eyes at y 51.6 of 112), so weights trained by
# insightface see the crops they were trained on. (A dlib chip at 112 px, padding 0.25, puts the eyes 17 px
# higher and the face 12% larger.) The five points are YuNet's (Apache-2.0); dlib's 68-point predictor
# (ARCFACE_TEMPLATE_112, non-commercial training data) stays an explicit opt-in.
ARCFACE_CHIP_112 = ARCFACE_YUNET_112

_IRESNET_LICENCE = "MIT (architecture); weights: supplied by the user"
_IRESNET_SOURCE = "insightface arcface_torch backbones/iresnet.py (architecture only; no weights shipped)"


def _iresnet_contract(name: str) -> EmbeddingContract:
    return EmbeddingContract(
        architecture=name,
        input_size=(112, 112),
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        align=ARCFACE_CHIP_112,
        embedding_dim=512,
        normalized=False,
        weights_sha256=None,
        name=name,
        distance="cosine",
        thresholds={},  # uncalibrated: thresholds depend on the weights the user brings
        licence=_IRESNET_LICENCE,
        source=_IRESNET_SOURCE,
    )


IRESNET50_CONTRACT = _iresnet_contract("iresnet50")
IRESNET100_CONTRACT = _iresnet_contract("iresnet100")


@register_model(
    "iresnet50",
    contract=IRESNET50_CONTRACT,
    description="ArcFace IResNet-50 (insightface arcface_torch), 112x112 chips -> 512-D; bring your own weights",
)
def iresnet50(contract: EmbeddingContract) -> IResNet:
    """ArcFace IResNet-50, blocks [3, 4, 14, 3]."""
    return IResNet(contract, (3, 4, 14, 3))


@register_model(
    "iresnet100",
    contract=IRESNET100_CONTRACT,
    description="ArcFace IResNet-100 (insightface arcface_torch), 112x112 chips -> 512-D; bring your own weights",
)
def iresnet100(contract: EmbeddingContract) -> IResNet:
    """ArcFace IResNet-100, blocks [3, 13, 30, 3]."""
    return IResNet(contract, (3, 13, 30, 3))
