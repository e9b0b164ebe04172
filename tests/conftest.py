"""Shared fixtures: the real face data in ../shared/data, dlib's reference implementation, the model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    for cand in (os.environ.get("FACEFIT_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "fixtures").is_dir():
            return Path(cand)
    return None


DATA = _data_root()

# Most tests were written against dlib-resnet's numbers (its 0.6 threshold, its contract id); they pin it as
# the default model. tests/cli/test_default_model.py checks the shipped default without this.
os.environ["FACEFIT_MODEL"] = "dlib-resnet"
# The tests check exactness against dlib, onnxruntime and OpenCV (1e-4 and below), which bf16 would not meet on
# a machine where `auto` picks it; tests/models/test_precision.py exercises auto and bf16 explicitly.
os.environ["FACEFIT_PRECISION"] = "fp32"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests use their own weights cache, so the cache path itself is exercised from cold."""
    os.environ["FACEFIT_CACHE"] = str(tmp_path_factory.mktemp("facefit-cache"))
    os.environ["FACEFIT_PROGRESS"] = "0"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if DATA is None:
        if os.environ.get("FACEFIT_REQUIRE_DATA") == "1":
            pytest.fail("../shared/data is missing but FACEFIT_REQUIRE_DATA=1 (CI must have the real faces)")
        pytest.skip("real face data (../shared/data) not available")
    return DATA


@pytest.fixture(scope="session")
def lfw(data_root: Path) -> Path:
    """LFW's images folder (one sub-folder per person)."""
    folder = data_root / "lfw" / "images"
    if not folder.is_dir():
        pytest.skip("LFW images not available")
    return folder


@pytest.fixture(scope="session")
def johns_dir(data_root: Path) -> Path:
    return data_root / "fixtures" / "johns"


@pytest.fixture(scope="session")
def yale_dir(data_root: Path) -> Path:
    return data_root / "fixtures" / "yale" / "original"


@pytest.fixture(scope="session")
def johns(johns_dir: Path) -> tuple[np.ndarray, list[str], list[Path]]:
    """dlib's example chips: (chips uint8 N x 150 x 150 x 3, person labels, paths)."""
    from facefit.io import load_image

    paths = sorted(johns_dir.glob("*/*.jpg"))
    chips = np.stack([load_image(p) for p in paths])
    return chips, [p.parent.name for p in paths], paths


@pytest.fixture(scope="session")
def yale_files(yale_dir: Path) -> list[Path]:
    return sorted(yale_dir.glob("*/*.png"))


@pytest.fixture(scope="session")
def model():
    from facefit import create_model

    return create_model("dlib-resnet")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    from facefit.io.assets import models_dir as find

    folder = find()
    assert folder is not None and folder.is_dir(), "face-recognition-models is not installed"
    return folder


@pytest.fixture(scope="session")
def dlib_ref(models_dir: Path):
    """dlib's own detector, 5-point predictor and face recogniser: the reference implementation."""
    import dlib

    class Ref:
        detector = dlib.get_frontal_face_detector()
        predictor = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))
        recognizer = dlib.face_recognition_model_v1(str(models_dir / "dlib_face_recognition_resnet_model_v1.dat"))

        def descriptor(self, chip: np.ndarray) -> np.ndarray:
            return np.array(self.recognizer.compute_face_descriptor(np.ascontiguousarray(chip)))

    return Ref()
