"""OpenCV Zoo's SFace face recogniser (``face_recognition_sface_2021dec``) in PyTorch.

Architecture only: no file access. ``checkpoint_filter_fn`` turns the layers of the
parsed ONNX graph (``facefit.models.onnx_weights.read_onnx_layers``) into this
module's state dict; the module names follow the graph's (``conv_1``, ``conv_2_dw``,
``conv_2``, ... ``conv_14``, ``bn1``, ``pre_fc1``, ``fc1``).

Layout (input 112x112), a MobileNet-v1-like plain stack without residual sums:
a 3x3/1 conv to 32 channels, then 13 depthwise-separable pairs ``conv_k_dw``
(3x3 depthwise, pad 1, stride 2 in ``conv_3/5/7/13_dw``) + ``conv_k`` (1x1) widening
to 64, 128, 128, 256, 256, 512 (x6) and 1024 (x2) channels, ending at 1024x7x7.
Every conv is bias-free and followed by BatchNorm (eps 1e-3) and a per-channel
PReLU. The head is insightface's "E" output: BatchNorm (eps 2e-5) over the 7x7 map,
dropout, flatten, a 50176 -> 128 linear layer with bias, BatchNorm1d (eps 2e-5).

Input order: the graph's ``data`` is RGB, 0-255 (it subtracts 127.5 and multiplies
by 1/128 itself). OpenCV's ``FaceRecognizerSF.feature`` takes a BGR chip and swaps it
to RGB before the graph (``blobFromImage(..., swapRB=true)``); fed BGR directly the
graph's outputs differ by up to ~1.3 and same-person similarities drop. So, like
every facefit model, this module takes RGB normalised by the contract (mean 127.5,
std 128), and ``conv_1``'s weights load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from facefit.align.recipe import ARCFACE_YUNET_112
from facefit.io.assets import SFACE_ONNX
from facefit.models.base import FaceEmbedder, he_init_
from facefit.models.contract import EmbeddingContract
from facefit.models.registry import PretrainedCfg, register_model

CONV_BN_EPS = 1e-3  # the graph's BatchNormalization epsilon after every conv (MXNet's default)
HEAD_BN_EPS = 2e-5  # bn1 and fc1 (insightface's head)
FEATURE_SIZE = 7  # 112 / 2**4: pre_fc1 flattens a fixed 1024x7x7 map, so the input size is fixed

# The depthwise-separable pairs conv_2 ... conv_14: (output channels of the 1x1 conv, stride of the depthwise).
SEPARABLE: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)

# stages()[:3] is conv_1 ... conv_6_dw, the first 10 conv blocks (a known-good frozen prefix):
# ``facefit train --set guard.freeze_stages=3``.
FREEZE_THROUGH_CONV_6_DW = 3


class ConvBlock(nn.Module):
    """Bias-free conv (padding ``kernel // 2``) -> BatchNorm (eps 1e-3) -> per-channel PReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(out_ch, eps=CONV_BN_EPS)
        self.act = nn.PReLU(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fold_bn(self) -> None:
        """Fold the BatchNorm (eval statistics) into the conv, which gains a bias; the BN becomes Identity."""
        bn = self.bn
        if not isinstance(bn, nn.BatchNorm2d):
            return
        old = self.conv
        conv = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, stride=old.stride,
                         padding=old.padding, groups=old.groups, bias=True).to(old.weight.device)
        scale, shift = _bn_affine(bn)
        with torch.no_grad():
            conv.weight.copy_((old.weight.double() * scale.view(-1, 1, 1, 1)).to(old.weight.dtype))
            bias = old.bias.double() if old.bias is not None else torch.zeros_like(shift)
            conv.bias.copy_((bias * scale + shift).to(old.weight.dtype))
        self.conv, self.bn = conv, nn.Identity()


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """A BatchNorm in eval mode as ``x * scale + shift``, in float64 (folding should add no rounding of its own)."""
    std = torch.sqrt(bn.running_var.double() + bn.eps)
    scale = bn.weight.double() / std
    return scale, bn.bias.double() - bn.running_mean.double() * scale


def block_names() -> list[str]:
    """The conv blocks from the input side: ``conv_1``, ``conv_2_dw``, ``conv_2``, ... ``conv_14``."""
    names = ["conv_1"]
    for k in range(2, len(SEPARABLE) + 2):
        names += [f"conv_{k}_dw", f"conv_{k}"]
    return names


class SFace(FaceEmbedder):
    """OpenCV Zoo's SFace: 112x112 RGB template chips -> 128 raw numbers (compare with cosine)."""

    # Its 112x112 and 56x56 maps outgrow the CPU caches in large batches: embedding 256 chips with
    # batch_size=64 on 2 EPYC cores ran at 55-58 img/s uncapped and 92-109 capped at 8 (3 rounds each,
    # one process, 2026-12-04).
    max_inference_batch = 8

    # The original file's input is RGB 0-255 (OpenCV's FaceRecognizerSF swaps its BGR chips to RGB before the
    # graph), so an export that takes RGB is a drop-in replacement for it, FaceRecognizerSF included.
    onnx_input_order = "RGB"

    def __init__(self, contract: EmbeddingContract, dropout: float = 0.0) -> None:
        """``dropout`` is applied before ``pre_fc1`` in training only; the graph records 0.4 from SFace's own
        training, but facefit fine-tunes with distillation and defaults to none (as for IResNet)."""
        super().__init__(contract)
        if tuple(contract.input_size) != (FEATURE_SIZE * 16,) * 2:
            raise ValueError(f"SFace needs 112x112 input (its fc layer flattens a 7x7 map), contract says "
                             f"{contract.input_size}")
        self.block_names = block_names()
        self.conv_1 = ConvBlock(3, 32, 3)
        ch = 32
        for k, (out_ch, stride) in enumerate(SEPARABLE, start=2):
            self.add_module(f"conv_{k}_dw", ConvBlock(ch, ch, 3, stride=stride, groups=ch))
            self.add_module(f"conv_{k}", ConvBlock(ch, out_ch, 1))
            ch = out_ch
        dim = contract.embedding_dim
        self.bn1: nn.Module = nn.BatchNorm2d(ch, eps=HEAD_BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.pre_fc1 = nn.Linear(ch * FEATURE_SIZE**2, dim)
        self.fc1: nn.Module = nn.BatchNorm1d(dim, eps=HEAD_BN_EPS)
        # SFace was trained with fc1's scale fixed at 1 (MXNet fix_gamma; the file stores 0.9999995). A buffer
        # under the same name loads the same weights and stays fixed when training unfreezes the head.
        del self.fc1.weight
        self.fc1.register_buffer("weight", torch.ones(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random initialisation: He-normal (fan-out) convs and linear, unit-scale zero-shift BNs."""
        he_init_(self)

    def blocks(self) -> Iterator[ConvBlock]:
        """The 27 conv blocks, input side first."""
        for name in self.block_names:
            yield getattr(self, name)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """1024x7x7 features -> the embedding."""
        return self.fc1(self.pre_fc1(torch.flatten(self.dropout(self.bn1(x)), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (112, 112):
            raise ValueError(f"SFace needs 112x112 input, got {tuple(x.shape[-2:])}")
        for block in self.blocks():
            x = block(x)
        return self.head(x)

    def stages(self) -> list[nn.Module]:
        """Eight stages, input side first, split where the map shrinks, except that stage 2 ends after
        ``conv_6_dw`` (so ``stages()[:FREEZE_THROUGH_CONV_6_DW]`` is the first 10 conv blocks):

        0: conv_1 .. conv_2 (112x112), 1: conv_3_dw .. conv_4 (56x56), 2: conv_5_dw .. conv_6_dw (28x28),
        3: conv_6 .. conv_7 (28 -> 14), 4: conv_8_dw .. conv_10, 5: conv_11_dw .. conv_12 (14x14),
        6: conv_13_dw .. conv_14 (7x7), 7: the head (bn1, dropout, pre_fc1, fc1).

        Each is a view over this model's own submodules (sharing their parameters,
        not registered), for freezing; run in turn they compute ``forward``.
        """
        cuts = ("conv_3_dw", "conv_5_dw", "conv_6", "conv_8_dw", "conv_11_dw", "conv_13_dw")
        groups: list[list[nn.Module]] = [[]]
        for name in self.block_names:
            if name in cuts:
                groups.append([])
            groups[-1].append(getattr(self, name))
        head = nn.Sequential(self.bn1, self.dropout, nn.Flatten(1), self.pre_fc1, self.fc1)
        return [nn.Sequential(*g) for g in groups] + [head]

    def inference_copy(self) -> nn.Module:
        """A copy with every BatchNorm folded away (exact up to float rounding).

        Each conv block's BN goes into its conv; the head's ``bn1`` (per channel of the
        7x7 map, before flatten) into ``pre_fc1``'s input side and ``fc1`` into its output
        side, so the head is a single linear layer.
        """
        net = super().inference_copy()
        for block in net.blocks():
            block.fold_bn()
        fc, bn1, fc1 = net.pre_fc1, net.bn1, net.fc1
        if isinstance(bn1, nn.BatchNorm2d) and isinstance(fc1, nn.BatchNorm1d):
            in_scale, in_shift = _bn_affine(bn1)
            area = fc.in_features // in_scale.numel()
            in_scale, in_shift = in_scale.repeat_interleave(area), in_shift.repeat_interleave(area)  # flatten order
            out_scale, out_shift = _bn_affine(fc1)
            with torch.no_grad():
                w = fc.weight.double()
                bias = fc.bias.double() + w @ in_shift  # W (a*x + b) + c = (W a) x + (W b + c)
                w = w * in_scale
                fc.weight.copy_((w * out_scale[:, None]).to(fc.weight.dtype))
                fc.bias.copy_((bias * out_scale + out_shift).to(fc.bias.dtype))
            net.bn1, net.fc1 = nn.Identity(), nn.Identity()
        net.dropout = nn.Identity()
        return net


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _const(layer: Any, i: int) -> np.ndarray:
    """Input ``i`` of an ONNX layer, which must be a constant (a weight) of the file."""
    _expect(i in layer.consts, f"{layer.name}: input {i} is not a constant of the file")
    return layer.consts[i]


def checkpoint_filter_fn(layers: Sequence[Any], model: SFace) -> dict[str, torch.Tensor]:
    """Map the compute layers of SFace's ONNX graph to ``model``'s state dict.

    ``layers`` are ``onnx_weights.OnnxLayer`` records (op, name, attributes and the
    constant inputs, weights already dequantized to float32), in graph order. The
    whole graph is checked against this architecture: a strictly sequential chain of
    exactly these ops, with the same geometry, epsilons and input normalisation, so
    another graph fails loudly instead of loading wrongly.
    """
    chain = [layer for layer in layers if layer.op not in ("Dropout",)]
    for prev, layer in zip(layers, layers[1:]):  # a plain chain: no residual sums, no branches
        _expect(layer.inputs[0] == prev.outputs[0],
                f"{layer.name}: reads {layer.inputs[0]!r}, not the previous layer's output; SFace is a plain chain")
    ops = [layer.op for layer in chain]
    _expect(ops[:2] == ["Sub", "Mul"], f"the graph should start with Sub and Mul (input scaling), found {ops[:2]}")
    sub, mul = (float(np.asarray(_const(layer, 1)).reshape(-1)[0]) for layer in chain[:2])
    _expect(all(abs(m - sub) < 1e-4 for m in model.contract.mean) and
            all(abs(1.0 / s - mul) < 1e-9 for s in model.contract.std),
            f"the graph scales its input as (x - {sub}) * {mul}; the contract says mean {model.contract.mean}, "
            f"std {model.contract.std}")
    body = chain[2:]
    names = model.block_names
    expected = ["Conv", "BatchNormalization", "PRelu"] * len(names) + ["BatchNormalization", "Flatten", "Gemm",
                                                                       "BatchNormalization"]
    _expect(ops[2:] == expected, f"the graph has {len(body)} layers ({', '.join(sorted(set(ops[2:])))}); "
                                 f"SFace expects {len(expected)} in the order conv, BN, PReLU x{len(names)}, "
                                 f"BN, flatten, Gemm, BN")

    state: dict[str, torch.Tensor] = {}

    def put(key: str, value: np.ndarray, like: torch.Tensor) -> None:
        t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        squeezed = [d for d in t.shape if d != 1] == [d for d in like.shape if d != 1]
        _expect(squeezed, f"{key}: the graph has {tuple(value.shape)}, the model {tuple(like.shape)}")
        state[key] = t.reshape(like.shape)  # only drops or adds unit dims, e.g. PRelu's (C, 1, 1) slopes

    def put_bn(prefix: str, layer: Any, bn: nn.modules.batchnorm._BatchNorm) -> None:
        eps = float(layer.attrs.get("epsilon", 1e-5))  # a float32 in the file: 0.0010000000474974513
        _expect(math.isclose(eps, bn.eps, rel_tol=1e-6), f"{layer.name}: epsilon {eps}, the model's {prefix} "
                                                         f"uses {bn.eps}")
        gamma, beta, mean, var = (_const(layer, i) for i in range(1, 5))
        for key, value in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
            put(f"{prefix}.{key}", value, getattr(bn, key))
        state[f"{prefix}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)

    for i, name in enumerate(names):
        conv_l, bn_l, act_l = body[3 * i: 3 * i + 3]
        block: ConvBlock = getattr(model, name)
        conv = block.conv
        a = conv_l.attrs
        geometry = (list(a.get("strides", [1, 1])), list(a.get("pads", [0, 0, 0, 0])), int(a.get("group", 1)),
                    list(a.get("dilations", [1, 1])))
        wanted = (list(conv.stride), list(conv.padding) * 2, conv.groups, list(conv.dilation))
        _expect(geometry == wanted, f"{conv_l.name}: strides, pads, group, dilations {geometry}; "
                                    f"the model's {name} has {wanted}")
        _expect(len(conv_l.inputs) < 3, f"{conv_l.name}: has a bias; SFace's convs have none")
        put(f"{name}.conv.weight", _const(conv_l, 1), conv.weight)
        put_bn(f"{name}.bn", bn_l, block.bn)  # type: ignore[arg-type]
        put(f"{name}.act.weight", _const(act_l, 1), block.act.weight)

    bn1_l, _flatten, gemm_l, fc1_l = body[3 * len(names):]
    put_bn("bn1", bn1_l, model.bn1)  # type: ignore[arg-type]
    g = gemm_l.attrs
    _expect((float(g.get("alpha", 1.0)), float(g.get("beta", 1.0)), int(g.get("transA", 0)), int(g.get("transB", 0)))
            == (1.0, 1.0, 0, 1), f"{gemm_l.name}: expected alpha 1, beta 1, transB 1, got {g}")
    put("pre_fc1.weight", _const(gemm_l, 1), model.pre_fc1.weight)
    put("pre_fc1.bias", _const(gemm_l, 2), model.pre_fc1.bias)
    put_bn("fc1", fc1_l, model.fc1)  # type: ignore[arg-type]
    own = model.state_dict()
    _expect(set(state) == set(own), f"unmapped model keys: {sorted(set(own) - set(state))[:3]}")
    return state


# OpenCV's FaceRecognizerSF::match uses a cosine-similarity threshold of 0.363 for SFace (its sample and
# the OpenCV Zoo README); facefit's cosine distance is 1 - similarity.
SFACE_COSINE_THRESHOLD = 1 - 0.363

SFACE_CONTRACT = EmbeddingContract(
    architecture="sface",
    input_size=(112, 112),
    mean=(127.5, 127.5, 127.5),
    std=(128.0, 128.0, 128.0),  # the graph multiplies by 1/128 itself
    align=ARCFACE_YUNET_112,  # OpenCV's alignCrop on YuNet's five points, as FaceRecognizerSF is used
    embedding_dim=128,
    normalized=False,
    weights_sha256=None,
    name="sface",
    distance="cosine",
    thresholds={"cosine": SFACE_COSINE_THRESHOLD},
    licence="Apache-2.0 (OpenCV Zoo)",
    source=SFACE_ONNX.source,
)


@register_model(
    "sface",
    contract=SFACE_CONTRACT,
    pretrained=PretrainedCfg(asset=SFACE_ONNX, format="sface-onnx"),
    description="OpenCV Zoo's SFace (MobileFaceNet-like; int8 block-quantized ONNX, dequantized to float), "
                "112x112 YuNet template chips -> 128-D",
)
def sface(contract: EmbeddingContract) -> SFace:
    """OpenCV Zoo's SFace face recogniser."""
    return SFace(contract)
