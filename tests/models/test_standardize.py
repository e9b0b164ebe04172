"""Re-standardisation keeps the function, makes the weights trainable, and the model trains."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facefit.models.standardize import _ChannelStats, standardize_


@pytest.fixture(scope="module")
def standardized(model, johns):
    m = copy.deepcopy(model)
    return standardize_(m, johns[0])


def _conv_stats(model, chips):
    pairs = list(model.conv_affine_pairs())
    stats = [_ChannelStats(c.out_channels) for c, _ in pairs]
    hooks = [c.register_forward_hook(s) for (c, _), s in zip(pairs, stats)]
    with torch.no_grad():
        model(model.preprocess(torch.from_numpy(chips)))
    for h in hooks:
        h.remove()
    return [s.mean_std() for s in stats]


def test_function_is_preserved(model, standardized, johns) -> None:
    chips = johns[0]
    assert np.abs(model.embed(chips) - standardized.embed(chips)).max() <= 1e-5


def test_every_conv_channel_is_standardised(standardized, johns) -> None:
    for mean, std in _conv_stats(standardized, johns[0]):
        assert mean.abs().max() < 1e-3
        assert (std - 1).abs().max() < 1e-3


def test_original_model_is_untouched(model) -> None:
    # standardize_ works in place on the copy only; the released weights keep their odd scale
    assert model.stem_conv.weight.abs().median() < 0.05


def test_needs_real_calibration_faces(model) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        standardize_(copy.deepcopy(model), np.zeros((1, 150, 150, 3), np.uint8))


def _cosine_softmax_steps(net, chips: np.ndarray, labels: list[str], steps: int, lr: float) -> list[float]:
    """A few steps of a normalised-softmax classifier whose head starts at each person's mean embedding."""
    torch.manual_seed(0)
    names = sorted(set(labels))
    y = torch.tensor([names.index(n) for n in labels])
    x = net.preprocess(torch.from_numpy(chips))
    with torch.no_grad():
        e = F.normalize(net(x), dim=1)
        centers = torch.stack([e[y == k].mean(0) for k in range(len(names))])
    head = torch.nn.Parameter(F.normalize(centers, dim=1).clone())
    opt = torch.optim.Adam([{"params": net.parameters(), "lr": lr}, {"params": [head], "lr": lr * 10}])
    net.train()
    losses = []
    for _ in range(steps):
        emb = net(x)
        assert torch.isfinite(emb).all()
        logits = 30.0 * (F.normalize(emb, dim=1) @ F.normalize(head, dim=1).T - 0.35 * F.one_hot(y, len(names)))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    return losses


def test_model_trains_after_standardisation(standardized, model, johns) -> None:
    chips, labels, _ = johns
    net = copy.deepcopy(standardized)
    before = model.embed(chips)
    losses = _cosine_softmax_steps(net, chips, labels, steps=8, lr=1e-5)
    after = net.embed(chips)  # the inference cache must notice the optimizer steps
    assert losses[-1] < 0.8 * losses[0], losses
    assert np.isfinite(after).all()
    assert np.abs(after - before).max() > 1e-3
    cos = (after * before).sum(1) / np.linalg.norm(after, axis=1) / np.linalg.norm(before, axis=1)
    assert cos.mean() > 0.9  # fine-tuning moves the embedding, it does not wreck it


def test_unstandardised_weights_are_fragile(model, standardized, johns) -> None:
    """The reason standardisation exists: the same tiny Adam steps do more damage to the released weights."""
    chips, labels, _ = johns
    before = model.embed(chips)

    def drift(net) -> float:
        net = copy.deepcopy(net)
        _cosine_softmax_steps(net, chips, labels, steps=8, lr=1e-5)
        after = net.embed(chips)
        cos = (after * before).sum(1) / np.linalg.norm(after, axis=1) / np.linalg.norm(before, axis=1)
        return float(cos.mean())

    assert drift(standardized) > drift(model) + 0.02


def test_affine_gradients_equal_the_plain_formula(johns) -> None:
    """The fused affine must give the gradients of x*w + b (a wrong kernel once silently stalled training)."""
    from facefit import create_model
    from facefit.models import dlib_resnet

    chips = johns[0][:6]

    def grads(plain: bool) -> torch.Tensor:
        m = create_model("dlib-resnet")
        if plain:
            for mod in m.modules():
                if isinstance(mod, dlib_resnet.Affine):
                    mod.forward = lambda x, mod=mod: x * mod.weight.view(1, -1, 1, 1) + mod.bias.view(1, -1, 1, 1)
        x = m.preprocess(torch.from_numpy(chips)).contiguous(memory_format=torch.channels_last)
        m.to(memory_format=torch.channels_last).train()
        m(x).sum().backward()
        return torch.cat([p.grad.flatten() for p in m.parameters()])

    fused, plain = grads(False), grads(True)
    assert torch.isfinite(fused).all() and float(fused.norm()) < 1e6
    assert torch.allclose(fused, plain, rtol=1e-3, atol=1e-3)
