"""The shipped default model (SFace, measured best on the Korean pairs with LFW kept) and $FACEFIT_MODEL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def _run(*args: object, model: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FACEFIT_MODEL"}
    if model is not None:
        env["FACEFIT_MODEL"] = model
    return subprocess.run([sys.executable, "-m", "facefit.cli.app", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env)


def test_the_shipped_default_is_sface_and_the_environment_can_change_it(yale_dir: Path, tmp_path: Path) -> None:
    photo = yale_dir / "subject01" / "01_normal.png"
    proc = _run("embed", photo, "--out", tmp_path / "a.npz", model=None)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "a.npz") as z:
        assert str(z["contract_id"]).startswith("sface:") and str(z["detectors"][0]).startswith("yunet")
    proc = _run("embed", photo, "--out", tmp_path / "b.npz", model="dlib-resnet")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "b.npz") as z:
        assert str(z["contract_id"]).startswith("dlib-resnet:") and str(z["detectors"][0]).startswith("hog")


def test_default_model_reads_the_environment_at_call_time(monkeypatch) -> None:
    from facefit.defaults import SHIPPED_DEFAULT_MODEL, default_model

    monkeypatch.delenv("FACEFIT_MODEL", raising=False)
    assert default_model() == SHIPPED_DEFAULT_MODEL == "sface"
    monkeypatch.setenv("FACEFIT_MODEL", " my-run/ ")
    assert default_model() == "my-run/"
