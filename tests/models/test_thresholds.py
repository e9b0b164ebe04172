"""The one threshold policy: given, else calibrated for this model, else a configured default, else the model's."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from facefit.errors import FacefitError
from facefit.models.contract import EmbeddingContract
from facefit.models.thresholds import choose_threshold


@pytest.fixture
def contract(model) -> EmbeddingContract:  # dlib-resnet from conftest
    return replace(model.contract, thresholds={"euclidean": 0.6, "euclidean@far_1e-3": 0.5})


def _metrics(path: Path, contract_id: str, metric: str = "euclidean") -> Path:
    doc = {"models": {"m": {"contract": {"id": contract_id},
                            "calibration": {"metric": metric, "threshold_far_1e-3": 0.42,
                                            "threshold_best_accuracy": 0.55}}}}
    path.write_text(json.dumps(doc))
    return path


def test_the_order_given_calibrated_default_own(contract: EmbeddingContract, tmp_path: Path) -> None:
    cal = _metrics(tmp_path / "metrics.json", contract.id)
    assert choose_threshold(contract, "verify", given=0.3).value == 0.3
    got = choose_threshold(contract, "verify", calibration=cal, default=0.9)
    assert got.value == 0.42 and str(cal) in got.source and got.calibration is not None
    assert choose_threshold(contract, "verify", default=0.9, default_source="the server's setting").source \
        == "the server's setting"
    assert choose_threshold(contract, "verify").value == 0.6
    assert choose_threshold(contract, "identify").value == 0.5  # 1:N prefers the strict FAR 1e-3 one


def test_refusals_speak_of_values_not_options(contract: EmbeddingContract, tmp_path: Path) -> None:
    with pytest.raises(FacefitError, match="both a threshold and a calibration"):
        choose_threshold(contract, "verify", given=0.3, calibration=tmp_path / "m.json")
    other = _metrics(tmp_path / "other.json", "dlib-resnet:0000")
    with pytest.raises(FacefitError, match="not for this model"):
        choose_threshold(contract, "verify", calibration=other)
    cosine = _metrics(tmp_path / "cos.json", contract.id, metric="cosine")
    with pytest.raises(FacefitError, match="calibrated with the cosine distance"):
        choose_threshold(contract, "verify", calibration=cosine)
    bare = replace(contract, thresholds={})
    with pytest.raises(FacefitError, match="^no threshold: ") as err:
        choose_threshold(bare, "identify").require()
    assert "--" not in str(err.value)
