"""Training parts against naive references: config, augmentation, losses, guards, schedule."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facefit.errors import UsageError
from facefit.train.adapters import add_adapters, freeze_all_but_adapters, merge_adapters
from facefit.train.augment import augment
from facefit.train.config import AugmentConfig, LossConfig, load_config, parse_set
from facefit.train.guard import L2SP, distillation_loss, freeze_stages, relational_distillation_loss
from facefit.train.losses import build_loss, init_head_from_means
from facefit.train.schedule import Schedule, TimeBudget
from facefit.train.step import epoch_order

# --- config ---------------------------------------------------------------------------------------------------

def test_config_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = load_config()
    # The default base is SFace, with its recipe: 3 epochs, ArcFace margin 0.3, frozen BatchNorm statistics.
    assert cfg.base == "sface" and cfg.loss.kind == "arcface" and cfg.loss.margin == 0.3
    assert cfg.optim.epochs == 3 and cfg.guard.bn == "frozen" and not cfg.standardize
    assert cfg.guard.freeze_stages == 3 and cfg.guard.distill_weight == 10 and cfg.optim.layer_lr == "flat"
    assert cfg.optim.time_budget_min == 30 and cfg.data.held_out == 0.1
    f = tmp_path / "c.yaml"
    f.write_text("loss:\n  kind: cosface\n  margin: 0.35\noptim:\n  lr: 3.0e-4\n")
    cfg = load_config(f, parse_set(["optim.epochs=7", "guard.distill_weight=0"]))
    assert cfg.loss.kind == "cosface" and cfg.optim.lr == 3e-4 and cfg.optim.epochs == 7
    assert cfg.guard.distill_weight == 0
    assert cfg.digest() != load_config().digest()
    assert cfg.digest() == load_config(f, parse_set(["optim.epochs=7", "guard.distill_weight=0"])).digest()


@pytest.mark.parametrize("text,message", [
    ("loss:\n  kind: arcfase\n", "loss.kind"),
    ("optim:\n  lr: -1\n", "optim.lr"),
    ("optim:\n  learning_rate: 0.1\n", "optim.learning_rate: Extra inputs are not permitted"),
    ("surprise: 1\n", "surprise"),
    ("loss:\n  kind: triplet\noptim:\n  batch_size: 30\n  images_per_person: 4\n", "multiple of"),
    ("data:\n  val_pairs: p.csv\n", "go together"),
    ("- a list\n", "must be a mapping"),
    ("pretrained: false\n", "guard.distill_weight=0 and guard.freeze_stages=0"),
    ("guard:\n  adapter_rank: 8\n  l2sp_weight: 1\n", "optim.weight_decay pulls the adapters"),
    ("guard:\n  adapter_rank: -1\n", "guard.adapter_rank"),
    ("guard:\n  anchors: [faces]\n  distill_weight: 0\n", "guard.distill_weight=0 turns off"),
])
def test_config_errors_are_clear(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_config(f)


def test_set_syntax() -> None:
    assert parse_set(["optim.lr=1e-3", "augment.flip=false", "data.filters={age_class: [a, b]}"]) == {
        "optim.lr": 1e-3, "augment.flip": False, "data.filters": {"age_class": ["a", "b"]}}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_set(["optim.lr"])


# --- augmentation ---------------------------------------------------------------------------------------------

def _faces(johns) -> torch.Tensor:
    return torch.from_numpy(johns[0][:8]).permute(0, 3, 1, 2).float()


def test_augment_is_seeded_and_in_range(johns) -> None:
    x = _faces(johns)
    a = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment(x, AugmentConfig(), torch.Generator().manual_seed(1))
    c = augment(x, AugmentConfig(), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 255
    assert (a - x).abs().mean() > 1.0  # it does something


def test_each_augmentation_alone(johns) -> None:
    x = _faces(johns)
    off = AugmentConfig(flip=False, brightness=0, contrast=0, gamma=0, saturation=0, hue=0, tint=0, greyscale=0,
                        shift=0, scale=0, rotate=0, blur=0)
    assert torch.allclose(augment(x, off, torch.Generator().manual_seed(0)), x, atol=1e-3)
    flipped = augment(x, off.model_copy(update={"flip": True}), torch.Generator().manual_seed(0))
    for i in range(len(x)):  # each face is either itself or its mirror image
        assert torch.allclose(flipped[i], x[i], atol=1e-3) or torch.allclose(flipped[i], x[i].flip(2), atol=1e-3)
    grey = x.mean(1, keepdim=True).repeat(1, 3, 1, 1)
    hue = augment(grey, off.model_copy(update={"hue": 0.5}), torch.Generator().manual_seed(0))
    assert torch.allclose(hue, grey, atol=1e-2)  # rotating hue leaves grey pixels grey
    sat = augment(x, off.model_copy(update={"saturation": 1.0}), torch.Generator().manual_seed(0))
    assert not torch.allclose(sat, x, atol=1.0)
    tinted = augment(grey, off.model_copy(update={"tint": 0.3}), torch.Generator().manual_seed(0))
    assert not torch.allclose(tinted, grey, atol=1.0)  # a colour cast makes grey pixels coloured
    assert abs(float(tinted.mean() - grey.mean())) < 0.05 * float(grey.mean())  # ... at the same brightness
    bw = augment(x, off.model_copy(update={"greyscale": 1.0}), torch.Generator().manual_seed(0))
    assert torch.allclose(bw[:, 0], bw[:, 1], atol=1e-3) and torch.allclose(bw[:, 1], bw[:, 2], atol=1e-3)


def naive_colour(x: torch.Tensor, b: float, c: float, s: float, turns: float, tint: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation, hue and tint applied one after the other (0-1 RGB)."""
    w = torch.tensor([0.299, 0.587, 0.114])
    x = x * b
    mean = (x * w.view(3, 1, 1)).sum(0).mean()
    x = (x - mean) * c + mean
    grey = (x * w.view(3, 1, 1)).sum(0, keepdim=True)
    x = (x - grey) * s + grey
    axis = torch.ones(3) / math.sqrt(3)
    theta = turns * 2 * math.pi
    flat = x.reshape(3, -1).T  # Rodrigues: v cos + (k x v) sin + k (k.v)(1 - cos)
    rot = (flat * math.cos(theta) + torch.cross(axis.expand_as(flat), flat, dim=1) * math.sin(theta)
           + axis * (flat @ axis)[:, None] * (1 - math.cos(theta)))
    return rot.T.reshape(x.shape) * (tint / tint.mean()).view(3, 1, 1)


def test_fused_colour_matches_step_by_step(johns) -> None:
    x = _faces(johns)
    cfg = AugmentConfig(flip=False, brightness=0.3, contrast=0.3, gamma=0, saturation=0.4, hue=0.1, tint=0.2,
                        greyscale=0, shift=0, scale=0, rotate=0, blur=0)
    got = augment(x, cfg, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, in augment's order
    draws = [(torch.rand(len(x), generator=g) * 2 - 1) * spread for spread in (0.3, 0.3, 0.4, 0.1)]
    tints = 1 + (torch.rand(len(x), 3, generator=g) * 2 - 1) * 0.2
    for i in range(len(x)):
        want = naive_colour(x[i] / 255, 1 + float(draws[0][i]), 1 + float(draws[1][i]), 1 + float(draws[2][i]),
                            float(draws[3][i]), tints[i]).clamp(0, 1) * 255
        assert torch.allclose(got[i], want, atol=0.05), i


# --- losses ---------------------------------------------------------------------------------------------------

def naive_arcface(emb: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, margin: float, scale: float) -> float:
    """ArcFace written out: logit of the true class is s*cos(theta + m), the others s*cos(theta)."""
    total = 0.0
    for e, y in zip(emb, labels):
        cos = F.normalize(e, dim=0) @ F.normalize(w, dim=0)
        logits = []
        for k, c in enumerate(cos.tolist()):
            theta = math.acos(max(-1.0, min(1.0, c)))
            logits.append(scale * math.cos(theta + margin) if k == int(y) else scale * c)
        m = max(logits)
        total += -(logits[int(y)] - m - math.log(sum(math.exp(v - m) for v in logits)))
    return total / len(emb)


def test_arcface_margin_is_in_radians() -> None:
    torch.manual_seed(0)
    emb, labels = torch.randn(12, 16), torch.randint(0, 5, (12,))
    loss = build_loss(LossConfig(kind="arcface", margin=0.3, scale=16), 5, 16)
    expected = naive_arcface(emb.double(), labels, loss.head.detach().double(), 0.3, 16)
    assert loss(emb, labels).item() == pytest.approx(expected, rel=1e-4)


def naive_multi_similarity(emb: torch.Tensor, labels: torch.Tensor, alpha: float, beta: float, base: float,
                           eps: float) -> float:
    """Multi-similarity loss with its miner, written out pair by pair (Wang et al. 2019, eqs. 2 and 4)."""
    e = F.normalize(emb, dim=1)
    sim = (e @ e.T).tolist()
    total, n = 0.0, len(e)
    for i in range(n):
        pos = [sim[i][j] for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [sim[i][j] for j in range(n) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        hard_pos = [s for s in pos if s - eps < max(neg)]  # positives less similar than the hardest negative
        hard_neg = [s for s in neg if s + eps > min(pos)]  # negatives more similar than the easiest positive
        if hard_pos:
            total += math.log(1 + sum(math.exp(-alpha * (s - base)) for s in hard_pos)) / alpha
        if hard_neg:
            total += math.log(1 + sum(math.exp(beta * (s - base)) for s in hard_neg)) / beta
    return total / n


def test_pair_loss_adds_multi_similarity_to_arcface() -> None:
    torch.manual_seed(1)
    emb, labels = torch.randn(16, 8), torch.arange(4).repeat_interleave(4)  # P=4 persons x K=4 images
    plain = build_loss(LossConfig(kind="arcface", margin=0.2, scale=16), 4, 8)
    paired = build_loss(LossConfig(kind="arcface", margin=0.2, scale=16, pair_weight=0.5, pair_base=0.6), 4, 8)
    paired.load_state_dict(plain.state_dict())  # the same head
    expected = plain(emb, labels).item() + 0.5 * naive_multi_similarity(emb.double(), labels, 2.0, 50.0, 0.6, 0.1)
    assert paired(emb, labels).item() == pytest.approx(expected, rel=1e-4)


def test_pair_loss_makes_person_batches_and_refuses_triplet() -> None:
    cfg = load_config(None, parse_set(["loss.pair_weight=1", "optim.batch_size=64", "optim.images_per_person=4"]))
    assert cfg.person_batches and not load_config().person_batches
    for bad in (["loss.pair_weight=1", "optim.batch_size=66"], ["loss.kind=triplet", "loss.pair_weight=1"]):
        with pytest.raises(UsageError):
            load_config(None, parse_set(bad))


def test_cosface_and_softmax_and_triplet_build() -> None:
    torch.manual_seed(0)
    emb, labels = torch.randn(16, 8), torch.arange(4).repeat(4)
    for kind in ("cosface", "softmax", "subcenter-arcface", "triplet"):
        loss = build_loss(LossConfig(kind=kind), 4, 8)
        value = loss(emb, labels)
        assert torch.isfinite(value) and value > 0, kind
        assert (loss.head is None) == (kind == "triplet")


def test_head_starts_at_class_means() -> None:
    torch.manual_seed(0)
    emb, labels = torch.randn(30, 8), torch.arange(3).repeat(10)
    loss = build_loss(LossConfig(kind="arcface"), 3, 8)
    init_head_from_means(loss, emb, labels)
    for k in range(3):
        expected = F.normalize(F.normalize(emb[labels == k], dim=1).mean(0), dim=0)
        assert torch.allclose(loss.head[:, k], expected, atol=1e-6)
    sub = build_loss(LossConfig(kind="subcenter-arcface", sub_centers=2), 3, 8)
    init_head_from_means(sub, emb, labels, sub_centers=2, generator=torch.Generator().manual_seed(0))
    for k in range(3):  # class-major columns, each close to the class mean
        for s in range(2):
            assert F.cosine_similarity(sub.head[:, 2 * k + s], loss.head[:, k], dim=0) > 0.99


# --- guards ---------------------------------------------------------------------------------------------------

def test_distillation_loss() -> None:
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    naive = sum(1 - float(x @ y / (x.norm() * y.norm())) for x, y in zip(a, b)) / 5
    assert float(distillation_loss(a, b)) == pytest.approx(naive, rel=1e-5)
    assert float(distillation_loss(a, 3 * a)) == pytest.approx(0.0, abs=1e-6)


def test_relational_distillation_loss() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(6, 4), torch.randn(6, 4)

    def cos(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(x @ y / (x.norm() * y.norm()))

    naive = sum((cos(a[i], a[j]) - cos(b[i], b[j])) ** 2 for i in range(6) for j in range(6)) / 36
    assert float(relational_distillation_loss(a, b)) == pytest.approx(naive, rel=1e-5)
    # A rotation of the whole embedding and a rescaling of each face change nothing: only the relations count.
    q, _ = torch.linalg.qr(torch.randn(4, 4))
    assert float(relational_distillation_loss((a @ q) * torch.rand(6, 1).add(0.5), a)) == pytest.approx(0, abs=1e-6)
    assert float(distillation_loss(a @ q, a)) > 0.1  # which the per-face pull does not allow


def test_l2sp_and_freezing() -> None:
    from facefit import create_model

    m = create_model("dlib-resnet", pretrained=False)
    reg = L2SP(m)
    assert float(reg(m).detach()) == 0.0
    with torch.no_grad():
        m.fc.weight.add_(0.5)
    assert float(reg(m).detach()) == pytest.approx(0.25 * m.fc.weight.numel(), rel=1e-4)
    n = freeze_stages(m, 2)  # stem + first residual stage
    expected = sum(p.numel() for p in m.stem_conv.parameters()) + sum(p.numel() for p in m.stem_aff.parameters()) \
        + sum(p.numel() for p in m.stages[0].parameters())
    assert n == expected
    assert not m.stages[0][0].conv1.weight.requires_grad and m.stages[1][0].conv1.weight.requires_grad
    with pytest.raises(ValueError, match="freeze all"):
        freeze_stages(m, 7)


# --- schedule and sampling ------------------------------------------------------------------------------------

def test_schedule_warmup_then_cosine() -> None:
    s = Schedule(100, 0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0) and s(55) == pytest.approx(0.5, abs=0.02) and s(100) == pytest.approx(0.0)
    assert all(s(i) >= s(i + 1) for i in range(10, 100))


def test_time_budget_plans_from_the_first_steps_then_from_whole_epochs() -> None:
    def budget(minutes: float | None, resumed: bool = False, fit: bool = True
               ) -> tuple[TimeBudget, Schedule, list[int]]:
        sched, told = Schedule(1000, 0.05), []  # 100 epochs of 10 steps
        b = TimeBudget(minutes, sched, steps_per_epoch=10, batch=32, max_steps=1000, resumed=resumed,
                       broadcast=lambda n: told.append(n) or n, fit=fit)
        return b, sched, told

    b, sched, told = budget(10.0)  # 600 s
    assert b.plan(11, 11, 11.0, 11.0) is None and sched.total == 1000  # not timed enough yet
    # 1 step/s, 90% of 600 s minus the 12 s spent: 528 more steps
    assert b.plan(12, 12, 12.0, 12.0) == "time budget 10 min: 32 img/s, so the schedule is 540 steps (54.0 epochs)"
    assert sched.total == 540 and told == [540]
    assert b.plan(12, 12, 1.0, 12.0) is None and sched.total == 540  # planned once only
    # after epoch 1 (0-based 1): 30 steps in 60 s, 93% of 600 s: 30 + 249 = 279, cut to whole epochs
    assert b.replan(1, 30, 60.0) == "time budget 10 min: re-planned to 270 steps (27.0 epochs) from 16 img/s"
    assert sched.total == 270 and b.replan(3, 50, 100.0) is None and sched.total == 270
    assert not b.spent(582.0) and b.spent(582.1)  # stop at 97%
    b, sched, told = budget(10.0, resumed=True)  # a resumed run keeps its saved schedule
    assert b.plan(12, 12, 12.0, 12.0) is None and b.replan(1, 30, 60.0) is None and sched.total == 1000
    b, sched, told = budget(None)
    assert b.plan(12, 12, 12.0, 12.0) is None and b.replan(1, 30, 60.0) is None and not b.spent(1e9)
    assert told == [] and sched.total == 1000


def test_time_budget_without_fit_is_only_a_cap() -> None:
    """The default: the schedule is the configured epochs on any machine; the budget only stops the run."""
    sched, told = Schedule(1000, 0.05), []
    b = TimeBudget(10.0, sched, steps_per_epoch=10, batch=32, max_steps=1000, resumed=False,
                   broadcast=lambda n: told.append(n) or n)
    assert b.plan(12, 12, 12.0, 12.0) is None and b.replan(1, 30, 60.0) is None
    assert sched.total == 1000 and told == []
    assert not b.spent(582.0) and b.spent(582.1)


def test_base_recipes_fill_in_under_what_the_user_wrote() -> None:
    from facefit.train.config import load_config

    cfg = load_config()
    assert cfg.base == "sface"  # the default base, measured best after fine-tuning (docs/finetuning.md)
    assert cfg.optim.epochs == 3 and cfg.loss.margin == 0.3 and cfg.guard.bn == "frozen" and not cfg.standardize
    cfg = load_config(overrides={"base": "dlib-resnet"})
    assert cfg.optim.epochs == 12 and cfg.guard.freeze_stages == 3 and cfg.loss.margin == 0.15 and cfg.standardize
    cfg = load_config(overrides={"base": "sface", "optim.epochs": 9, "guard.bn": "train"})
    assert cfg.optim.epochs == 9 and cfg.guard.bn == "train" and cfg.guard.freeze_stages == 3


def test_epoch_order_is_seeded_and_pk_grouped() -> None:
    labels = np.repeat(np.arange(10), 6)
    a, b = epoch_order(labels, 3, 0, None), epoch_order(labels, 3, 0, None)
    assert np.array_equal(a, b) and sorted(a.tolist()) == list(range(60))
    assert not np.array_equal(a, epoch_order(labels, 4, 0, None))
    pk = epoch_order(labels, 0, 0, 4)
    assert len(pk) == 60
    for block in pk.reshape(-1, 4):
        assert len(set(labels[block])) == 1  # K images of one person in a row


def test_relative_layer_lr_follows_weight_rms() -> None:
    from facefit.train.setup import param_groups

    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with torch.no_grad():
        for layer, rms in zip(net, (0.01, 0.02, 0.08)):
            layer.weight.copy_(torch.full((4, 4), rms))
    head = torch.nn.Linear(4, 2, bias=False)
    cfg = load_config(overrides={"optim.lr": 1e-3, "optim.head_lr_mult": 10, "optim.layer_lr": "relative"})
    groups = param_groups(net, head, cfg)
    lrs = {id(g["params"][0]): g["lr"] for g in groups}
    # the median weight tensor (rms 0.02) keeps the base lr; the others scale with their rms
    assert [lrs[id(layer.weight)] for layer in net] == pytest.approx([5e-4, 1e-3, 4e-3])
    biases = next(g for g in groups if g["params"][0] is net[0].bias)
    assert biases["lr"] == 1e-3 and biases["weight_decay"] == 0.0 and len(biases["params"]) == 3
    assert next(g for g in groups if g["params"][0] is head.weight)["lr"] == pytest.approx(1e-2)
    flat = param_groups(net, head, load_config(overrides={"optim.lr": 1e-3, "optim.layer_lr": "flat"}))
    assert flat[0]["lr"] == 1e-3 and len(flat[0]["params"]) == 3


def test_weight_ema_against_a_running_average() -> None:
    from facefit.train.ema import WeightEMA

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    net[0].bias.requires_grad_(False)  # frozen tensors are not averaged
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ema = WeightEMA(net, 0.8)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    want = {k: v.clone() for k, v in start.items()}
    for _ in range(5):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
        ema.update(net)
        for k, v in net.state_dict().items():
            if k != "0.bias":
                want[k] = 0.8 * want[k] + 0.2 * v
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    with ema.swapped_in(net):
        for k, v in net.state_dict().items():
            assert torch.allclose(v, want[k] if k != "0.bias" else start[k], atol=1e-6), k
    for k, v in net.state_dict().items():  # the trained weights are back
        assert torch.equal(v, trained[k]), k
    again = WeightEMA(net, 0.8)
    again.load_state_dict(ema.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.shadow, ema.shadow))


# --- adapters ---------------------------------------------------------------------------------------------------

def test_low_rank_delta_against_a_naive_update() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1)
    w0 = conv.weight.detach().clone()
    assert add_adapters([conv], rank=2) == 1
    delta = conv.parametrizations["weight"][0]
    assert delta.A.shape == (2, 6 * 9) and delta.B.shape == (5, 2)
    x = torch.randn(2, 6, 7, 7)
    assert torch.equal(conv(x), F.conv2d(x, w0, conv.bias, padding=1))  # B = 0: exactly the pretrained layer
    with torch.no_grad():
        delta.B.normal_()
    rms = float(w0.pow(2).mean().sqrt())
    naive = w0.clone()
    a, b = delta.A.detach(), delta.B.detach()
    for o in range(5):
        for i in range(6):
            for r in range(3):
                for c in range(3):
                    naive[o, i, r, c] += rms / 2 ** 0.5 * sum(
                        float(b[o, k]) * float(a[k, i * 9 + r * 3 + c]) for k in range(2))
    torch.testing.assert_close(conv.weight, naive, rtol=1e-5, atol=1e-6)
    assert not conv.parametrizations["weight"].original.requires_grad and not conv.bias.requires_grad
    torch.testing.assert_close(conv(x), F.conv2d(x, naive, conv.bias, padding=1), rtol=1e-4, atol=1e-5)
    assert merge_adapters(conv) == 1 and type(conv) is torch.nn.Conv2d
    torch.testing.assert_close(conv.weight, naive, rtol=1e-5, atol=1e-6)
    assert set(dict(conv.named_parameters())) == {"weight", "bias"}


def test_adapters_on_dlib_resnet_train_only_themselves_and_merge_into_the_plain_model(johns) -> None:
    from facefit import create_model

    m = create_model("dlib-resnet", pretrained=True)
    plain_keys = set(m.state_dict())
    chips = johns[0][:4]
    before = m.embed(chips)
    n = add_adapters(m.stage_list()[4:], rank=4)
    freeze_all_but_adapters(m)
    assert n == 3 * 2 + 1 * 2 + 1  # stage 4 (3 blocks x 2 convs), stage 5 (1 block), the fc
    trainable = [name for name, p in m.named_parameters() if p.requires_grad]
    assert trainable and all(name.endswith((".A", ".B")) for name in trainable)
    assert not any(name.startswith(("stages.0", "stages.1", "stages.2")) for name in trainable)
    np.testing.assert_allclose(m.embed(chips), before, atol=1e-5)  # starts as the pretrained model
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    x = m.preprocess(torch.from_numpy(chips))
    loss = m(x).pow(2).sum()
    loss.backward()
    opt.step()
    with torch.no_grad():
        trained = m(x).numpy()
    assert np.abs(trained - before).max() > 1e-2
    np.testing.assert_allclose(m.embed(chips), trained, rtol=1e-4, atol=1e-4)  # the merged, folded copy agrees
    merge_adapters(m)
    assert set(m.state_dict()) == plain_keys  # an ordinary dlib-resnet again
    np.testing.assert_allclose(m.embed(chips), trained, rtol=1e-4, atol=1e-4)


def test_validation_pairs_over_training_persons_are_flagged(tmp_path: Path) -> None:
    from facefit.train.data import ChipData, val_overlap_note

    train_paths = [tmp_path / "Ann" / "1.jpg", tmp_path / "Ann" / "2.jpg", tmp_path / "Bob" / "1.jpg"]
    data = ChipData(np.zeros((3, 2, 2, 3), np.uint8), np.array([0, 0, 1]), ["Ann", "Bob"], train_paths)
    val = tmp_path / "val"
    assert val_overlap_note(data, [val / "Cid" / "1.jpg", val / "Dee" / "1.jpg"], val) is None
    note = val_overlap_note(data, [val / "Bob" / "9.jpg", val / "Dee" / "1.jpg"], val)
    assert note and "1 person folder name(s) are training persons, e.g. Bob" in note
    note = val_overlap_note(data, [train_paths[0], val / "Dee" / "1.jpg"], val)
    assert note and "1 of 2 images are training photos" in note


def test_one_photo_under_two_persons_is_flagged() -> None:
    from facefit.train.data import _shared_photos_note

    a, b, c = Path("Ann/1.jpg"), Path("Bob/1.jpg"), Path("Bob/2.jpg")
    assert _shared_photos_note([("Ann", [a]), ("Bob", [b, c])], {a: "x", b: "y", c: "z"}) is None
    assert _shared_photos_note([("Ann", [a]), ("Bob", [b, c])], {a: "x", b: "y", c: "y"}) is None  # same person
    note = _shared_photos_note([("Ann", [a]), ("Bob", [b, c])], {a: "x", b: "x", c: "z"})
    assert note and "1 photo(s) are filed under more than one person (e.g. under Ann and Bob)" in note


def test_training_precision_follows_the_config_the_environment_and_the_resumed_run(monkeypatch,
                                                                                  tmp_path: Path) -> None:
    from facefit.errors import PrecisionError
    from facefit.models import create_model
    from facefit.models import precision as prec
    from facefit.train.setup import training_bf16

    net, chips = create_model("dlib-resnet"), np.zeros((2, 150, 150, 3), np.uint8)
    cfg = lambda p: load_config(None, parse_set([f"optim.precision={p}"]))  # noqa: E731
    monkeypatch.delenv(prec.ENV_PRECISION, raising=False)
    assert training_bf16(cfg("auto"), net, chips, "cuda:0", None)  # a GPU with amp
    assert not training_bf16(cfg("fp32"), net, chips, "cuda:0", None)
    assert training_bf16(cfg("fp32"), net, chips, "cpu", {"bf16": True})  # a resume keeps what the run began with
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: "this CPU has no bf16 instructions")
    assert not training_bf16(cfg("auto"), net, chips, "cpu", None)
    with pytest.raises(PrecisionError, match="no bf16 instructions"):
        training_bf16(cfg("bf16"), net, chips, "cpu", None)
    monkeypatch.setattr(prec, "bf16_unsupported", lambda device: None)
    monkeypatch.setattr(prec, "measure_rates", lambda model, c: (100.0, 200.0, 1.0))
    monkeypatch.setenv("FACEFIT_CACHE", str(tmp_path))
    assert training_bf16(cfg("auto"), net, chips, "cpu", None)  # measured faster and faithful here
    monkeypatch.setattr(prec, "measure_rates", lambda model, c: (100.0, 200.0, 0.999))
    other = create_model("sface")  # faster, but its inference fails the cosine rule: training still takes bf16
    assert other.resolve_precision(np.zeros((1, 112, 112, 3), np.uint8)).precision == "fp32"
    assert training_bf16(cfg("auto"), other, np.zeros((1, 112, 112, 3), np.uint8), "cpu", None)
    monkeypatch.setattr(prec, "measure_rates", lambda model, c: (100.0, 120.0, 1.0))
    monkeypatch.setenv("FACEFIT_CACHE", str(tmp_path / "again"))
    assert not training_bf16(cfg("auto"), net, chips, "cpu", None)  # 1.2x: not worth it
    monkeypatch.setenv(prec.ENV_PRECISION, "fp32")
    assert not training_bf16(cfg("auto"), net, chips, "cpu", None)  # the machine's preference wins under auto


def test_resume_keeps_the_runs_own_config(tmp_path: Path) -> None:
    import yaml

    from facefit.train.rundir import resume_config

    run = tmp_path / "run"
    run.mkdir()
    cfg = load_config(None, {"data.train": [str(tmp_path)], "optim.epochs": 2})
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    again = resume_config(run, overrides={"device": "cpu", "workers": 1})
    assert again.optim.epochs == 2 and again.device == "cpu" and again.workers == 1
    assert resume_config(run).digest() == cfg.digest()
    with pytest.raises(UsageError, match="cannot take --epochs, DATA"):
        resume_config(run, changed=["--epochs", "DATA"])
    with pytest.raises(UsageError, match=r"cannot change optim.lr \(only device, workers\)"):
        resume_config(run, overrides={"optim.lr": 0.1})
    with pytest.raises(UsageError, match="no config.yaml"):
        resume_config(tmp_path / "elsewhere")
