"""``facefit ensemble`` end to end on real faces, and its bad input, as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facefit.cli.app", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("facefit: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_ensemble_of_sface_and_dlib_calibrated_on_yale(yale_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ens"
    proc = run("ensemble", "sface", "dlib-resnet", "--out", out, "--calibrate", yale_dir)
    assert proc.returncode == 0, proc.stderr
    assert "weight" in proc.stdout and "held-out ensemble" in proc.stdout
    meta = json.loads((out / "facefit-model.json").read_text())
    contract = meta["contract"]
    assert contract["architecture"] == "ensemble" and contract["embedding_dim"] == 256
    weights = meta["metadata"]["ensemble"]["weights"]
    assert abs(sum(weights) - 1) < 1e-9 and all(w > 0 for w in weights)
    assert {"cosine", "cosine@far_1e-3"} <= set(contract["thresholds"])
    assert meta["metadata"]["ensemble"]["members"] == [{"registered": "sface"}, {"registered": "dlib-resnet"}]
    assert (out / "MODEL_CARD.md").is_file()
    # It works where a model works: embed finds each face once and cuts both members' chips.
    photos = sorted((yale_dir / "subject01").glob("*.png"))[:2]
    proc = run("embed", *photos, "--model", out, "--out", tmp_path / "e.npz")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "e.npz") as z:
        assert z["embeddings"].shape == (2, 256) and str(z["contract_id"]).startswith("ensemble:")
        assert np.allclose(np.linalg.norm(z["embeddings"], axis=1), 1.0, atol=1e-5)


def test_ensemble_bad_input(tmp_path: Path, johns_dir: Path) -> None:
    proc = run("ensemble", "sface", "--out", tmp_path / "e1")
    assert "at least two members" in one_line_error(proc) and proc.returncode != 0
    proc = run("ensemble", "sface", tmp_path / "nope", "--out", tmp_path / "e2")
    assert "nope" in one_line_error(proc) and proc.returncode != 0
    proc = run("ensemble", "sface", "dlib-resnet", "--out", tmp_path / "e3", "--weights", "1,x")
    assert "weights" in one_line_error(proc) and proc.returncode != 0
    proc = run("ensemble", "sface", "dlib-resnet", "--out", tmp_path / "e4", "--weights", "1,-1")
    assert "above 0" in one_line_error(proc) and proc.returncode != 0
    assert not any(p.name.startswith("e") for p in tmp_path.iterdir())  # nothing half-written


def test_chips_of_another_models_recipe_are_refused(johns_dir: Path, tmp_path: Path) -> None:
    """dlib's 150 px chips given to sface (112 px) with --aligned: each file says why; nothing written."""
    proc = run("embed", johns_dir / "John_Simm", "--aligned", "--model", "sface", "--out", tmp_path / "o.npz")
    assert proc.returncode == 1 and not (tmp_path / "o.npz").exists()
    assert "takes 112x112 chips" in proc.stderr and "this is 150x150" in proc.stderr
    assert "Traceback" not in proc.stderr
