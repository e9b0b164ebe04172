"""``create_model``: one entry point for registered names, model folders and dlib files."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from facefit.errors import ModelNotFoundError, WeightsNotFoundError
from facefit.io.assets import sha256_file, verified
from facefit.models import artifact
from facefit.models.base import FaceEmbedder
from facefit.models.onnx_weights import sface_onnx_state
from facefit.models.registry import get_spec, is_registered
from facefit.models.weights import dlib_dat_state

WeightReader = Callable[[FaceEmbedder, Path, str], dict[str, torch.Tensor]]

# How each PretrainedCfg.format becomes a state dict: reader(model, path, sha256), cached by the file's digest.
WEIGHT_READERS: dict[str, WeightReader] = {
    "dlib-dat": lambda model, path, digest: dlib_dat_state(model, path, digest)[0],
    "sface-onnx": sface_onnx_state,
}


def create_model(
    name: str | os.PathLike,
    pretrained: bool = True,
    *,
    device: str | torch.device | None = None,
    precision: str | None = None,
    checkpoint_path: str | os.PathLike | None = None,
) -> FaceEmbedder:
    """Build a face-embedding model.

    ``name`` is a registered name (see ``list_models()``), a facefit model folder
    (as written by ``save_model`` or ``facefit train``), or a dlib ``.dat`` file of
    the dlib ResNet. With ``pretrained=False`` a registered model is randomly
    initialised. The model is returned in eval mode, carrying its ``contract``.

    ``checkpoint_path`` loads another project's weights into a registered architecture through
    its ``checkpoint_filter_fn`` (e.g. an insightface ``backbone.pth`` into ``iresnet50``, a
    facenet-pytorch state dict into ``inception-resnet-v1``); ``"ARCH=PATH"`` as ``name`` is
    the same, so every command's ``--model`` takes it.

    ``precision`` (``auto``, ``fp32`` or ``bf16``; default $FACEFIT_PRECISION, else ``auto``) is what
    ``embed`` runs at; ``auto`` measures both once per machine and keeps bf16 only where it is faster.
    """
    from facefit.models.precision import requested_precision

    wanted = requested_precision(precision)  # a bad value fails before any weights are read
    text = os.fspath(name)
    if not text.strip():
        raise ModelNotFoundError("no model given: pass a registered name (see list_models()) or a path")
    if checkpoint_path is None and (ref := split_checkpoint_ref(text)) is not None:
        text, checkpoint_path = ref
    if checkpoint_path is not None:
        model = _from_checkpoint(text, Path(os.fspath(checkpoint_path)).expanduser())
    elif is_registered(text):
        model = _from_registry(text, pretrained)
    else:
        path = Path(text).expanduser()
        if artifact.is_model_dir(path):
            model = _from_model_dir(path)
        elif path.is_dir() and (path / "model").is_dir() and artifact.is_model_dir(path / "model"):
            model = _from_model_dir(path / "model")  # a training run folder
        elif path.is_file() and path.suffix == ".dat":
            model = _from_dlib_file(path)
        elif path.exists():
            raise ModelNotFoundError(
                f"{path}: not a model: expected a facefit model folder (with {artifact.META_FILE}) or a dlib .dat file"
            )
        elif os.sep in text or path.suffix in (".dat", ".json", ".safetensors"):
            raise ModelNotFoundError(f"{text}: no such model file or folder")  # a path, not a misspelt name
        else:
            get_spec(text)  # raises the "unknown model" error with suggestions
            raise AssertionError("unreachable")
    model.eval()
    if device is not None:
        model.to(device)
    model.set_precision(wanted)
    return model


def _from_registry(name: str, pretrained: bool) -> FaceEmbedder:
    spec = get_spec(name)
    model = spec.builder(spec.contract)
    if not pretrained:
        return model
    if spec.pretrained is None:
        raise WeightsNotFoundError(f"{name}: no pretrained weights ship with facefit; give a model folder or "
                                   f"peer checkpoint path instead, or train it from scratch (facefit train --base "
                                   f"{name} --set pretrained=false)")
    cfg = spec.pretrained
    reader = WEIGHT_READERS.get(cfg.format)
    if reader is None:
        raise WeightsNotFoundError(f"{name}: unsupported weight format {cfg.format!r}")
    path, digest = verified(cfg.asset)
    model.load_state_dict(reader(model, path, digest))
    model.contract = spec.contract.with_weights(digest)
    return model


def split_checkpoint_ref(text: str) -> tuple[str, str] | None:
    """``(arch, path)`` when ``text`` is ``ARCH=PATH`` (and not itself a path that exists), else None.

    An unknown ARCH or an empty PATH is an error naming it, not a model name to look up.
    """
    arch, sep, rest = text.partition("=")
    if not sep or Path(text).exists() or os.sep in arch:
        return None
    if not is_registered(arch.strip()):
        get_spec(arch.strip())  # "unknown model" for the architecture, with suggestions
    if not rest.strip():
        raise ModelNotFoundError(f"{text}: no checkpoint path after '='; give ARCH=PATH, e.g. iresnet50=backbone.pth")
    return arch.strip(), rest


def _from_checkpoint(name: str, path: Path) -> FaceEmbedder:
    """A registered architecture with weights from another project's file, adapted by the architecture."""
    spec = get_spec(name)
    if not path.exists():
        raise ModelNotFoundError(f"{path}: no such checkpoint file (for {name})")
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: not a regular file; give a checkpoint file (for {name})")
    if name == "dlib-resnet":
        return _from_dlib_file(path)  # a .dat carries its own colour mean
    digest = sha256_file(path)
    model = spec.builder(spec.contract)
    if spec.pretrained is not None:  # e.g. SFace's .onnx: the format the model's own weights come in
        read = WEIGHT_READERS[spec.pretrained.format]
        try:
            state = read(model, path, digest)
        except WeightsNotFoundError:
            raise
        except Exception as exc:  # a file of another format or a damaged one
            raise WeightsNotFoundError(f"{path}: not a {spec.pretrained.format} file for {name}: {exc}") from None
    else:
        state = _peer_state(name, spec.checkpoint_filter, model, path)
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise WeightsNotFoundError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. "
                                   f"{', '.join(bad[:3])}); a model cannot embed with them")
    model.load_state_dict(state)
    shipped = spec.pretrained is not None and spec.pretrained.asset.sha256 == digest
    # Thresholds were calibrated for the shipped weights: other weights must be calibrated anew (facefit eval).
    model.contract = replace(spec.contract, weights_sha256=digest, name=f"{name}:{path.stem}", source=str(path),
                             licence="see the checkpoint's source",
                             **({} if shipped else {"thresholds": {}}))
    return model


def _peer_state(name: str, adapt: Callable | None, model: FaceEmbedder, path: Path) -> dict[str, torch.Tensor]:
    """A PyTorch checkpoint (``torch.save`` of a state dict, possibly wrapped) adapted to ``model``."""
    if adapt is None:
        raise WeightsNotFoundError(f"{name}: takes no foreign checkpoints (it has no checkpoint_filter_fn)")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code from the file
    except Exception as exc:
        why = "it needs code or objects beyond tensors to load, which is refused" if "weights_only" in str(exc) \
            else "not a PyTorch checkpoint file"
        raise WeightsNotFoundError(f"{path}: cannot be read as a state dict: {why}") from None
    if not isinstance(raw, dict):
        raise WeightsNotFoundError(f"{path}: holds a {type(raw).__name__}, not a state dict")
    try:
        return adapt(raw, model)
    except ValueError as exc:
        raise WeightsNotFoundError(f"{path}: {exc}") from None


def _from_dlib_file(path: Path) -> FaceEmbedder:
    spec = get_spec("dlib-resnet")
    digest = sha256_file(path)
    probe = spec.builder(spec.contract)
    state, mean = dlib_dat_state(probe, path, digest)
    contract = replace(spec.contract, mean=mean, weights_sha256=digest, name=path.stem,
                       source=str(path), licence="see the file's source")
    model = spec.builder(contract)
    model.load_state_dict(state)
    return model


def _from_model_dir(path: Path) -> FaceEmbedder:
    from facefit.models.ensemble_io import is_ensemble, load_ensemble

    contract, meta = artifact.read_model_meta(path)
    if is_ensemble(contract):
        return load_ensemble(path, contract, meta)
    spec = get_spec(contract.architecture)
    model = spec.builder(contract)
    state = artifact.load_state(path, contract)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsNotFoundError(
            f"{path}: weights do not fit {contract.architecture} "
            f"(missing {len(missing)} keys, e.g. {missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]})"
        )
    return model
