"""Loading weights into registered architectures, with a converted-weights cache."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from facefit.errors import WeightsNotFoundError
from facefit.io.assets import cache_dir, sha256_file
from facefit.models.base import FaceEmbedder
from facefit.models.dlib_dat import DatFormatError, read_dlib_dat

log = logging.getLogger(__name__)


def _cache_path(digest: str) -> Path:
    return cache_dir() / "weights" / f"{digest}.safetensors"


def _save_cache(path: Path, state: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:  # a read-only cache only costs speed
        log.warning("could not write the weights cache %s: %s", path, exc)


def _load_cache(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        return state, meta
    except Exception as exc:  # noqa: BLE001 - any damage to a cache file means "rebuild it"
        log.warning("ignoring a damaged weights cache %s (%s); converting again", path, exc)
        return None


def dlib_dat_state(model: FaceEmbedder, path: Path, digest: str | None = None) -> tuple[dict, tuple[float, ...]]:
    """State dict and input means for ``model`` from a dlib ``.dat`` file, via the cache.

    The cache is keyed by the ``.dat`` file's sha256, so a changed file never
    reuses a stale conversion.
    """
    from facefit.models.dlib_resnet import checkpoint_filter_fn

    digest = digest or sha256_file(path)
    cached = _load_cache(_cache_path(digest))
    if cached is not None:
        state, meta = cached
        return state, tuple(json.loads(meta["mean_rgb"]))
    try:
        net = read_dlib_dat(path)
        state = checkpoint_filter_fn(net.layers, model)  # type: ignore[arg-type]
    except (DatFormatError, ValueError) as exc:
        raise WeightsNotFoundError(f"{path}: not a dlib face-recognition ResNet file: {exc}") from None
    mean = tuple(float(v) for v in net.layers[0].params["mean_rgb"])
    _save_cache(_cache_path(digest), state, {"mean_rgb": json.dumps(mean), "source_sha256": digest})
    return state, mean
