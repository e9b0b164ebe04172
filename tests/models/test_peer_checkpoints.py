"""Other projects' weights from a file: ``create_model(name, checkpoint_path=...)`` and ``--model ARCH=PATH``.

No peer weights ship, so the checkpoints are written here the way the peers save them (insightface's
``backbone.pth`` is a bare state dict, DataParallel adds ``module.``) with random values, and the
loaded model must hold exactly those values and embed exactly as a model given them directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.models.test_backbones import chips_for, randomised_state

from facefit.errors import ModelNotFoundError, WeightsNotFoundError
from facefit.models import create_model


@pytest.fixture(scope="module")
def mbf_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    model = create_model("mobilefacenet", pretrained=False)
    state = randomised_state(model, seed=3)
    path = tmp_path_factory.mktemp("peer") / "backbone.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # a DDP training checkpoint
    return path, state


def test_checkpoint_path_loads_the_files_values(mbf_checkpoint) -> None:
    path, state = mbf_checkpoint
    model = create_model("mobilefacenet", checkpoint_path=path, precision="fp32")
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    direct = create_model("mobilefacenet", pretrained=False, precision="fp32")
    direct.load_state_dict(state)
    chips = chips_for(model, 4)
    np.testing.assert_array_equal(model.embed(chips), direct.embed(chips))
    c = model.contract
    assert c.source == str(path) and c.name == "mobilefacenet:backbone" and c.weights_sha256
    assert c.id != direct.contract.id  # other weights, another contract: a gallery never mixes them


def test_arch_equals_path_is_the_same(mbf_checkpoint) -> None:
    path, _ = mbf_checkpoint
    a = create_model(f"mobilefacenet={path}")
    b = create_model("mobilefacenet", checkpoint_path=path)
    assert a.contract.id == b.contract.id


def test_bad_checkpoints_are_one_clear_error(tmp_path: Path, mbf_checkpoint) -> None:
    missing = tmp_path / "none.pth"
    with pytest.raises(ModelNotFoundError, match="no such checkpoint file"):
        create_model(f"mobilefacenet={missing}")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="notes.pth: cannot be read as a state dict"):
        create_model("mobilefacenet", checkpoint_path=text)
    path, _ = mbf_checkpoint
    with pytest.raises(WeightsNotFoundError, match=r"backbone.pth: checkpoint does not fit iresnet50 .*missing"):
        create_model("iresnet50", checkpoint_path=path)  # another architecture's weights


def test_cli_model_takes_arch_equals_path(mbf_checkpoint, yale_files: list[Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    from tests.reliability.cli_run import cli

    from facefit.io.embeddings import load_embeddings

    path, _ = mbf_checkpoint
    out = tmp_path / "e.npz"
    code, _, err = cli(["embed", *yale_files[:2], "--model", f"mobilefacenet={path}", "--out", out], capsys)
    assert code == 0, err
    got = load_embeddings(out)
    assert got.embeddings.shape == (2, 512)
    assert got.contract["source"] == str(path)


def test_a_gallery_made_with_a_peer_checkpoint_finds_it_again(mbf_checkpoint, yale_files: list[Path],
                                                              tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from tests.reliability.cli_run import cli

    path, _ = mbf_checkpoint
    gallery = tmp_path / "g.sqlite"
    normal = [p for p in yale_files if p.name.endswith("normal.png")]
    code, _, err = cli(["gallery", "add", "alice", normal[0], "-g", gallery, "--model", f"mobilefacenet={path}"],
                       capsys)
    assert code == 0, err
    # No --model: the gallery remembers ARCH=PATH. Other weights than a model's own carry no calibrated
    # threshold, so one is given.
    code, out, err = cli(["identify", normal[1], "-g", gallery, "--json", "--threshold", "10"], capsys)
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["name"] == "alice"


def test_a_dat_file_is_the_same_model_however_it_is_named(models_dir: Path) -> None:
    dat = models_dir / "dlib_face_recognition_resnet_model_v1.dat"
    assert create_model(f"dlib-resnet={dat}").contract.id == create_model(str(dat)).contract.id


def test_only_the_shipped_weights_keep_the_shipped_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    from facefit.io.assets import verified
    from facefit.models import factory
    from facefit.models.sface import SFACE_ONNX

    shipped, _ = verified(SFACE_ONNX)
    own = create_model("sface").contract.thresholds
    assert own and create_model(f"sface={shipped}").contract.thresholds == own
    monkeypatch.setattr(factory, "sha256_file", lambda path: "0" * 64)  # the same format, other weights
    assert create_model(f"sface={shipped}").contract.thresholds == {}


def test_labels_of_peer_checkpoints_name_the_architecture() -> None:
    from facefit.eval.labels import model_labels

    assert model_labels(["iresnet50=a/backbone.pth", "mobilefacenet=b/backbone.pth", "sface"]) == \
        ["iresnet50:backbone", "mobilefacenet:backbone", "sface"]


def test_damaged_and_unsafe_checkpoints_are_refused(tmp_path: Path, mbf_checkpoint) -> None:
    _, state = mbf_checkpoint
    nan = tmp_path / "nan.pth"
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, nan)
    with pytest.raises(WeightsNotFoundError, match="nan.pth: .* hold NaN or infinite values"):
        create_model(f"mobilefacenet={nan}")

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    unsafe = tmp_path / "unsafe.pth"
    torch.save({"w": Payload()}, unsafe)
    with pytest.raises(WeightsNotFoundError, match="unsafe.pth: cannot be read as a state dict: it needs code"):
        create_model(f"mobilefacenet={unsafe}")
    with pytest.raises(ModelNotFoundError, match="no checkpoint path after '='"):
        create_model("iresnet50=")
    with pytest.raises(ModelNotFoundError, match="unknown model 'foo'"):
        create_model("foo=bar.pth")
    with pytest.raises(ModelNotFoundError, match="not a regular file"):
        create_model(f"mobilefacenet={tmp_path}")
