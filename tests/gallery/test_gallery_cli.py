"""``facefit gallery`` and ``facefit identify`` as a user runs them, including a run killed mid-enrolment."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.cli.test_cli import one_line_error
from tests.gallery.conftest import run_cli as run


@pytest.fixture()
def env(tmp_path: Path) -> dict:
    return {"FACEFIT_GALLERY": str(tmp_path / "gallery.sqlite")}


def test_enrol_identify_json_and_forget(env: dict, lfw_people, tmp_path: Path) -> None:
    bush, powell, blair = lfw_people["George_W_Bush"], lfw_people["Colin_Powell"], lfw_people["Tony_Blair"]
    assert run("gallery", "add", "George W Bush", *bush[:3], env=env).returncode == 0
    assert run("gallery", "add", "Colin Powell", *powell[:3], env=env).returncode == 0
    listed = json.loads(run("gallery", "list", "--json", env=env).stdout)
    assert [(p["name"], p["faces"]) for p in listed["persons"]] == [("Colin Powell", 3), ("George W Bush", 3)]
    assert listed["model"].startswith("dlib-resnet:")
    proc = run("identify", "--json", bush[5], powell[5], blair[0], env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    by_image = {Path(r["image"]).parent.name: r for r in rows}
    assert by_image["George_W_Bush"]["name"] == "George W Bush"
    assert by_image["Colin_Powell"]["name"] == "Colin Powell"
    assert by_image["Tony_Blair"]["name"] is None  # a stranger stays unknown
    for r in rows:
        assert set(r) >= {"image", "box", "name", "distance", "score", "matches"} and len(r["box"]) == 4
        assert r["score"] == r["distance"]  # the old key, kept for one release
        assert [m["distance"] for m in r["matches"]] == sorted(m["distance"] for m in r["matches"])
    # A stricter threshold turns the known faces into unknowns too.
    strict = run("identify", "--json", "--threshold", "0.05", bush[5], env=env)
    assert json.loads(strict.stdout)["name"] is None
    # A threshold taken from an evaluation of this model (here a strict one) applies the same way.
    from facefit.models import create_model

    contract_id = create_model("dlib-resnet").contract.id
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"models": {"dlib-resnet": {"contract": {"id": contract_id}, "calibration": {
        "metric": "euclidean", "threshold_far_1e-3": 0.05}}}}))
    calibrated = run("identify", "--json", "--threshold-from", metrics, bush[5], env=env)
    assert calibrated.returncode == 0 and json.loads(calibrated.stdout)["name"] is None
    metrics.write_text(metrics.read_text().replace(contract_id, "other:123"))
    assert "not for this model" in one_line_error(run("identify", "--threshold-from", metrics, bush[5], env=env))
    # Forgetting needs confirmation, then removes every face.
    refused = run("gallery", "remove", "George W Bush", env=env)
    assert refused.returncode != 0 and "--yes" in one_line_error(refused)
    assert run("gallery", "remove", "George W Bush", "--yes", env=env).returncode == 0
    again = run("identify", "--json", bush[5], env=env)
    assert json.loads(again.stdout)["name"] is None


def test_bad_input_gives_one_line_errors(env: dict, lfw_people, tmp_path: Path) -> None:
    missing = run("gallery", "list", env=env)
    assert missing.returncode != 0 and "no gallery" in one_line_error(missing)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    partial = run("gallery", "add", "Ann", bad, lfw_people["Tony_Blair"][0], env=env)
    assert partial.returncode == 3
    assert f"{bad}: not an image file" in partial.stderr and "Traceback" not in partial.stderr
    only_bad = run("gallery", "add", "Bob", bad, env=env)
    assert only_bad.returncode == 1
    assert run("gallery", "show", "Nobody", env=env).returncode != 0
    assert "no person named" in one_line_error(run("gallery", "rename", "Nobody", "X", env=env))
    assert "--face" in one_line_error(run("gallery", "add", "Ann", "--face", "biggest", bad, env=env))
    (tmp_path / "out.zip").write_text("keep me")
    refused = run("gallery", "export", tmp_path / "out.zip", env=env)
    assert "already exists" in one_line_error(refused) and (tmp_path / "out.zip").read_text() == "keep me"
    not_zip = run("gallery", "import", bad, env=env)
    assert "not a readable facefit gallery export" in one_line_error(not_zip)
    folder_as_db = run("gallery", "list", "--gallery", tmp_path, env=env)
    assert "is a folder" in one_line_error(folder_as_db)


def test_killed_enrolment_leaves_whole_persons_and_resumes(tmp_path: Path, lfw_people) -> None:
    root = tmp_path / "people"
    for name, files in lfw_people.items():
        (root / name).mkdir(parents=True)
        for f in files[:4]:
            (root / name / f.name).symlink_to(f)
    db = tmp_path / "g.sqlite"
    env = {**os.environ, "FACEFIT_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "facefit.cli.app", "gallery", "add-folder", str(root), "--gallery", str(db),
           "--face", "largest"]  # one of the photos shows two people
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    persons = 0
    while time.time() < deadline and persons < 2 and proc.poll() is None:
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    persons = c.execute("SELECT COUNT(*) FROM facefit_persons").fetchone()[0]
            except sqlite3.OperationalError:
                persons = 0  # the schema is still being created
    assert proc.poll() is None, "enrolment finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = [n for (n,) in c.execute("SELECT COUNT(*) FROM facefit_faces GROUP BY person_id")]
    assert counts and set(counts) == {4} and len(counts) < len(lfw_people)  # whole persons only
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{4 * len(counts)} duplicate(s)" in done.stderr
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT COUNT(*) FROM facefit_faces").fetchone()[0] == 4 * len(lfw_people)


def test_the_gallery_remembers_a_model_given_by_path(env: dict, lfw_people, tmp_path: Path) -> None:
    import torch

    from facefit import create_model, save_model

    torch.manual_seed(0)
    save_model(create_model("dlib-resnet", pretrained=False), tmp_path / "my-model")
    blair = lfw_people["Tony_Blair"]
    assert run("gallery", "add", "Tony Blair", blair[0], "--model", tmp_path / "my-model", env=env).returncode == 0
    found = run("identify", "--json", "--threshold", "10", blair[0], env=env)  # no --model: the remembered one
    assert found.returncode == 0 and json.loads(found.stdout)["name"] == "Tony Blair"
    (tmp_path / "my-model").rename(tmp_path / "moved")
    lost = run("identify", blair[0], env=env)
    assert "pass that model with --model PATH" in one_line_error(lost)
    again = run("identify", "--json", "--threshold", "10", "--model", tmp_path / "moved", blair[0], env=env)
    assert json.loads(again.stdout)["name"] == "Tony Blair"
