"""FaceNet's Inception-ResNet-v1 (as in facenet-pytorch's ``InceptionResnetV1``) in PyTorch.

Architecture only: no file access. Module names, shapes and BatchNorm settings
(eps 0.001, momentum 0.1) reproduce facenet-pytorch's embedding network, so its
state dicts load with ``strict=True`` once ``checkpoint_filter_fn`` has dropped
the ``logits.*`` classifier that its vggface2/casia-webface checkpoints carry.

Layout (input 160x160): a convolutional stem to 256 channels at 17x17, then
5 x Block35 (scaled 0.17), the Mixed_6a reduction to 896 channels, 10 x Block17
(0.10), the Mixed_7a reduction to 1792 channels, 5 x Block8 (0.20) and a final
unscaled Block8 without ReLU; global average pooling, dropout, a bias-free
1792 -> D linear layer, BatchNorm1d and L2 normalisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from facefit.align.recipe import AlignRecipe
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract
from facefit.models.registry import register_model
from facefit.models.weights import match_checkpoint

BN_EPS = 1e-3  # the TensorFlow value the original FaceNet weights were trained with
BN_MOMENTUM = 0.1

Size = int | tuple[int, int]


class BasicConv2d(nn.Module):
    """Bias-free conv -> BN -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: Size, stride: int = 1, padding: Size = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _chain(*convs: tuple) -> nn.Sequential:
    """A Sequential of BasicConv2d, one per argument tuple."""
    return nn.Sequential(*(BasicConv2d(*args) for args in convs))


class _ScaledResidual(nn.Module):
    """Concatenated branches -> 1x1 conv (with bias) -> ``x + scale * branch``, then ReLU unless disabled."""

    branch_names: tuple[str, ...] = ()

    def __init__(self, scale: float, relu: bool) -> None:
        super().__init__()
        self.scale = scale
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([getattr(self, name)(x) for name in self.branch_names], dim=1)
        out = x + self.scale * self.conv2d(y)
        return F.relu(out) if self.relu else out


class Block35(_ScaledResidual):
    """Inception-ResNet-A at 17x17, 256 channels."""

    branch_names = ("branch0", "branch1", "branch2")

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(scale, relu=True)
        self.branch0 = BasicConv2d(256, 32, 1)
        self.branch1 = _chain((256, 32, 1), (32, 32, 3, 1, 1))
        self.branch2 = _chain((256, 32, 1), (32, 32, 3, 1, 1), (32, 32, 3, 1, 1))
        self.conv2d = nn.Conv2d(96, 256, 1)


class Block17(_ScaledResidual):
    """Inception-ResNet-B at 8x8, 896 channels, with factorised 1x7 / 7x1 convs."""

    branch_names = ("branch0", "branch1")

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(scale, relu=True)
        self.branch0 = BasicConv2d(896, 128, 1)
        self.branch1 = _chain((896, 128, 1), (128, 128, (1, 7), 1, (0, 3)), (128, 128, (7, 1), 1, (3, 0)))
        self.conv2d = nn.Conv2d(256, 896, 1)


class Block8(_ScaledResidual):
    """Inception-ResNet-C at 3x3, 1792 channels, with factorised 1x3 / 3x1 convs."""

    branch_names = ("branch0", "branch1")

    def __init__(self, scale: float = 1.0, relu: bool = True) -> None:
        super().__init__(scale, relu=relu)
        self.branch0 = BasicConv2d(1792, 192, 1)
        self.branch1 = _chain((1792, 192, 1), (192, 192, (1, 3), 1, (0, 1)), (192, 192, (3, 1), 1, (1, 0)))
        self.conv2d = nn.Conv2d(384, 1792, 1)


class Mixed6a(nn.Module):
    """Reduction-A: 256 -> 896 channels, halving the resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(256, 384, 3, 2)
        self.branch1 = _chain((256, 192, 1), (192, 192, 3, 1, 1), (192, 256, 3, 2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], dim=1)


class Mixed7a(nn.Module):
    """Reduction-B: 896 -> 1792 channels, halving the resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = _chain((896, 256, 1), (256, 384, 3, 2))
        self.branch1 = _chain((896, 256, 1), (256, 256, 3, 2))
        self.branch2 = _chain((896, 256, 1), (256, 256, 3, 1, 1), (256, 256, 3, 2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


class InceptionResnetV1(FaceEmbedder):
    """FaceNet's Inception-ResNet-v1: 160x160 RGB -> L2-normalised D-vector (compare with cosine)."""

    def __init__(self, contract: EmbeddingContract, dropout: float = 0.6) -> None:
        super().__init__(contract)
        self.conv2d_1a = BasicConv2d(3, 32, 3, 2)
        self.conv2d_2a = BasicConv2d(32, 32, 3, 1)
        self.conv2d_2b = BasicConv2d(32, 64, 3, 1, 1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3, 1)
        self.conv2d_4b = BasicConv2d(192, 256, 3, 2)
        self.repeat_1 = nn.Sequential(*(Block35(0.17) for _ in range(5)))
        self.mixed_6a = Mixed6a()
        self.repeat_2 = nn.Sequential(*(Block17(0.10) for _ in range(10)))
        self.mixed_7a = Mixed7a()
        self.repeat_3 = nn.Sequential(*(Block8(0.20) for _ in range(5)))
        self.block8 = Block8(relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.last_linear = nn.Linear(1792, contract.embedding_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(contract.embedding_dim, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4b(self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x))))
        x = self.repeat_2(self.mixed_6a(self.repeat_1(x)))
        x = self.block8(self.repeat_3(self.mixed_7a(x)))
        x = self.dropout(torch.flatten(self.avgpool_1a(x), 1))
        return F.normalize(self.last_bn(self.last_linear(x)), p=2, dim=1)

    def stages(self) -> list[nn.Module]:
        """[stem, repeat_1, mixed_6a + repeat_2, mixed_7a + repeat_3 + block8, head], input side first.

        Each is a view over this model's own submodules (sharing their parameters,
        not registered), for freezing; run in turn they give ``forward`` without
        its final L2 normalisation.
        """
        stem = nn.Sequential(self.conv2d_1a, self.conv2d_2a, self.conv2d_2b, self.maxpool_3a,
                             self.conv2d_3b, self.conv2d_4a, self.conv2d_4b)
        head = nn.Sequential(self.avgpool_1a, nn.Flatten(1), self.dropout, self.last_linear, self.last_bn)
        return [
            stem,
            self.repeat_1,
            nn.Sequential(self.mixed_6a, self.repeat_2),
            nn.Sequential(self.mixed_7a, self.repeat_3, self.block8),
            head,
        ]


def checkpoint_filter_fn(state_dict: Mapping[str, object], model: InceptionResnetV1) -> dict[str, torch.Tensor]:
    """A facenet-pytorch ``InceptionResnetV1`` state dict as ``model``'s: drops ``logits.*`` and ``module.``."""
    return match_checkpoint(state_dict, model, drop=("logits.",))


# dlib's chip stands in for facenet-pytorch's MTCNN crop (the detector box resized to 160x160). The two frame
# the face differently, so weights trained on MTCNN crops see a slightly different crop; fine-tuning absorbs it.
FACENET_CHIP_160 = AlignRecipe(size=160, padding=0.3)

INCEPTION_RESNET_V1_CONTRACT = EmbeddingContract(
    architecture="inception-resnet-v1",
    input_size=(160, 160),
    mean=(127.5, 127.5, 127.5),
    std=(128.0, 128.0, 128.0),  # facenet-pytorch's fixed_image_standardization: (x - 127.5) / 128
    align=FACENET_CHIP_160,
    embedding_dim=512,
    normalized=True,
    weights_sha256=None,
    name="inception-resnet-v1",
    distance="cosine",
    thresholds={},  # uncalibrated: thresholds depend on the weights the user brings
    licence="MIT (architecture); weights: supplied by the user",
    source="facenet-pytorch models/inception_resnet_v1.py (architecture only; no weights shipped)",
)


@register_model(
    "inception-resnet-v1",
    contract=INCEPTION_RESNET_V1_CONTRACT,
    description="FaceNet Inception-ResNet-v1 (facenet-pytorch layout), 160x160 chips -> 512-D L2-normalised; "
                "bring your own weights",
)
def inception_resnet_v1(contract: EmbeddingContract) -> InceptionResnetV1:
    """FaceNet's Inception-ResNet-v1."""
    return InceptionResnetV1(contract)
