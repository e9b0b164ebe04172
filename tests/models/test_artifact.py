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
