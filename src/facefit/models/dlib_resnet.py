"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

Architecture only: no file access. ``checkpoint_filter_fn`` turns the layers of a
parsed dlib ``.dat`` file into this module's state dict.

Layout (input 150x150): a 7x7/2 stem, a 3x3/2 max pool, then five stages of
residual blocks (32, 64, 128, 256, 256 channels) and a bias-free 256->128 fc.
Two dlib details matter for exactness: strided convs and pools have no padding,
and a residual sum zero-pads the smaller operand at the *end* of channels, rows
and columns (dlib's ``add_prev``) instead of projecting the shortcut.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facefit.align.recipe import DLIB_CHIP_150
from facefit.io.assets import RESNET_V1
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract
from facefit.models.registry import PretrainedCfg, register_model

# batch_norm's eps: torch 2.11 refuses 0, and 1e-30 vanishes against the variance 1 in fp16, fp32 and fp64
# alike (1 + 1e-30 == 1), so the result stays exactly x*w + b.
AFFINE_EPS = 1e-30


class Affine(nn.Module):
    """Per-channel scale and shift (dlib's ``affine_``: a batch norm folded into constants)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        # Fixed statistics (mean 0, variance 1) for the fused kernel below; not part of the state dict.
        # They must be real tensors: zero-stride expanded ones give garbage weight gradients.
        self.register_buffer("_zero", torch.zeros(channels), persistent=False)
        self.register_buffer("_one", torch.ones(channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # batch_norm with statistics 0/1 computes exactly x*w + b, in one fused kernel whose backward is
        # faster in training than the two broadcast ops.
        return F.batch_norm(x, self._zero, self._one, self.weight, self.bias, False, 0.0, AFFINE_EPS)


def pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Add two NCHW tensors after zero-padding each to the larger C, H and W at the end."""
    c = max(a.shape[1], b.shape[1])
    h = max(a.shape[2], b.shape[2])
    w = max(a.shape[3], b.shape[3])

    def grow(t: torch.Tensor) -> torch.Tensor:
        pads = (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1])
        return F.pad(t, pads) if any(pads) else t

    return grow(a) + grow(b)


class ResBlock(nn.Module):
    """dlib's ``ares`` (same size) or ``ares_down`` (stride 2, average-pooled shortcut)."""

    def __init__(self, in_ch: int, out_ch: int, down: bool) -> None:
        super().__init__()
        self.down = down
        stride, pad = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=pad)
        self.aff1 = Affine(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1)
        self.aff2 = Affine(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inplace = not torch.is_grad_enabled()  # saves an allocation per ReLU at inference
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)), inplace=inplace)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(pad_add(shortcut, y), inplace=inplace)


class _Stem(nn.Module):
    def __init__(self, conv: nn.Conv2d, aff: Affine) -> None:
        super().__init__()
        self.conv, self.aff = conv, aff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.aff(self.conv(x)), inplace=not torch.is_grad_enabled()), 3, 2)


class _Head(nn.Module):
    def __init__(self, fc: nn.Linear) -> None:
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


# (channels, number of blocks, whether the first block downsamples), input side first.
STAGES: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)


class DlibResNet(FaceEmbedder):
    """The 29-conv ResNet of dlib's face recogniser: 150x150 RGB -> 128 raw numbers."""

    def __init__(self, contract: EmbeddingContract) -> None:
        super().__init__(contract)
        self.stem_conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.stem_aff = Affine(32)
        stages = []
        in_ch = 32
        for ch, n, down in STAGES:
            blocks = [ResBlock(in_ch, ch, down)] + [ResBlock(ch, ch, False) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            in_ch = ch
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(in_ch, contract.embedding_dim, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 256-D features before the final projection."""
        x = F.relu(self.stem_aff(self.stem_conv(x)), inplace=not torch.is_grad_enabled())
        x = F.max_pool2d(x, 3, 2)
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    def inference_copy(self) -> nn.Module:
        """A copy with every affine folded into the conv before it (exact up to rounding)."""
        net = super().inference_copy()
        with torch.no_grad():
            for conv, aff in net.conv_affine_pairs():
                conv.weight.mul_(aff.weight.view(-1, 1, 1, 1))
                conv.bias.mul_(aff.weight).add_(aff.bias)
        for module in list(net.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, Affine):
                    setattr(module, name, nn.Identity())
        return net

    def stage_modules(self) -> list[nn.Module]:
        """Stages from the input side: stem, the five residual stages, pooling + projection.

        Views over this model's own layers (not registered, so state-dict keys do not
        change); applied in turn they compute ``forward``.
        """
        return [_Stem(self.stem_conv, self.stem_aff), *self.stages, _Head(self.fc)]

    def conv_affine_pairs(self) -> Iterator[tuple[nn.Conv2d, Affine]]:
        """Every conv with the affine that follows it, from the input outwards."""
        yield self.stem_conv, self.stem_aff
        for stage in self.stages:
            for block in stage:
                yield block.conv1, block.aff1
                yield block.conv2, block.aff2


def checkpoint_filter_fn(layers: list, model: DlibResNet) -> dict[str, torch.Tensor]:
    """Map the parsed layers of a dlib ``.dat`` (``DlibNet.layers``) to ``model``'s state dict.

    Convs and affines are matched in forward order and their geometry checked,
    so a file of another dlib architecture fails loudly instead of loading wrongly.
    """
    convs = [layer for layer in layers if layer.kind == "con_4"]
    affines = [layer for layer in layers if layer.kind == "affine_"]
    fcs = [layer for layer in layers if layer.kind == "fc_2"]
    pairs = list(model.conv_affine_pairs())
    if len(convs) != len(pairs) or len(affines) != len(pairs) or len(fcs) != 1:
        raise ValueError(
            f"dlib file has {len(convs)} convs, {len(affines)} affines and {len(fcs)} fc layers; "
            f"{type(model).__name__} needs {len(pairs)}, {len(pairs)} and 1"
        )
    names = {id(m): n for n, m in model.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for (conv, aff), src_conv, src_aff in zip(pairs, convs, affines):
        p = src_conv.params
        if tuple(p["weight"].shape) != tuple(conv.weight.shape) or tuple(p["stride"]) != conv.stride \
                or tuple(p["padding"]) != conv.padding:
            raise ValueError(
                f"conv {names[id(conv)]}: file has weight {p['weight'].shape}, stride {p['stride']}, "
                f"padding {p['padding']}; model has {tuple(conv.weight.shape)}, {conv.stride}, {conv.padding}"
            )
        state[f"{names[id(conv)]}.weight"] = torch.from_numpy(p["weight"])
        state[f"{names[id(conv)]}.bias"] = torch.from_numpy(p["bias"])
        state[f"{names[id(aff)]}.weight"] = torch.from_numpy(src_aff.params["gamma"])
        state[f"{names[id(aff)]}.bias"] = torch.from_numpy(src_aff.params["beta"])
    fc_w = fcs[0].params["weight"]
    if fc_w.T.shape != tuple(model.fc.weight.shape):
        raise ValueError(f"fc: file has {fc_w.shape[::-1]}, model has {tuple(model.fc.weight.shape)}")
    state["fc.weight"] = torch.from_numpy(np.ascontiguousarray(fc_w.T))
    return state


DLIB_RESNET_CONTRACT = EmbeddingContract(
    architecture="dlib-resnet",
    input_size=(150, 150),
    mean=(122.782, 117.001, 104.298),
    std=(256.0, 256.0, 256.0),
    align=DLIB_CHIP_150,
    embedding_dim=128,
    normalized=False,
    weights_sha256=None,
    name="dlib-resnet",
    distance="euclidean",
    thresholds={"euclidean": 0.6},  # dlib's own operating point for this model
    licence="CC0-1.0",
    source="dlib_face_recognition_resnet_model_v1 (face-recognition-models)",
)


@register_model(
    "dlib-resnet",
    contract=DLIB_RESNET_CONTRACT,
    pretrained=PretrainedCfg(asset=RESNET_V1, format="dlib-dat"),
    description="dlib's ResNet-29 face recogniser, 150x150 dlib chips -> 128-D (99.38% LFW published)",
)
def dlib_resnet(contract: EmbeddingContract) -> DlibResNet:
    """dlib's face-recognition ResNet."""
    return DlibResNet(contract)
