"""Loading weights into registered architectures, with a converted-weights cache."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

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
    except Exception as exc:  # any damage to a cache file means "rebuild it"
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


WRAPPER_KEYS = ("state_dict_backbone", "state_dict", "model", "backbone")  # training checkpoints nest the weights
TRAINING_PREFIXES = ("module.", "backbone.", "_orig_mod.")  # DataParallel/DDP, wrapper modules, torch.compile


def match_checkpoint(
    state_dict: Mapping[str, object],
    model: nn.Module,
    *,
    strip: Iterable[str] = TRAINING_PREFIXES,
    drop: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """Adapt a foreign PyTorch checkpoint to ``model``'s state dict, or raise ``ValueError`` saying why not.

    Unwraps ``{"state_dict": ...}``-style training checkpoints, strips the ``strip``
    prefixes (repeatedly, so ``module.backbone.`` goes too), discards keys starting
    with any ``drop`` prefix, and fills a missing ``num_batches_tracked`` from the
    model (checkpoints from before PyTorch 0.4.1 lack it; it does not change outputs).
    Any other missing, unexpected or mis-shaped key is an error listing examples.
    """
    strip, drop = tuple(strip), tuple(drop)
    sd: Mapping[str, object] = state_dict
    while not all(isinstance(v, torch.Tensor) for v in sd.values()):
        inner = next((sd[k] for k in WRAPPER_KEYS if isinstance(sd.get(k), Mapping)), None)
        if inner is None:
            bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)][:3]
            raise ValueError(f"not a state dict: entries {bad} are not tensors and no known wrapper key "
                             f"({', '.join(WRAPPER_KEYS)}) holds the weights")
        sd = inner

    out: dict[str, torch.Tensor] = {}
    dropped = 0
    for key, value in sd.items():
        name = key
        while any(name.startswith(p) for p in strip):
            name = name[len(next(p for p in strip if name.startswith(p))):]
        if drop and name.startswith(drop):
            dropped += 1
            continue
        if name in out:
            raise ValueError(f"checkpoint key {key!r} collides with another after stripping prefixes {strip}")
        out[name] = value

    own = model.state_dict()
    for name, value in own.items():
        if name.endswith("num_batches_tracked") and name not in out:
            out[name] = value.clone()
    missing = [k for k in own if k not in out]
    unexpected = [k for k in out if k not in own]
    shapes = [f"{k}: checkpoint {tuple(out[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in out and out[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        arch = getattr(getattr(model, "contract", None), "architecture", type(model).__name__)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:4])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:3])})")
        raise ValueError(f"checkpoint does not fit {arch} ({len(own)} keys; {dropped} dropped): " + "; ".join(parts))
    return out
