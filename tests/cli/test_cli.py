"""The facefit command on good and bad input, run as a real subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facefit.io.embeddings import load_embeddings


def run(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "FACEFIT_PROGRESS": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "facefit.cli.app", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("facefit: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_help_does_not_import_heavy_libraries() -> None:
    code = ("import sys, facefit, facefit.cli.app; "
            "print(sorted(m for m in ('torch', 'dlib', 'cv2', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    proc = run("--help")
    assert proc.returncode == 0
    for command in ("embed", "compare", "demo", "bench", "models"):
        assert command in proc.stdout


@pytest.fixture()
def mixed_inputs(tmp_path: Path, yale_dir: Path) -> Path:
    """Real photos plus the bad files users actually have."""
    d = tmp_path / "photos"
    d.mkdir()
    for name in ("subject01/01_normal.png", "subject02/02_happy.png", "subject03/03_glasses.png"):
        shutil.copy(yale_dir / name, d / Path(name).name)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image, and not named like one")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg")
    from PIL import Image

    Image.new("RGB", (300, 200), (120, 120, 120)).save(d / "wall.png")
    return d


def test_embed_batch_continues_and_reports_failures(mixed_inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npz"
    proc = run("embed", mixed_inputs, "--out", out, "-j", "2")
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(r"broken\.jpg: cannot decode image", proc.stderr)
    assert re.search(r"empty\.jpg: empty file", proc.stderr)
    assert re.search(r"wall\.png: no face found", proc.stderr)
    assert "3 of 6 images failed" in proc.stderr
    assert "skipping 1 non-image file" in proc.stderr
    failures = (tmp_path / "emb.npz.failures.tsv").read_text().splitlines()
    assert failures[0] == "path\treason" and len(failures) == 4
    data = load_embeddings(out)
    assert data.embeddings.shape == (3, 128) and data.embeddings.dtype == np.float32
    assert [Path(p).name for p in data.paths] == ["01_normal.png", "02_happy.png", "03_glasses.png"]
    assert data.arrays["boxes"].shape == (3, 4) and data.arrays["landmarks"].shape == (3, 5, 2)
    assert data.contract_id == "dlib-resnet:04e060c5023de2dc"
    # The saved embedding is the model's raw output for that face.
    from facefit import create_model, detect_and_align

    face = detect_and_align(mixed_inputs / "02_happy.png")[0]
    np.testing.assert_allclose(data.embeddings[1], create_model("dlib-resnet").embed(face.chip[None])[0], atol=1e-5)


def test_embed_never_overwrites_silently(mixed_inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npz"
    out.write_bytes(b"precious user data")
    proc = run("embed", mixed_inputs / "01_normal.png", "--out", out)
    assert proc.returncode == 1
    assert "already exists; pass --overwrite" in one_line_error(proc)
    assert out.read_bytes() == b"precious user data"
    proc = run("embed", mixed_inputs / "01_normal.png", "--out", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert load_embeddings(out).embeddings.shape == (1, 128)


def test_embed_aligned_chips(johns_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "johns.npz"
    proc = run("embed", johns_dir, "--aligned", "--out", out)
    assert proc.returncode == 0, proc.stderr
    data = load_embeddings(out)
    assert data.embeddings.shape == (55, 128)
    assert "boxes" not in data.arrays and "landmarks" not in data.arrays


def test_embed_single_bad_file_and_bad_arguments(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_text("nope")
    proc = run("embed", bad, "--out", tmp_path / "o.npz")
    assert proc.returncode == 1
    assert "no face was embedded" in one_line_error(proc)
    assert f"{bad}: not an image file" in proc.stderr
    assert not (tmp_path / "o.npz").exists()
    proc = run("embed", tmp_path / "missing.jpg", "--out", tmp_path / "o.npz")
    assert proc.returncode == 2 and "missing.jpg: no such file or folder" in one_line_error(proc)
    proc = run("embed", bad, "--out", tmp_path / "o.npz", "--faces", "biggest")
    assert proc.returncode == 2 and "--faces" in one_line_error(proc)
    proc = run("embed", bad)
    assert proc.returncode == 2 and "--out" in one_line_error(proc)


def test_unknown_model_and_missing_weights(yale_dir: Path, tmp_path: Path) -> None:
    img = yale_dir / "subject01" / "01_normal.png"
    proc = run("embed", img, "--out", tmp_path / "o.npz", "--model", "resnet-dlib")
    assert proc.returncode == 1 and "unknown model 'resnet-dlib'" in one_line_error(proc)
    proc = run("embed", img, "--out", tmp_path / "o.npz", env={"FACEFIT_DLIB_MODELS": str(tmp_path)})
    assert proc.returncode == 1 and "face-recognition-models" in one_line_error(proc)


def _parse_matrix(stdout: str) -> np.ndarray:
    rows = [ln for ln in stdout.splitlines() if re.match(r"^\s*\d+\s+\d+\.\d{4}", ln)]
    return np.array([[float(v) for v in re.findall(r"\d+\.\d{4}", ln)] for ln in rows])


def test_compare_prints_the_distance_matrix(johns_dir: Path, yale_dir: Path, tmp_path: Path) -> None:
    salley = sorted((johns_dir / "John_Salley").glob("*.jpg"))[:2]
    simm = sorted((johns_dir / "John_Simm").glob("*.jpg"))[:1]
    proc = run("compare", *salley, *simm, "--aligned", "--plot", tmp_path / "m.png")
    assert proc.returncode == 0, proc.stderr
    m = _parse_matrix(proc.stdout)
    assert m.shape == (3, 3)
    np.testing.assert_allclose(m, m.T)
    assert (np.diag(m) == 0).all()
    assert m[0, 1] < 0.6 < min(m[0, 2], m[1, 2])  # same John close, different John far
    assert "*" in proc.stdout  # the same-person pair is marked below the threshold
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = hashlib.sha256((tmp_path / "m.png").read_bytes()).hexdigest()
    proc = run("compare", *salley, "--aligned", "--plot", tmp_path / "m.png")
    assert proc.returncode == 1 and "already exists" in one_line_error(proc)
    assert hashlib.sha256((tmp_path / "m.png").read_bytes()).hexdigest() == before

    photos = [yale_dir / "subject01/01_happy.png", yale_dir / "subject01/01_sad.png",
              yale_dir / "subject02/02_sad.png"]
    proc = run("compare", *photos, "--metric", "cosine")
    m = _parse_matrix(proc.stdout)
    assert proc.returncode == 0 and m.shape == (3, 3)
    assert m[0, 1] < m[0, 2] and m.max() <= 2.0


def test_compare_needs_two_faces(yale_dir: Path) -> None:
    proc = run("compare", yale_dir / "subject01/01_happy.png")
    assert proc.returncode == 1 and "need at least 2 faces" in one_line_error(proc)


def test_models_command() -> None:
    proc = run("models")
    assert proc.returncode == 0 and "dlib-resnet" in proc.stdout
    proc = run("models", "dlib-resnet")
    assert proc.returncode == 0 and '"id": "dlib-resnet:04e060c5023de2dc"' in proc.stdout


def test_bench_embed_runs(tmp_path: Path) -> None:
    proc = run("bench", "embed", "--seconds", "0.1", "--batch", "4", "--threads", "1", "--no-dlib",
               "--json", "--out", tmp_path / "b.json")
    assert proc.returncode == 0, proc.stderr
    import json

    doc = json.loads((tmp_path / "b.json").read_text())
    assert json.loads(proc.stdout) == doc  # --json prints the document the file holds, instead of the table
    assert doc["rows"][0]["batch"] == 4 and doc["rows"][0]["images_per_s"] > 0
    # Both shipped models, each on chips of its own size: SFace's beside dlib-resnet's, each labelled with the
    # precision it ran at.
    assert [r["backend"].split(",")[0] for r in doc["rows"]] == \
        [f"{m} {doc['precision'][m]['precision']}" for m in ("dlib-resnet", "sface")]
    assert "resized to 112x112" in proc.stderr


def test_bench_embed_end_to_end_times_each_stage(data_root: Path) -> None:
    proc = run("bench", "embed", "--end-to-end", "--images", "8", "--model", "dlib-resnet", "--workers", "1",
               "--json", "--data", data_root)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    assert [r["stage"] for r in rows] == ["detect + align", "embed", "end to end"]
    assert all(r["images"] == 8 and r["images_per_s"] > 0 for r in rows)
    assert rows[0]["faces"] == rows[2]["faces"] >= 7  # the engine finds what alignment alone finds


def test_demo_without_data_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    proc = run("demo", env={"FACEFIT_DATA": ""}, cwd=tmp_path / "work")  # no ../shared/data from there
    assert proc.returncode == 2 and "pass --data DIR" in one_line_error(proc)
    assert not (tmp_path / "work" / "out").exists()
    proc = run("demo", "--data", tmp_path / "nowhere")
    assert proc.returncode == 2 and "no such data folder" in one_line_error(proc)
    proc = run("demo", env={"FACEFIT_DATA": str(tmp_path / "nowhere")})
    assert proc.returncode == 2 and "FACEFIT_DATA" in one_line_error(proc)


def test_demo_never_takes_over_a_folder_of_someone_else_s_files(data_root: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    (mine / "eval-korean-val").mkdir(parents=True)  # names the demo writes, but not the demo's folder
    (mine / "eval-korean-val" / "notes.txt").write_text("keep me")
    (mine / "embeddings.npz").write_text("mine")
    proc = run("demo", "--data", data_root, "--out", mine, "--no-lfw", "--train-minutes", "0")
    assert proc.returncode == 2 and "not written by facefit demo" in one_line_error(proc)
    assert (mine / "eval-korean-val" / "notes.txt").read_text() == "keep me"
    assert (mine / "embeddings.npz").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    proc = run("demo", "--data", data_root, "--out", tmp_path / "file", "--no-lfw", "--train-minutes", "0")
    assert proc.returncode == 2 and "is a file" in one_line_error(proc)
    from facefit.demo import DEMO_MARK, _claim_out_dir

    _claim_out_dir(tmp_path / "new" / "demo")  # new: created and marked; marked: claimed again
    (tmp_path / "new" / "demo" / "old-output.png").write_text("earlier demo")
    _claim_out_dir(tmp_path / "new" / "demo")
    assert (tmp_path / "new" / "demo" / DEMO_MARK).is_file()


def test_demo_end_to_end(data_root: Path, tmp_path: Path) -> None:
    proc = run("demo", "--data", data_root, "--out", tmp_path / "demo", "--no-lfw", "--train-minutes", "0")
    assert proc.returncode == 0, proc.stderr
    diff = float(re.search(r"max \|facefit - dlib compute_face_descriptor\| over \d+ Yale faces = (\S+)",
                           proc.stdout).group(1))
    assert diff <= 1e-4
    assert re.search(r"149 faces", proc.stdout)
    assert {p.name for p in (tmp_path / "demo").iterdir()} == {"embeddings.npz", "johns_matrix.png",
                                                                "yale_matrix.png", "eval-korean-val",
                                                                "eval-1n-korean-val", ".facefit-demo"}
    # 1:N on new Korean persons: dlib-resnet finds about half of them and rejects no stranger at 0.6.
    one_n = re.search(r"dlib-resnet\s+(\d\.\d+)\s+(\d\.\d+)\s+(\d\.\d+)\s+(\d\.\d+)\s+0\.600\s+(\d\.\d+)",
                      proc.stdout)
    assert one_n, proc.stdout
    assert 0.45 <= float(one_n.group(1)) <= 0.56 and float(one_n.group(5)) <= 0.05
    acc = float(re.search(r"verification on korean-val, dlib-resnet .*?accuracy (\d\.\d+)", proc.stdout).group(1))
    assert 0.785 <= acc <= 0.805  # dlib's own pipeline: 0.795
    acc = float(re.search(r"verification on korean-val, sface .*?accuracy (\d\.\d+)", proc.stdout).group(1))
    assert 0.86 <= acc <= 0.89  # SFace, the default model: far better on these faces out of the box
    assert (tmp_path / "demo" / "eval-korean-val" / "metrics.json").is_file()
    assert "fine-tuning skipped" in proc.stdout


@pytest.mark.slow
def test_demo_fine_tunes_and_compares(data_root: Path, tmp_path: Path) -> None:
    """The demo's training and comparison steps on a small copy of the layout (symlinks, 8 training persons)."""
    mini = tmp_path / "data"
    (mini / "kfamily" / "train").mkdir(parents=True)
    (mini / "fixtures").symlink_to(data_root / "fixtures", target_is_directory=True)
    (mini / "kfamily" / "val").symlink_to(data_root / "kfamily" / "val", target_is_directory=True)
    people = [p for p in sorted((data_root / "kfamily" / "train").iterdir()) if len(list(p.glob("*.jpg"))) >= 10]
    for p in people[:8]:
        (mini / "kfamily" / "train" / p.name).symlink_to(p, target_is_directory=True)
    lines = (data_root / "kfamily" / "val_pairs.csv").read_text().splitlines()
    rows = [ln.split(",") for ln in lines[1:]]
    keep = [",".join(r) for fold in "01234" for same in "10"
            for r in [r for r in rows if r[3] == fold and r[2] == same][:12]]  # 5 folds x (12 same + 12 different)
    (mini / "kfamily" / "val_pairs.csv").write_text("\n".join([lines[0], *keep]) + "\n")
    # Two short trainings, an ensemble, five models on the validation pairs and 1:N on all 125 persons, cold.
    proc = run("demo", "--data", mini, "--out", tmp_path / "demo", "--no-lfw", "--train-minutes", "0.3", timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert "8. pre-trained vs fine-tuned vs ensemble" in proc.stdout
    assert "FMR / FNMR per population at one threshold" in proc.stdout
    row = re.search(r"korean-val\s+accuracy" + r"\s+(\d\.\d+)" * 5, proc.stdout)
    assert row, proc.stdout
    doc = json.loads((tmp_path / "demo" / "eval-korean-val" / "metrics.json").read_text())
    labels = {"dlib-resnet", "sface", "sface-finetuned", "dlib-finetuned", "ensemble"}
    assert set(doc["models"]) == labels
    assert doc["models"]["dlib-finetuned"]["calibration"]["metric"] == "cosine"
    assert doc["models"]["dlib-resnet"]["calibration"]["metric"] == "euclidean"
    assert doc["models"]["ensemble"]["contract"]["architecture"] == "ensemble"
    for run_dir in ("train-sface", "train-dlib-resnet"):
        assert (tmp_path / "demo" / run_dir / "model" / "MODEL_CARD.md").is_file()
    assert (tmp_path / "demo" / "ensemble" / "MODEL_CARD.md").is_file()
    suite = json.loads((tmp_path / "demo" / "suite" / "metrics.json").read_text())  # the final table's suite
    assert set(suite["populations"]) == labels and list(suite["benchmarks"]) == ["korean-val"]
    assert suite["benchmarks"]["korean-val"]["models"]["sface"]["total"] == doc["models"]["sface"]["total"]
    assert set(suite["populations"]["sface"]["by_population"]) == {"korean"}
    one_n = json.loads((tmp_path / "demo" / "eval-1n-korean-val" / "metrics_1n.json").read_text())
    assert set(one_n["models"]) == labels
