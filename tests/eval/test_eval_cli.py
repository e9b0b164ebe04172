"""`facefit eval` and `compare --threshold-from` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facefit.cli.app", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "FACEFIT_PROGRESS": "0", **(env or {})}, timeout=600)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("facefit: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def korean_subset(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Folds 0 and 1 of the Korean validation pairs (600 pairs)."""
    lines = (data_root / "kfamily" / "val_pairs.csv").read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.rsplit(",", 1)[1] in ("0", "1")]
    path = tmp_path_factory.mktemp("kf") / "pairs.csv"
    path.write_text("\n".join(keep) + "\n")
    return path, data_root / "kfamily" / "val"


def test_eval_two_models_side_by_side(korean_subset, tmp_path: Path, johns_dir: Path) -> None:
    pairs, root = korean_subset
    from facefit import create_model, save_model

    copy = save_model(create_model("dlib-resnet"), tmp_path / "copy")
    out = tmp_path / "report"
    proc = run("eval", root, "--pairs", pairs, "--out", out, "--model", "dlib-resnet", "--model", copy)
    assert proc.returncode == 0, proc.stderr
    assert "age_gap=" in proc.stdout and "dlib-resnet" in proc.stdout and "copy" in proc.stdout
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["models"]) == ["dlib-resnet", "copy"]
    a, b = (doc["models"][k]["total"] for k in ("dlib-resnet", "copy"))
    assert a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-9)  # same weights, same numbers
    assert 0.65 < a["accuracy"] < 0.9  # the pretrained model is weak on Korean faces
    assert "age_class=a (0-6)" in doc["models"]["copy"]["subgroups"]
    assert doc["detection"]["no_face"] >= 0 and doc["pairs"]["n_pairs"] == 600
    report = (out / "report.md").read_text()
    assert "## Side by side" in report and "Accuracy per subgroup" in report

    # Nothing is overwritten silently; --overwrite replaces the report files.
    proc = run("eval", root, "--pairs", pairs, "--out", out)
    assert proc.returncode == 1 and "already exists" in one_line_error(proc)
    proc = run("eval", root, "--pairs", pairs, "--out", out, "--overwrite", "--metric", "cosine")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "metrics.json").read_text())["options"]["metric"] == "cosine"

    # The calibrated threshold travels into 1:1 comparison.
    euclid = tmp_path / "euclid"
    assert run("eval", root, "--pairs", pairs, "--out", euclid).returncode == 0
    threshold = json.loads((euclid / "metrics.json").read_text())["models"]["dlib-resnet"]["calibration"][
        "threshold_far_1e-3"]
    chips = sorted((johns_dir / "John_Salley").glob("*.jpg"))[:2]
    proc = run("compare", *chips, "--aligned", "--threshold-from", euclid / "metrics.json")
    assert proc.returncode == 0, proc.stderr
    assert f"threshold {threshold:.4f} (far_1e-3)" in proc.stderr
    assert f"below the model's threshold {threshold:g}" in proc.stdout
    proc = run("compare", *chips, "--aligned", "--threshold-from", euclid / "metrics.json", "--model", copy)
    assert proc.returncode == 1 and "not for this model" in one_line_error(proc)


def test_eval_bad_input(tmp_path: Path, data_root: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path_a,path_b,same\nP0716/F0801_AGE_F_48_a1.jpg,P0716/missing.jpg,1\n")
    proc = run("eval", data_root / "kfamily" / "val", "--pairs", bad, "--out", tmp_path / "r")
    assert proc.returncode == 1 and "missing.jpg (line 2)" in one_line_error(proc)
    bad.write_text("a,b\n1,2\n")
    proc = run("eval", data_root / "kfamily" / "val", "--pairs", bad, "--out", tmp_path / "r")
    assert proc.returncode == 1 and "missing column" in one_line_error(proc)
    proc = run("eval", data_root / "kfamily" / "val", "--pairs", tmp_path / "none.csv", "--out", tmp_path / "r")
    assert proc.returncode == 1 and "no such pairs file" in one_line_error(proc)
    assert not (tmp_path / "r").exists()
