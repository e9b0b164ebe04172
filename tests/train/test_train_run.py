"""Real (tiny) fine-tuning runs on Korean faces: outputs, export, kill + resume, bad data, two processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facefit import create_model
from facefit.errors import FacefitError, UsageError
from facefit.train.config import load_config
from facefit.train.loop import train

# The training machinery is exercised on dlib-resnet (its tests pin its numbers); sface's own run is below.
FAST = {"base": "dlib-resnet", "optim.batch_size": 16, "optim.epochs": 3, "optim.time_budget_min": None,
        "data.detector": "hog", "data.val_fraction": 0.25, "workers": 1, "augment.rotate": 3.0}


@pytest.fixture(scope="module")
def tiny(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 persons of the Korean training set (symlinked, never copied)."""
    src = data_root / "kfamily" / "train"
    root = tmp_path_factory.mktemp("kf") / "train"
    root.mkdir()
    people = sorted(p for p in src.iterdir() if p.is_dir())
    chosen = [p for p in people if len(list(p.glob("*.jpg"))) >= 10][:8]
    for p in chosen:
        (root / p.name).symlink_to(p, target_is_directory=True)
    return root


def _cfg(tiny: Path, **extra):
    return load_config(None, {**FAST, "data.train": [str(tiny)], **extra})


def test_train_exports_a_loadable_model(tiny: Path, tmp_path: Path, model, johns) -> None:
    run = tmp_path / "run"
    lines: list[str] = []
    result = train(_cfg(tiny), run, log=lines.append)
    for name in ("config.yaml", "run.json", "log.csv", "plots.png", "checkpoints/last.pt", "checkpoints/best.pt",
                 "checkpoints/reference.pt", "model/model.safetensors", "model/facefit-model.json",
                 "model/MODEL_CARD.md"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    log = (run / "log.csv").read_text().splitlines()
    assert len(log) == 4 and log[0].startswith("epoch,step")
    assert any("held-out persons" in ln for ln in lines)
    meta = json.loads((run / "run.json").read_text())
    assert meta["config_digest"] == _cfg(tiny).digest()
    tuned = create_model(run)  # the run folder loads directly
    assert tuned.contract.id != model.contract.id and tuned.contract.distance == "cosine"
    assert tuned.contract.architecture == "dlib-resnet" and "cosine" in tuned.contract.thresholds
    doc = json.loads((run / "model" / "facefit-model.json").read_text())
    assert doc["metadata"]["calibration"]["threshold_best_accuracy"] == tuned.contract.thresholds["cosine"]
    # 1:N search gets the stricter FAR 1e-3 threshold (the best of N comparisons lets more strangers through).
    strict = tuned.contract.thresholds["cosine@far_1e-3"]
    assert strict == doc["metadata"]["calibration"]["threshold_far_1e-3"] <= tuned.contract.thresholds["cosine"]
    assert tuned.contract.identification_threshold()[0] == strict
    assert result.best_epoch >= 1 and 0 <= result.best["accuracy"] <= 1
    chips = johns[0][:10]
    before, after = model.embed(chips), tuned.embed(chips)
    cos = (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert np.abs(before - after).max() > 1e-3  # it trained
    assert cos.mean() > 0.8  # and the distillation guard kept it near the pretrained embedding


def test_refuses_to_reuse_a_run_folder(tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists and is not empty"):
        train(_cfg(tiny), run)
    assert (run / "notes.txt").read_text() == "mine"
    with pytest.raises(UsageError, match="nothing to resume"):
        train(_cfg(tiny), run, resume=True)


def test_bad_data(tiny: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    one.mkdir()
    first = sorted(tiny.iterdir())[0]
    (one / first.name).symlink_to(first.resolve(), target_is_directory=True)
    with pytest.raises(FacefitError, match="at least 2 persons"):
        train(load_config(None, {**FAST, "data.train": [str(one)]}), tmp_path / "r1")
    with pytest.raises(FacefitError, match="unknown attribute"):
        train(_cfg(tiny, **{"data.filters": {"lighting": ["L1"]}}), tmp_path / "r2")
    with pytest.raises(FacefitError, match="no such folder"):
        train(load_config(None, {**FAST, "data.train": [str(tmp_path / "none")]}), tmp_path / "r3")


def test_resume_refuses_changed_data_and_works_from_any_folder(tiny: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "data"
    mine.mkdir()
    for person in sorted(tiny.iterdir()):
        (mine / person.name).symlink_to(person.resolve(), target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, {**FAST, "optim.epochs": 1, "data.train": ["data"]})  # relative, as typed
    assert cfg.data.train == [mine]  # stored absolute: a resume finds the same data from anywhere
    train(cfg, tmp_path / "run")
    monkeypatch.chdir("/")
    stored = load_config(tmp_path / "run" / "config.yaml")
    assert stored.digest() == cfg.digest()
    card = tmp_path / "run" / "model" / "MODEL_CARD.md"
    card.write_text(card.read_text() + "\nmy notes\n")
    with pytest.raises(UsageError, match="the run has finished and its model is in"):
        train(stored, tmp_path / "run", resume=True)  # a finished run's exported model is never rewritten
    assert card.read_text().endswith("my notes\n")
    sorted(mine.iterdir())[0].unlink()  # a person removed after the run started
    with pytest.raises(UsageError, match="the training images changed since the run started"):
        train(stored, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # the run is kept


def test_photos_without_faces_are_refused(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(3):
        (tmp_path / "noise" / f"p{k}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(
                tmp_path / "noise" / f"p{k}" / f"{i}.png")
    with pytest.raises(FacefitError, match="9 of 9 training images have no detected face"):
        train(load_config(None, {**FAST, "data.train": [str(tmp_path / "noise")]}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_trains_another_backbone_from_scratch(tiny: Path, tmp_path: Path) -> None:
    """A registered architecture without pretrained weights: its own alignment recipe, no guards, exported."""
    cfg = _cfg(tiny, **{"base": "mobilefacenet", "pretrained": False, "guard.distill_weight": 0,
                        "guard.freeze_stages": 0, "optim.epochs": 1, "optim.lr": 1e-3})
    result = train(cfg, tmp_path / "run", log=lambda _: None)
    tuned = create_model(tmp_path / "run")
    assert tuned.contract.architecture == "mobilefacenet" and tuned.contract.input_size == (112, 112)
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and result.steps > 0
    emb = tuned.embed(np.zeros((2, 112, 112, 3), np.uint8))
    assert emb.shape == (2, tuned.embedding_dim) and np.isfinite(emb).all()


def test_the_default_base_is_sface_with_its_guards(tiny: Path, tmp_path: Path) -> None:
    """No base named: SFace's recipe, BatchNorm statistics and the first blocks as loaded, the rest trained."""
    fast = {k: v for k, v in FAST.items() if k != "base"}
    cfg = load_config(None, {**fast, "optim.epochs": 1, "data.train": [str(tiny)]})
    assert cfg.base == "sface" and cfg.guard.bn == "frozen"
    train(cfg, tmp_path / "run", log=lambda _: None)
    tuned, base = create_model(tmp_path / "run"), create_model("sface")
    assert tuned.contract.architecture == "sface" and tuned.contract.align == base.contract.align
    after, before = tuned.state_dict(), base.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(after[k], before[k]) for k in stats)
    assert torch.equal(after["conv_1.conv.weight"], before["conv_1.conv.weight"])  # a frozen block
    assert not torch.equal(after["conv_14.conv.weight"], before["conv_14.conv.weight"])  # a trained one


def test_adapter_run_trains_only_low_rank_updates_and_exports_the_plain_model(tiny: Path, tmp_path: Path,
                                                                              johns) -> None:
    from facefit.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    lines: list[str] = []
    cfg = _cfg(tiny, **{"guard.adapter_rank": 4, "guard.freeze_stages": 4, "optim.lr": 1e-3, "optim.epochs": 2,
                        "optim.ema": 0.9})
    train(cfg, run, log=lines.append)
    assert any("rank-4 adapters on 9 layers" in ln for ln in lines)
    assert any(".parametrizations.weight.0.B" in k for k in load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    reference = load_checkpoint(run / "checkpoints" / "reference.pt")["model"]
    tuned = create_model(run)
    exported = tuned.state_dict()
    assert set(exported) == set(reference)  # merged: an ordinary dlib-resnet
    changed = {k for k in reference if not torch.equal(reference[k], exported[k])}
    # Only the adapted weights moved: convs of the last two stages and the fc, never an affine or a bias.
    assert changed and all(k.endswith(".weight") and k.startswith(("stages.3.", "stages.4.", "fc.")) and ".aff" not in k
                           for k in changed)
    emb = tuned.embed(johns[0][:4])
    assert np.isfinite(emb).all() and emb.shape == (4, 128)


def test_anchor_faces_are_aligned_distilled_and_logged(tiny: Path, tmp_path: Path, yale_files: list[Path]) -> None:
    from facefit.train.logs import TrainLog

    anchors = tmp_path / "anchors"
    anchors.mkdir()
    for f in yale_files[:12]:
        (anchors / f"{f.parent.name}_{f.name}").symlink_to(f)
    (anchors / "notes.txt").write_text("not a face")
    lines: list[str] = []
    train(_cfg(tiny, **{"guard.anchors": [str(anchors)], "guard.anchor_batch": 8, "guard.anchor_weight": 50,
                         "optim.epochs": 1}),
          tmp_path / "run", log=lines.append)
    assert any(ln.startswith("12 anchor faces from") for ln in lines)
    assert any("1 non-image file(s) ignored" in ln for ln in lines)
    row = TrainLog(tmp_path / "run", tensorboard=False).rows[0]
    assert float(row["anchor_loss"]) > 0  # the anchors went through student and teacher
    assert any("anchors " in ln for ln in lines if ln.startswith("epoch 1"))
    with pytest.raises(FacefitError, match="guard.anchors: no images under"):
        empty = tmp_path / "empty"
        empty.mkdir()
        train(_cfg(tiny, **{"guard.anchors": [str(empty)]}), tmp_path / "run2")
    assert not (tmp_path / "run2").exists()  # a run failing before its first epoch leaves nothing behind


def _launch(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "facefit.cli.app", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "FACEFIT_PROGRESS": "0", **(env or {})})


def _set_args(tiny: Path) -> list[str]:
    out = [str(tiny)]
    for k, v in {**FAST, "optim.ema": 0.9}.items():  # the weight average must resume exactly too
        out += ["--set", f"{k}={'null' if v is None else v}"]
    return out


@pytest.mark.slow
def test_killed_run_resumes_exactly(tiny: Path, tmp_path: Path) -> None:
    """SIGKILL after the first epoch, resume: the result equals the uninterrupted run's."""
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    proc = _launch([*_set_args(tiny), "--out", str(whole)])
    assert proc.wait(timeout=600) == 0, proc.stdout.read()
    proc = _launch([*_set_args(tiny), "--out", str(broken)])
    deadline = time.time() + 600
    while time.time() < deadline:
        log = broken / "log.csv"
        if log.exists() and len(log.read_text().splitlines()) >= 2 and (broken / "checkpoints" / "last.pt").exists():
            break
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed: " + proc.stdout.read())
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (broken / "model").exists()
    epochs_done = torch.load(broken / "checkpoints" / "last.pt", weights_only=False)["epoch"]
    assert epochs_done < 3
    proc = _launch(["--resume", str(broken)])
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    assert f"resuming {broken} after epoch {epochs_done}" in output
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=False)["model"]
    b = torch.load(broken / "checkpoints" / "last.pt", weights_only=False)["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    ema_a = torch.load(whole / "checkpoints" / "last.pt", weights_only=False)["ema"]
    ema_b = torch.load(broken / "checkpoints" / "last.pt", weights_only=False)["ema"]
    assert ema_a.keys() == ema_b.keys() and all(torch.allclose(ema_a[k], ema_b[k], atol=1e-5) for k in ema_a)
    assert (broken / "log.csv").read_text().count("\n") == 4  # the redone epochs are not logged twice
    proc = _launch(["--resume", str(broken), "--set", "optim.lr=0.1"])
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2 and "it cannot take --set" in out


@pytest.mark.slow
def test_two_processes_with_torchrun(tiny: Path, tmp_path: Path) -> None:
    """DDP on CPU with gloo: two ranks each take half of every batch; rank 0 validates and exports."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "facefit.cli.app", "train", *_set_args(tiny), "--set", "optim.epochs=1", "--out", str(run)]
    env = {**os.environ, "FACEFIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert create_model(run).embed(np.zeros((1, 150, 150, 3), np.uint8)).shape == (1, 128)
    assert len((run / "log.csv").read_text().splitlines()) == 2
