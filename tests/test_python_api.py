"""The one-call API on real photos: represent, verify, identify."""

from __future__ import annotations

from pathlib import Path

import pytest

import facefit
from facefit.errors import FacefitError


@pytest.mark.parametrize("name", ["dlib-resnet", "sface"])
def test_represent_uses_the_models_own_crop(yale_dir: Path, name: str) -> None:
    got = facefit.represent(yale_dir / "subject01" / "01_normal.png", model=name)
    model = facefit.create_model(name)
    assert len(got) == 1 and got[0].contract_id == model.contract.id
    assert got[0].embedding.shape == (model.embedding_dim,) and got[0].landmarks.shape == (5, 2)
    assert got[0].detector.startswith(model.contract.align.own_detector)


@pytest.mark.parametrize("name", ["dlib-resnet", "sface"])
def test_verify_same_and_different_persons(yale_dir: Path, name: str) -> None:
    a = sorted((yale_dir / "subject01").glob("*.png"))
    b = sorted((yale_dir / "subject02").glob("*.png"))
    same = facefit.verify(a[0], a[3], model=name)
    other = facefit.verify(a[0], b[0], model=name)
    assert same.same and not other.same and same.distance < other.distance
    assert same.threshold == other.threshold and "own" in same.threshold_source
    forced = facefit.verify(a[0], a[3], model=name, threshold=1e-6)
    assert not forced.same and forced.threshold_source == "given"


def test_identify_from_a_gallery(yale_dir: Path, tmp_path: Path) -> None:
    from facefit.gallery.gallery import Gallery

    model = facefit.create_model("sface")
    with Gallery.open(tmp_path / "g.sqlite") as g:
        for who in ("subject01", "subject02", "subject03"):
            g.add(who, [sorted((yale_dir / who).glob("*.png"))[0]], model)
    probe = sorted((yale_dir / "subject02").glob("*.png"))[4]
    answers = facefit.identify(probe, gallery=tmp_path / "g.sqlite")
    assert len(answers) == 1 and answers[0].name == "subject02"
    stranger = sorted((yale_dir / "subject09").glob("*.png"))[0]
    assert facefit.identify(stranger, gallery=tmp_path / "g.sqlite", threshold=0.2)[0].name is None
    typo = tmp_path / "g2.sqlite"
    with pytest.raises(FacefitError):
        facefit.identify(probe, gallery=typo)
    assert not typo.exists()  # reading a misspelt gallery never creates one


def test_a_threshold_that_is_not_a_number_is_refused(yale_dir: Path) -> None:
    a = sorted((yale_dir / "subject01").glob("*.png"))
    with pytest.raises(FacefitError, match="not a finite number"):
        facefit.verify(a[0], a[3], model="dlib-resnet", threshold=float("nan"))


def test_public_api_names() -> None:
    from facefit.eval import verification_metrics

    assert callable(verification_metrics)
    for name in facefit.__all__:
        assert getattr(facefit, name) is not None
