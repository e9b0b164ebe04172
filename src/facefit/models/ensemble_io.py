"""An ensemble's model folder: ``facefit-model.json`` naming its members, and the members themselves.

A member that is a registered model (``sface``) is stored by name: its weights ship with a
package and are checked by digest when loaded. A member that is a model folder (a
fine-tuned run) is copied byte for byte into ``members/<i>/``, so the ensemble folder
is self-contained and each member's weights stay checked against its own contract.
Loading re-checks every member's contract id against the one the ensemble recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facefit.errors import OutputExistsError, WeightsNotFoundError
from facefit.models.artifact import FORMAT, FORMAT_VERSION, META_FILE, WEIGHTS_FILE
from facefit.models.contract import EmbeddingContract
from facefit.models.ensemble import ARCHITECTURE, EnsembleEmbedder

MEMBERS_DIR = "members"


@dataclass(frozen=True)
class MemberSource:
    """Where a member comes from: a registered name, or a facefit model folder to copy."""

    name: str | None = None
    folder: Path | None = None

    @property
    def shown(self) -> str:
        return self.name or str(self.folder)


def save_ensemble(model: EnsembleEmbedder, sources: list[MemberSource], out_dir: str | Path, *,
                  metadata: dict[str, Any] | None = None, card: str | None = None) -> Path:
    """Write the ensemble folder atomically (a temporary sibling folder, renamed at the end)."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        refs: list[dict[str, str]] = []
        for i, src in enumerate(sources):
            if src.name is not None:
                refs.append({"registered": src.name})
                continue
            dest = tmp / MEMBERS_DIR / str(i)
            dest.mkdir(parents=True)
            for f in (WEIGHTS_FILE, META_FILE, "MODEL_CARD.md"):
                if (src.folder / f).is_file():
                    shutil.copy2(src.folder / f, dest / f)
            refs.append({"folder": f"{MEMBERS_DIR}/{i}"})
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "contract": model.contract.to_dict(),
               "metadata": {**(metadata or {}), "ensemble": {"members": refs, "weights": list(model.weights)}}}
        (tmp / META_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True))
        if card:
            (tmp / "MODEL_CARD.md").write_text(card)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def is_ensemble(contract: EmbeddingContract) -> bool:
    return contract.architecture == ARCHITECTURE


def load_ensemble(path: Path, contract: EmbeddingContract, metadata: dict[str, Any]) -> EnsembleEmbedder:
    """The ensemble of the folder ``path``; a missing or altered member is an error that names it."""
    from facefit.models.factory import create_model

    spec = metadata.get("ensemble") or {}
    refs, weights = spec.get("members"), spec.get("weights")
    if not isinstance(refs, list) or not isinstance(weights, list) or len(refs) != len(contract.members):
        raise WeightsNotFoundError(f"{path / META_FILE}: the ensemble's member list is missing or inconsistent")
    members = []
    for i, (ref, want) in enumerate(zip(refs, contract.members)):
        label = f"{path}: member {i + 1} ({want.get('name', '?')})"
        if "registered" in ref:
            source = str(ref["registered"])
        else:
            folder = path / str(ref.get("folder", ""))
            if not (folder / META_FILE).is_file():
                raise WeightsNotFoundError(f"{label}: {folder} is missing; the ensemble folder is incomplete")
            source = str(folder)
        try:
            member = create_model(source)
        except WeightsNotFoundError as exc:
            raise WeightsNotFoundError(f"{label}: {exc}") from None
        if member.contract.id != want.get("id"):
            raise WeightsNotFoundError(f"{label}: its contract is {member.contract.id}, the ensemble was made with "
                                       f"{want.get('id')}; the member was altered or replaced")
        members.append(member)
    model = EnsembleEmbedder(members, [float(w) for w in weights], contract)
    if EnsembleEmbedder(members, weights).contract.id != contract.id:  # the id follows members and weights
        raise WeightsNotFoundError(f"{path / META_FILE}: the ensemble's contract does not match its members and "
                                   f"weights; the description was edited")
    return model
