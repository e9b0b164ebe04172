"""The ``.npz`` embedding file: arrays plus the contract they were made under."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from facefit.errors import FacefitError
from facefit.io.files import write_with

FORMAT_VERSION = 1


@dataclass
class EmbeddingFile:
    paths: np.ndarray  # str (N,)
    embeddings: np.ndarray  # float32 (N, D)
    contract: dict
    arrays: dict[str, np.ndarray]  # every array in the file

    @property
    def contract_id(self) -> str:
        return self.contract["id"]


def save_embeddings(path: str | Path, *, paths: list[str], embeddings: np.ndarray, contract_json: str,
                    extra: dict[str, np.ndarray] | None = None) -> None:
    """Write an embedding file atomically (the caller checked that it may be written)."""
    arrays: dict[str, np.ndarray] = {
        "paths": np.asarray(paths, dtype=str),
        "embeddings": np.asarray(embeddings, dtype=np.float32),
        "contract": np.asarray(contract_json),
        "contract_id": np.asarray(json.loads(contract_json)["id"]),
        "format_version": np.asarray(FORMAT_VERSION),
        "created": np.asarray(datetime.now(UTC).isoformat(timespec="seconds")),
    }
    for k, v in (extra or {}).items():
        arrays[k] = np.asarray(v)

    def writer(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    write_with(path, writer)


def load_embeddings(path: str | Path) -> EmbeddingFile:
    """Read an embedding file written by ``facefit embed``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise FacefitError(f"{path}: not a readable embedding file: {exc}") from None
    missing = {"paths", "embeddings", "contract"} - set(arrays)
    if missing:
        raise FacefitError(f"{path}: not a facefit embedding file (missing {', '.join(sorted(missing))})")
    return EmbeddingFile(arrays["paths"], arrays["embeddings"], json.loads(str(arrays["contract"])), arrays)
