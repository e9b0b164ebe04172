"""facefit's self-describing model folder: ``model.safetensors`` + ``facefit-model.json``.

The JSON holds the embedding contract (whose ``weights_sha256`` is the digest of
the safetensors file, checked on load) and free-form metadata such as calibrated
thresholds and a model card. Fine-tuned models are exported in this form.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from facefit.errors import OutputExistsError, WeightsNotFoundError
from facefit.io.assets import sha256_file
from facefit.models.base import FaceEmbedder
from facefit.models.contract import EmbeddingContract

FORMAT = "facefit-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "facefit-model.json"


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / META_FILE).is_file()


def save_model(model: FaceEmbedder, out_dir: str | Path, *, overwrite: bool = False,
               metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a facefit model folder; never leaves a half-written folder."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        contract = replace(model.contract, weights_sha256=sha256_file(tmp / WEIGHTS_FILE))
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "contract": contract.to_dict(),
               "metadata": metadata or {}}
        (tmp / META_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True))
        if not out.exists():
            os.replace(tmp, out)
        else:
            out.mkdir(exist_ok=True)
            os.replace(tmp / WEIGHTS_FILE, out / WEIGHTS_FILE)
            os.replace(tmp / META_FILE, out / META_FILE)  # last: the folder is valid only once both match
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    model.contract = contract
    return out


def read_model_meta(path: str | Path) -> tuple[EmbeddingContract, dict[str, Any]]:
    """The contract and metadata of a facefit model folder."""
    meta_path = Path(path) / META_FILE
    try:
        doc = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsNotFoundError(f"{meta_path}: cannot read model description: {exc}") from None
    if doc.get("format") != FORMAT or doc.get("format_version", 0) > FORMAT_VERSION:
        raise WeightsNotFoundError(
            f"{meta_path}: not a facefit model description this version can read "
            f"(format {doc.get('format')!r} v{doc.get('format_version')})"
        )
    try:
        contract = EmbeddingContract.from_dict(doc["contract"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsNotFoundError(f"{meta_path}: invalid contract: {exc}") from None
    return contract, doc.get("metadata", {})


def load_state(path: str | Path, contract: EmbeddingContract) -> dict:
    """Load and verify the weights of a facefit model folder against its contract."""
    from safetensors.torch import load_file

    weights = Path(path) / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsNotFoundError(f"{weights}: missing")
    digest = sha256_file(weights)
    if contract.weights_sha256 and digest != contract.weights_sha256:
        raise WeightsNotFoundError(
            f"{weights}: sha256 {digest[:12]}... does not match the contract's {contract.weights_sha256[:12]}...; "
            f"the folder is damaged or its files come from different models"
        )
    try:
        return load_file(str(weights))
    except Exception as exc:  # any parse failure is a damaged file
        raise WeightsNotFoundError(f"{weights}: cannot read: {exc}") from None
