"""Registry, factory, contracts, the weights cache and failures to find weights."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import facefit
from facefit.errors import ModelNotFoundError, WeightsNotFoundError
from facefit.models import EmbeddingContract, create_model, get_spec, list_models
from facefit.models.dlib_resnet import DLIB_RESNET_CONTRACT, DlibResNet


def test_registry_lists_dlib_resnet() -> None:
    assert "dlib-resnet" in list_models()
    assert "dlib-resnet" in list_models(pretrained=True)
    spec = get_spec("dlib-resnet")
    assert spec.pretrained is not None and spec.pretrained.asset.licence == "CC0-1.0"


def test_unknown_model_names_the_choices() -> None:
    for path in ("/missing/dir/x.dat", "runs/gone", "weights.dat"):  # paths: not "unknown model"
        with pytest.raises(ModelNotFoundError, match="no such model file or folder"):
            create_model(path)
    with pytest.raises(ModelNotFoundError, match="no model given"):
        create_model("")
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'dlib-resnt'.*did you mean 'dlib-resnet'"):
        create_model("dlib-resnt")


def test_existing_non_model_path_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a model"):
        create_model(tmp_path / "notes.txt")


def test_random_init_has_the_architecture() -> None:
    m = create_model("dlib-resnet", pretrained=False)
    assert isinstance(m, DlibResNet)
    assert sum(p.numel() for p in m.parameters()) == 5_614_592
    assert m.contract.weights_sha256 is None
    out = m.embed(np.zeros((2, 150, 150, 3), np.uint8))
    assert out.shape == (2, 128) and np.isfinite(out).all()


def test_pretrained_contract(model) -> None:
    c = model.contract
    assert c.input_size == (150, 150) and c.embedding_dim == 128 and not c.normalized
    assert c.std == (256.0, 256.0, 256.0)
    assert c.align.method == "dlib-chip" and c.align.size == 150 and c.align.padding == 0.25
    assert c.weights_sha256 == "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
    assert c.thresholds["euclidean"] == 0.6
    # The id is part of every stored embedding: it must not drift between releases unnoticed.
    assert c.id == "dlib-resnet:04e060c5023de2dc"


def test_contract_id_tracks_what_shapes_embeddings() -> None:
    base = DLIB_RESNET_CONTRACT
    assert replace(base, licence="other", thresholds={"euclidean": 0.5}).id == base.id
    assert replace(base, weights_sha256="ab" * 32).id != base.id
    assert replace(base, mean=(0.0, 0.0, 0.0)).id != base.id
    assert replace(base, align=replace(base.align, padding=0.3)).id != base.id


def test_contract_round_trip_and_tamper_check() -> None:
    c = DLIB_RESNET_CONTRACT.with_weights("cd" * 32)
    assert EmbeddingContract.from_json(c.to_json()) == c
    data = c.to_dict()
    data["embedding_dim"] = 512
    with pytest.raises(ValueError, match="does not match"):
        EmbeddingContract.from_dict(data)
    data = c.to_dict()
    data["surprise"] = 1
    with pytest.raises(ValueError, match="unknown contract fields"):
        EmbeddingContract.from_dict(data)


def test_weights_cache_is_used_and_rebuilt_when_damaged(johns) -> None:
    cache = Path(os.environ["FACEFIT_CACHE"]) / "weights"
    m1 = create_model("dlib-resnet")
    # The cache holds one file per converted weight file, named by the source's sha256 (other models' too).
    files = list(cache.glob("55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30.safetensors"))
    assert len(files) == 1
    files[0].write_bytes(b"garbage")
    m2 = create_model("dlib-resnet")  # damaged cache -> converted again, same weights
    chips = johns[0][:4]
    np.testing.assert_array_equal(m1.embed(chips), m2.embed(chips))
    assert files[0].stat().st_size > 20_000_000


def test_missing_weights_package_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEFIT_DLIB_MODELS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="face-recognition-models"):
        create_model("dlib-resnet")


def test_corrupt_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    src = (models_dir / "dlib_face_recognition_resnet_model_v1.dat").read_bytes()
    (tmp_path / "dlib_face_recognition_resnet_model_v1.dat").write_bytes(src[:-10] + b"0123456789")
    monkeypatch.setenv("FACEFIT_DLIB_MODELS", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="does not match"):
        create_model("dlib-resnet")


def test_user_supplied_dat_file(models_dir: Path, johns, model) -> None:
    m = create_model(models_dir / "dlib_face_recognition_resnet_model_v1.dat")
    assert m.contract.id == model.contract.id  # same weights, same preprocessing -> same contract
    np.testing.assert_array_equal(m.embed(johns[0][:3]), model.embed(johns[0][:3]))


def test_lazy_public_api() -> None:
    assert facefit.create_model is create_model
    assert callable(facefit.detect_and_align) and callable(facefit.load_image)
    with pytest.raises(AttributeError):
        facefit.no_such_thing  # noqa: B018
