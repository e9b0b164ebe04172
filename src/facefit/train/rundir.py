"""The run folder: created for a new run, checked for a resumed one, removed again after a failed start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

from facefit.errors import UsageError
from facefit.io.files import check_creatable
from facefit.train.config import TrainConfig, load_config

CKPT_DIR = "checkpoints"


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def is_fresh(run_dir: Path, resume: bool) -> bool:
    """Whether a run here would start a new folder (absent or empty), not continue one."""
    return not resume and not (run_dir.exists() and run_dir.is_dir() and any(run_dir.iterdir()))


RESUMABLE = ("device", "workers")  # where a resumed run may run differently; everything else is the run's own


def resume_config(run_dir: Path, *, changed: Sequence[str] = (), overrides: dict[str, object] | None = None
                  ) -> TrainConfig:
    """The config a resumed run continues with: its own ``config.yaml``, exactly.

    ``changed`` names settings the caller was asked to change (data, output folder, config values): any is
    an error, since a run cannot change mid-way. ``overrides`` may set only ``RESUMABLE`` keys.
    """
    if changed:
        raise UsageError(f"{run_dir}: a resumed run continues with its own data, folder and config.yaml; "
                         f"it cannot take {', '.join(changed)}")
    wrong = sorted(k for k in (overrides or {}) if k not in RESUMABLE)
    if wrong:
        raise UsageError(f"{run_dir}: a resumed run cannot change {', '.join(wrong)} (only {', '.join(RESUMABLE)})")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise UsageError(f"{run_dir}: not a run folder (no config.yaml), nothing to resume")
    return load_config(cfg_path, {k: v for k, v in (overrides or {}).items() if v is not None})


def prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool, command: str) -> None:
    """A new run gets ``config.yaml`` and ``run.json``; a resumed one must have been started with ``cfg``."""
    import yaml

    cfg_path = run_dir / "config.yaml"
    if resume:
        if not (run_dir / CKPT_DIR / "last.pt").is_file():
            raise UsageError(f"{run_dir}: nothing to resume (no {CKPT_DIR}/last.pt)")
        stored = load_config(cfg_path)
        if stored.digest() != cfg.digest():
            raise UsageError(f"{run_dir} was started with another config (digest {stored.digest()}, this one "
                             f"{cfg.digest()}); resume with the same config, or start a new run folder")
        return
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(f"{run_dir}: already exists and is not empty; continue it with --resume, "
                         f"or choose another --out")
    check_creatable(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{run_dir}: cannot create the run folder: {exc.strerror or exc}") from None
    cfg_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    import facefit

    meta = {"facefit_version": facefit.__version__, "git_revision": git_revision(), "command": command,
            "config_digest": cfg.digest(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch": torch.__version__}
    (run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")


def remove_failed_start(run_dir: Path, existed: bool) -> None:
    """Take away a fresh run's folder when it failed before saving an epoch, so the command can be rerun.

    A folder that existed (empty) before the run is emptied, not removed. Only rank 0 removes.
    """
    if not run_dir.is_dir() or (run_dir / CKPT_DIR / "last.pt").exists() or os.environ.get("RANK", "0") != "0":
        return
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for child in run_dir.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
