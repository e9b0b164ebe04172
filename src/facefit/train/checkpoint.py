"""Checkpoints: everything needed to continue a run exactly, written atomically."""

from __future__ import annotations

import os
import pickle
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefit.errors import FacefitError

CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file beside ``path``, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own files hold numpy RNG state and plain containers: weights_only cannot restore them.
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise FacefitError(f"{path}: not a readable facefit checkpoint ({reason})") from None
    version = state.get("version") if isinstance(state, dict) else None
    if version != CHECKPOINT_VERSION:
        raise FacefitError(f"{path}: checkpoint version {version}, expected {CHECKPOINT_VERSION}")
    return state


@dataclass
class Progress:
    """Where a run stands; saved in ``last.pt`` after every epoch, under the keys older checkpoints used."""

    epoch: int = 0  # epochs completed
    step: int = 0
    elapsed: float = 0.0  # seconds, over all sessions of the run
    best: float | None = None  # the best value of the selection metric so far
    best_epoch: int = -1
    stale: int = 0  # epochs since the best one
    best_metrics: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> Progress:
        return cls(state["epoch"], state["step"], state["elapsed"], state["best"], state["best_epoch"],
                   state["stale"], state["best_metrics"], bool(state.get("finished")))

    def to_checkpoint(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "elapsed": self.elapsed, "best": self.best,
                "best_epoch": self.best_epoch, "stale": self.stale, "best_metrics": self.best_metrics,
                "finished": self.finished}
