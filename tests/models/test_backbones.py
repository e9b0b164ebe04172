"""The trainable backbones: FaceNet Inception-ResNet-v1, ArcFace IResNet-50/100 and MobileFaceNet.

No weights ship for them, so the checks are structural: each builds, embeds,
trains, survives a save/load round trip, and has exactly the parameter and
buffer names and shapes of the upstream module it mirrors (facts written out
below), so the user's facenet-pytorch or insightface state dicts load strictly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import facefit
from facefit.align.recipe import ARCFACE_YUNET_112
from facefit.errors import WeightsNotFoundError
from facefit.models import create_model, get_spec, iresnet, list_models, mobilefacenet
from facefit.models import inception_resnet_v1 as irv1

BACKBONES = ["inception-resnet-v1", "iresnet50", "iresnet100", "mobilefacenet"]
FILTERS = {
    "inception-resnet-v1": irv1.checkpoint_filter_fn,
    "iresnet50": iresnet.checkpoint_filter_fn,
    "iresnet100": iresnet.checkpoint_filter_fn,
    "mobilefacenet": mobilefacenet.checkpoint_filter_fn,
}


@pytest.fixture(scope="module")
def built() -> dict[str, facefit.models.FaceEmbedder]:
    """One randomly initialised model per backbone, shared by the tests that only read it."""
    torch.manual_seed(0)
    return {name: create_model(name, pretrained=False) for name in BACKBONES}


def chips_for(model, n: int, seed: int = 0) -> np.ndarray:
    h, w = model.contract.input_size
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def randomised_state(model: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every float tensor replaced by plausible random values."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if not v.dtype.is_floating_point:
            out[k] = v.clone()
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k == "features.weight" and isinstance(model, iresnet.IResNet):
            out[k] = torch.ones_like(v)  # fixed at 1 upstream
        else:
            out[k] = torch.randn(v.shape, generator=g) * 0.05
    return out


# ---------------------------------------------------------------- registry and contracts


@pytest.mark.parametrize("name", BACKBONES)
def test_registered_without_shipped_weights(name: str) -> None:
    assert name in list_models() and name not in list_models(pretrained=True)
    spec = get_spec(name)
    c = spec.contract
    assert spec.pretrained is None and c.architecture == name  # the factory rebuilds folders by architecture
    assert c.weights_sha256 is None and c.thresholds == {} and c.distance == "cosine"
    assert c.licence == "MIT (architecture); weights: supplied by the user"
    assert c.embedding_dim == 512 and c.align.size == c.input_size[0]
    if name == "inception-resnet-v1":
        assert c.align.method == "dlib-chip"
    else:  # insightface's models: insightface's own 5-point template crop, from YuNet's points
        assert (c.align.method, c.align.landmarks) == ("arcface-5pt", "yunet-5pt")
        assert c.align == ARCFACE_YUNET_112 and c.align.own_detector == "yunet"
    with pytest.raises(WeightsNotFoundError, match="no pretrained weights ship with facefit"):
        create_model(name, pretrained=True)


def test_contract_preprocessing_facts() -> None:
    facenet = get_spec("inception-resnet-v1").contract
    assert facenet.input_size == (160, 160) and facenet.normalized
    assert facenet.mean == (127.5,) * 3 and facenet.std == (128.0,) * 3  # facenet-pytorch fixed_image_standardization
    for name in ("iresnet50", "iresnet100", "mobilefacenet"):
        c = get_spec(name).contract
        assert c.input_size == (112, 112) and not c.normalized
        assert c.mean == (127.5,) * 3 and c.std == (127.5,) * 3  # arcface_torch: (x / 255 - 0.5) / 0.5


# ---------------------------------------------------------------- behaviour


@pytest.mark.parametrize("name", BACKBONES)
def test_embed_random_chips(built, name: str) -> None:
    model = built[name]
    out = model.embed(chips_for(model, 2))
    assert out.shape == (2, 512) and out.dtype == np.float32 and np.isfinite(out).all()
    if model.contract.normalized:
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="expected aligned chips"):
        model.embed(np.zeros((1, 100, 100, 3), np.uint8))


@pytest.mark.parametrize("name", BACKBONES)
def test_one_training_step(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, pretrained=False).train()
    n = 2 if name == "iresnet100" else 4  # the 65M-parameter net is slow on CI's two cores
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = model.preprocess(torch.from_numpy(chips_for(model, n, seed=1)))
    out = model(x)
    assert out.shape == (n, 512) and torch.isfinite(out).all()
    target = nn.functional.normalize(torch.randn(n, 512), dim=1)
    loss = (nn.functional.normalize(out, dim=1) - target).pow(2).sum(dim=1).mean()
    loss.backward()
    opt.step()
    changed = [k for k, p in model.named_parameters() if not torch.equal(before[k], p.detach())]
    first, last = next(iter(before)), list(before)[-1]
    assert first in changed and last in changed and len(changed) > 0.9 * len(before)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(x)).all()  # eval mode now uses the updated BN statistics
    if isinstance(model, iresnet.IResNet):
        assert torch.equal(model.features.weight, torch.ones(512))  # fixed, never trained


@pytest.mark.parametrize("name", BACKBONES)
def test_save_and_create_round_trip(built, name: str, tmp_path: Path) -> None:
    model = create_model(name, pretrained=False)
    model.load_state_dict(randomised_state(model))  # BN statistics too, so nothing matches by default
    chips = chips_for(model, 2, seed=3)
    want = model.embed(chips)
    folder = facefit.save_model(model, tmp_path / name)
    again = facefit.create_model(folder)
    assert type(again) is type(model) and again.contract == model.contract
    assert again.contract.weights_sha256 is not None
    np.testing.assert_array_equal(again.embed(chips), want)


@pytest.mark.parametrize("name", BACKBONES)
def test_stages_partition_the_parameters_in_order(built, name: str) -> None:
    model = built[name]
    keys = list(model.state_dict())
    stages = model.stages()
    assert len(stages) >= 5 and all(isinstance(s, nn.Module) for s in stages)
    ids = [id(p) for s in stages for p in s.parameters()]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    x = model.preprocess(torch.from_numpy(chips_for(model, 2)))
    with torch.no_grad():
        y = x
        for stage in stages:
            y = stage(y)
        want = model(x)
    if model.contract.normalized:
        y = nn.functional.normalize(y, dim=1)
    torch.testing.assert_close(y, want)
    assert list(model.state_dict()) == keys  # views over existing modules: no new or renamed keys


# ---------------------------------------------------------------- key-for-key compatibility
#
# Facts from facenet-pytorch models/inception_resnet_v1.py. Every BasicConv2d holds conv.weight
# and bn.{weight,bias,running_mean,running_var,num_batches_tracked}: 6 keys. There are 111 of them
# (stem 6, 5 x Block35 x 6, Mixed_6a 4, 10 x Block17 x 4, Mixed_7a 7, 6 x Block8 x 4); the 21
# residual blocks add conv2d.{weight,bias}; last_linear.weight and last_bn's 5 keys close it:
# 666 + 42 + 6 = 714 keys (716 with the logits classifier of the vggface2/casia-webface files).
# Parameters without logits: 23,482,624 (27,910,327 with the 8631-class vggface2 logits).

FACENET_KEYS = 714
FACENET_PARAMS = 23_482_624
FACENET_SHAPES = {
    "conv2d_1a.conv.weight": (32, 3, 3, 3),
    "conv2d_1a.bn.running_mean": (32,),
    "conv2d_1a.bn.num_batches_tracked": (),
    "conv2d_2b.conv.weight": (64, 32, 3, 3),
    "conv2d_3b.conv.weight": (80, 64, 1, 1),
    "conv2d_4b.conv.weight": (256, 192, 3, 3),
    "repeat_1.0.branch0.conv.weight": (32, 256, 1, 1),
    "repeat_1.4.branch2.2.conv.weight": (32, 32, 3, 3),
    "repeat_1.0.conv2d.weight": (256, 96, 1, 1),
    "repeat_1.0.conv2d.bias": (256,),
    "mixed_6a.branch0.conv.weight": (384, 256, 3, 3),
    "mixed_6a.branch1.2.conv.weight": (256, 192, 3, 3),
    "repeat_2.9.branch1.1.conv.weight": (128, 128, 1, 7),
    "repeat_2.9.branch1.2.conv.weight": (128, 128, 7, 1),
    "repeat_2.0.conv2d.weight": (896, 256, 1, 1),
    "mixed_7a.branch0.1.conv.weight": (384, 256, 3, 3),
    "mixed_7a.branch2.2.bn.running_var": (256,),
    "repeat_3.4.branch1.1.conv.weight": (192, 192, 1, 3),
    "block8.branch1.2.conv.weight": (192, 192, 3, 1),
    "block8.conv2d.weight": (1792, 384, 1, 1),
    "last_linear.weight": (512, 1792),
    "last_bn.weight": (512,),
    "last_bn.running_var": (512,),
}


def _iresnet_params(layers: tuple[int, ...]) -> int:
    """insightface's parameter count (including the frozen features.weight), from the block layout."""
    total = 3 * 64 * 9 + 2 * 64 + 64  # conv1, bn1, prelu
    in_ch = 64
    for ch, n in zip((64, 128, 256, 512), layers):
        for i in range(n):
            c_in = in_ch if i == 0 else ch
            total += 2 * c_in + c_in * ch * 9 + 2 * ch + ch + ch * ch * 9 + 2 * ch  # bn1 conv1 bn2 prelu conv2 bn3
            if i == 0:
                total += c_in * ch + 2 * ch  # downsample conv + BN
        in_ch = ch
    return total + 2 * 512 + (512 * 49 * 512 + 512) + 2 * 512  # bn2, fc, features


# Facts from arcface_torch backbones/iresnet.py: a block has 18 keys (bn1 5, conv1, bn2 5, prelu,
# conv2, bn3 5) and the first block of each of the 4 layers 6 more (downsample.0/.1); stem 7, head 12.
IRESNET_FACTS = {
    "iresnet50": ((3, 4, 14, 3), 24 * 18 + 4 * 6 + 19, 43.6e6),
    "iresnet100": ((3, 13, 30, 3), 49 * 18 + 4 * 6 + 19, 65.2e6),
}
IRESNET50_SHAPES = {
    "conv1.weight": (64, 3, 3, 3),
    "bn1.running_var": (64,),
    "prelu.weight": (64,),
    "layer1.0.bn1.weight": (64,),
    "layer1.0.conv1.weight": (64, 64, 3, 3),
    "layer1.0.bn2.bias": (64,),
    "layer1.0.prelu.weight": (64,),
    "layer1.0.conv2.weight": (64, 64, 3, 3),
    "layer1.0.bn3.running_mean": (64,),
    "layer1.0.downsample.0.weight": (64, 64, 1, 1),
    "layer1.0.downsample.1.weight": (64,),
    "layer2.0.conv1.weight": (128, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer3.13.conv2.weight": (256, 256, 3, 3),
    "layer4.2.bn3.weight": (512,),
    "bn2.weight": (512,),
    "fc.weight": (512, 512 * 7 * 7),
    "fc.bias": (512,),
    "features.weight": (512,),
    "features.bias": (512,),
    "features.running_var": (512,),
    "features.num_batches_tracked": (),
}


def assert_shapes(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> None:
    got = {k: tuple(state[k].shape) for k in shapes if k in state}
    assert got == shapes


def test_inception_resnet_v1_matches_facenet_pytorch_keys(built) -> None:
    model = built["inception-resnet-v1"]
    state = model.state_dict()
    assert len(state) == FACENET_KEYS
    assert sum(p.numel() for p in model.parameters()) == FACENET_PARAMS
    assert_shapes(state, FACENET_SHAPES)
    assert not any(k.startswith("logits") for k in state)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 112 and all(m.eps == 1e-3 and m.momentum == 0.1 for m in bns)
    assert model.dropout.p == 0.6 and model.block8.relu is False and model.repeat_1[0].scale == 0.17


def test_facenet_pytorch_checkpoint_loads_strictly(built) -> None:
    model = built["inception-resnet-v1"]
    ckpt = randomised_state(model)
    ckpt["logits.weight"] = torch.zeros(8631, 512)  # the vggface2 classifier, not part of the embedder
    ckpt["logits.bias"] = torch.zeros(8631)
    ckpt = {f"module.{k}": v for k, v in ckpt.items()}  # as saved from DataParallel
    fresh = create_model("inception-resnet-v1", pretrained=False)
    result = fresh.load_state_dict(irv1.checkpoint_filter_fn(ckpt, fresh), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(fresh.state_dict()["block8.conv2d.weight"], ckpt["module.block8.conv2d.weight"])


@pytest.mark.parametrize("name", ["iresnet50", "iresnet100"])
def test_iresnet_matches_insightface_keys(built, name: str) -> None:
    layers, n_keys, published = IRESNET_FACTS[name]
    model = built[name]
    state = model.state_dict()
    assert len(state) == n_keys
    upstream = sum(p.numel() for p in model.parameters()) + model.features.weight.numel()  # upstream: a parameter
    assert upstream == _iresnet_params(layers)
    assert abs(upstream - published) / published < 0.01
    for i, n in enumerate(layers, start=1):
        assert f"layer{i}.{n - 1}.bn3.weight" in state and f"layer{i}.{n}.bn1.weight" not in state
        assert f"layer{i}.0.downsample.0.weight" in state and f"layer{i}.1.downsample.0.weight" not in state
    if name == "iresnet50":
        assert_shapes(state, IRESNET50_SHAPES)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert all(m.eps == 1e-5 for m in bns)
    assert model.layer1[0].conv2.stride == (2, 2) and model.layer1[0].conv1.stride == (1, 1)
    assert "features.weight" not in dict(model.named_parameters())  # fixed at 1, as requires_grad=False upstream


def test_insightface_checkpoint_loads_strictly(built) -> None:
    model = built["iresnet50"]
    ckpt = {f"module.backbone.{k}": v for k, v in randomised_state(model).items()}
    fresh = create_model("iresnet50", pretrained=False)
    fresh.load_state_dict(iresnet.checkpoint_filter_fn({"state_dict_backbone": ckpt}, fresh), strict=True)
    assert torch.equal(fresh.fc.weight, ckpt["module.backbone.fc.weight"])


def test_mobilefacenet_uses_arcface_mbf_names(built) -> None:
    state = built["mobilefacenet"].state_dict()
    assert_shapes(state, {
        "layers.0.layers.0.weight": (128, 3, 3, 3),
        "layers.0.layers.2.weight": (128,),  # PReLU
        "layers.1.layers.0.weight": (128, 2, 3, 3),  # the 64-group conv
        "layers.2.layers.1.layers.0.weight": (128, 1, 3, 3),  # depthwise, stride 2
        "layers.3.layers.3.layers.2.layers.0.weight": (128, 128, 1, 1),  # 4th residual, linear projection
        "layers.5.layers.5.layers.0.layers.0.weight": (256, 256, 1, 1),
        "layers.6.layers.0.layers.0.weight": (512, 256, 1, 1),
        "layers.7.layers.1.layers.1.layers.0.weight": (256, 1, 3, 3),
        "conv_sep.layers.0.weight": (512, 256, 1, 1),
        "features.layers.0.layers.0.weight": (512, 1, 7, 7),  # GDC
        "features.layers.2.weight": (512, 512),
        "features.layers.3.running_mean": (512,),
    })
    assert "layers.3.layers.4.layers.0.layers.0.weight" not in state and "layers.8.layers.0.weight" not in state


# ---------------------------------------------------------------- checkpoint filters


@pytest.mark.parametrize("name", BACKBONES)
def test_filter_strips_prefixes_and_fills_num_batches_tracked(built, name: str) -> None:
    model = built[name]
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}  # pre-0.4.1 file
    out = FILTERS[name]({f"module.{k}": v for k, v in old.items()}, model)
    assert set(out) == set(model.state_dict())
    model.load_state_dict(out, strict=True)


@pytest.mark.parametrize("name", BACKBONES)
def test_filter_reports_what_does_not_fit(built, name: str) -> None:
    model = built[name]
    state = model.state_dict()
    some = next(k for k in state if k.endswith(".weight") and state[k].ndim == 4)
    broken = {k: v for k, v in state.items() if k != some}
    broken["head.extra"] = torch.zeros(3)
    with pytest.raises(ValueError, match=rf"1 missing \(e.g. {some}\).*1 unexpected \(e.g. head.extra\)"):
        FILTERS[name](broken, model)
    reshaped = dict(state)
    reshaped[some] = torch.zeros(1)
    with pytest.raises(ValueError, match=rf"of another shape \(e.g. {some}: checkpoint \(1,\)"):
        FILTERS[name](reshaped, model)
    with pytest.raises(ValueError, match="not a state dict"):
        FILTERS[name]({"epoch": 3, "optimizer": {}}, model)


def test_only_facenet_filter_drops_logits(built) -> None:
    state = dict(built["iresnet50"].state_dict())
    state["logits.weight"] = torch.zeros(10, 512)
    with pytest.raises(ValueError, match="unexpected.*logits.weight"):
        iresnet.checkpoint_filter_fn(state, built["iresnet50"])
