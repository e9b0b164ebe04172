"""The facefit model folder: save, load by path, tamper detection, no silent overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facefit.errors import OutputExistsError, WeightsNotFoundError
from facefit.models import create_model, save_model
from facefit.models.artifact import META_FILE, WEIGHTS_FILE


def test_round_trip(model, johns, tmp_path: Path) -> None:
    out = save_model(model.__class__(model.contract), tmp_path / "random")  # a different (random) model
    assert (out / WEIGHTS_FILE).is_file() and (out / META_FILE).is_file()
    saved = save_model(create_model("dlib-resnet"), tmp_path / "m", metadata={"note": "test"})
    loaded = create_model(saved)
    chips = johns[0][:5]
    np.testing.assert_array_equal(loaded.embed(chips), model.embed(chips))
    meta = json.loads((saved / META_FILE).read_text())
    assert meta["metadata"] == {"note": "test"}
    assert loaded.contract.weights_sha256 == meta["contract"]["weights_sha256"]
    # a re-saved model has its own digest, so its contract id differs from the .dat's
    assert loaded.contract.id != model.contract.id


def test_refuses_to_overwrite(model, tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(OutputExistsError):
        save_model(model, target)
    assert (target / "keep.txt").read_text() == "user data"
    assert not any(p.name.startswith(".m.tmp") for p in tmp_path.iterdir())


def test_tampered_weights_are_detected(model, tmp_path: Path) -> None:
    saved = save_model(create_model("dlib-resnet"), tmp_path / "m")
    data = bytearray((saved / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (saved / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsNotFoundError, match="does not match"):
        create_model(saved)


def test_unreadable_description(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / META_FILE).write_text("{not json")
    with pytest.raises(WeightsNotFoundError, match="cannot read model description"):
        create_model(tmp_path / "m")


def test_flip_average_contract(model, johns, tmp_path: Path) -> None:
    from dataclasses import replace

    from facefit.models.contract import EmbeddingContract

    flipped = create_model("dlib-resnet")
    flipped.contract = replace(flipped.contract, flip_average=True)
    # the flag is part of the id, and only when set (earlier ids stay valid)
    assert flipped.contract.id != model.contract.id
    assert replace(flipped.contract, flip_average=False).id == model.contract.id
    assert EmbeddingContract.from_json(flipped.contract.to_json()) == flipped.contract
    chips = johns[0][:6]
    got = flipped.embed(chips, batch_size=4)
    want = (model.embed(chips) + model.embed(np.ascontiguousarray(chips[:, :, ::-1]))) / 2
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(flipped.embed(np.ascontiguousarray(chips[:, :, ::-1])), got, atol=1e-5)
    assert not np.allclose(got, model.embed(chips), atol=1e-3)
    # the exported folder keeps the flag, so every consumer embeds the same way
    loaded = create_model(save_model(flipped, tmp_path / "flip"))
    assert loaded.contract.flip_average
    np.testing.assert_allclose(loaded.embed(chips), got, atol=1e-5)
