"""`facefit eval-1n`: the open-set protocol, real runs on real faces, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facefit.data.folders import IdentityFolders
from facefit.errors import FacefitError
from facefit.eval.open_set import ProtocolOptions, make_protocol


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facefit.cli.app", "eval-1n", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "FACEFIT_PROGRESS": "0"}, timeout=600)


def run_here(capsys: pytest.CaptureFixture, *args) -> tuple[int, str]:
    """In-process (no interpreter start-up): exit code and stderr."""
    from facefit.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main(["eval-1n", *map(str, args)])
    return exc.value.code, capsys.readouterr().err


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("facefit: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def fake_folders(root: Path, counts: dict[str, int]) -> Path:
    """Person folders of empty .jpg files: enough for the protocol, which never opens an image."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{name}_{i:04d}.jpg").touch()
    return root


# -------------------------------------------------------------------------------------------------- protocol


def test_protocol_split_is_disjoint_deterministic_and_capped(tmp_path: Path) -> None:
    counts = {f"p{i:02d}": 1 + i % 7 for i in range(30)}
    data = IdentityFolders.scan(fake_folders(tmp_path, counts))
    opts = ProtocolOptions(enrol=2, strangers=5, probes_per_person=3, seed=3)
    a = make_protocol(data, opts)
    assert make_protocol(data, opts) == a  # same seed, same protocol
    assert make_protocol(data, ProtocolOptions(enrol=2, strangers=5, seed=4)).strangers != a.strangers
    assert len(a.strangers) == 5 and not set(a.strangers) & set(a.gallery)
    assert all(counts[p] >= 3 for p in a.gallery)
    assert len(a.gallery) == sum(counts[p] >= 3 for p in counts if p not in a.strangers)
    assert not set(a.enrolled) & set(a.probes)
    assert len(a.enrolled) == 2 * len(a.gallery) and a.enrolled_person == [k // 2 for k in range(len(a.enrolled))]
    for k, name in enumerate(a.gallery):
        assert all(p.parent.name == name for p, q in zip(a.enrolled, a.enrolled_person) if q == k)
        probes = [p for p, lab in zip(a.probes, a.probe_labels) if lab == k]
        assert all(p.parent.name == name for p in probes) and len(probes) == min(3, counts[name] - 2)
    strangers = [p for p, lab in zip(a.probes, a.probe_labels) if lab == -1]
    assert {p.parent.name for p in strangers} == set(a.strangers)
    assert len(strangers) == sum(min(3, counts[s]) for s in a.strangers)
    assert any("neither enrolled nor strangers" in n for n in a.notes)

    # Capping the gallery keeps everybody's enrolment images; a fraction of persons as strangers.
    capped = make_protocol(data, ProtocolOptions(enrol=2, strangers=5, probes_per_person=3, seed=3, persons=4))
    assert len(capped.gallery) == 4 and set(capped.gallery) < set(a.gallery) and capped.strangers == a.strangers
    assert set(capped.enrolled) < set(a.enrolled)
    assert len(make_protocol(data, ProtocolOptions(strangers=0.2)).strangers) == 6
    more = make_protocol(data, ProtocolOptions(enrol=2, strangers=5, seed=3, min_probes=3))
    assert all(counts[p] >= 5 for p in more.gallery) and more.strangers == a.strangers


def test_protocol_refuses_impossible_splits(tmp_path: Path) -> None:
    data = IdentityFolders.scan(fake_folders(tmp_path, {"a": 3, "b": 2, "c": 1}))
    with pytest.raises(FacefitError, match="no person .* has more than 3 image"):
        make_protocol(data, ProtocolOptions(enrol=3, strangers=0))
    with pytest.raises(FacefitError, match="only 1 person.* at least 3 images"):
        make_protocol(data, ProtocolOptions(enrol=2, strangers=0))
    with pytest.raises(FacefitError, match="at most 1 can be strangers"):
        make_protocol(data, ProtocolOptions(strangers=2))
    with pytest.raises(FacefitError, match="must be whole"):
        make_protocol(data, ProtocolOptions(strangers=1.5))
    assert len(make_protocol(data, ProtocolOptions(strangers=0)).gallery) == 2


# ------------------------------------------------------------------------------------------------- real runs


def test_johns_two_models_cached_rerun(johns_dir: Path, tmp_path: Path) -> None:
    from facefit import create_model, save_model

    copy = save_model(create_model("dlib-resnet"), tmp_path / "copy")
    out = tmp_path / "report"
    proc = run(johns_dir, "--out", out, "--strangers", 1, "--model", "dlib-resnet", "--model", copy)
    assert proc.returncode == 0, proc.stderr
    assert "dlib-resnet" in proc.stdout and "copy" in proc.stdout and "rank-1" in proc.stdout
    doc = json.loads((out / "metrics_1n.json").read_text())
    assert list(doc["models"]) == ["dlib-resnet", "copy"]
    p = doc["protocol"]
    assert (p["gallery_persons"], p["mated_probes"], p["stranger_persons"], p["nonmated_probes"]) == (4, 40, 1, 11)
    assert p["seed"] == 0 and len(p["stranger_names"]) == 1 and doc["command"].startswith("facefit eval-1n ")
    assert doc["detection"]["no_face"] == 0 and doc["data"]["n_images_used"] == 55
    a, b = (doc["models"][k] for k in ("dlib-resnet", "copy"))
    assert a["contract_id"].startswith("dlib-resnet:") and a["contract_id"] != b["contract_id"]
    assert a["metric"] == "euclidean" and a["threshold"]["value"] == 0.6
    t = a["total"]
    assert t["rank_1"] >= 0.95 and t["tpir_at_threshold"] >= 0.9  # dlib's own example faces
    assert t["fpir_at_threshold"] <= 0.2  # the stranger is (mostly) rejected at dlib's 0.6
    assert t["tpir_at_fpir_1e-2"] is None and any("at least 100 non-mated" in n for n in t["notes"])
    assert t["threshold_at_fpir_1e-1"] is not None and t["tpir_at_fpir_1e-1"] >= 0.9
    assert b["total"]["rank_1"] == t["rank_1"] and b["total"]["fpir_at_threshold"] == t["fpir_at_threshold"]
    report = (out / "report_1n.md").read_text()
    assert "## Side by side" in report and "| dlib-resnet | euclidean |" in report and "## copy" in report
    assert (out / "det.png").read_bytes()[:4] == b"\x89PNG"

    # Refuses to overwrite; a re-run with another protocol reuses every detection and embedding.
    proc = run(johns_dir, "--out", out)
    assert proc.returncode == 1 and "already exists" in one_line_error(proc.stderr)
    proc = run(johns_dir, "--out", out, "--overwrite", "--enrol", 3, "--aggregate", "mean", "--strangers", 2,
               "--seed", 5)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "metrics_1n.json").read_text())
    assert doc["detection"]["detected_now"] == 0 and doc["models"]["dlib-resnet"]["embedded_now"] == 0
    assert doc["protocol"]["aggregate"] == "mean" and doc["protocol"]["enrolled_images"] == 9
    assert doc["models"]["dlib-resnet"]["total"]["rank_1"] >= 0.95


@pytest.mark.slow
def test_lfw_versus_korean_population_gap(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The pretrained model identifies LFW celebrities and rejects LFW strangers, but on Korean family photos
    it misses far more and matches nearly every stranger to someone: the problem facefit exists to fix."""
    lfw, kf = tmp_path / "lfw", tmp_path / "kf"
    code, err = run_here(capsys, data_root / "lfw" / "images", "--out", lfw, "--persons", 10, "--min-probes", 3,
                         "--probes-per-person", 3, "--strangers", 24)
    assert code == 0, err
    code, err = run_here(capsys, data_root / "kfamily" / "val", "--out", kf, "--persons", 16, "--probes-per-person",
                         3, "--strangers", 16, "--metadata", data_root / "kfamily" / "val_metadata.csv")
    assert code == 0, err
    west = json.loads((lfw / "metrics_1n.json").read_text())["models"]["dlib-resnet"]
    kdoc = json.loads((kf / "metrics_1n.json").read_text())
    korean = kdoc["models"]["dlib-resnet"]
    assert west["total"]["n_mated"] == 30 and west["total"]["rank_1"] >= 0.9
    assert west["total"]["fpir_at_threshold"] <= 0.5
    assert korean["total"]["n_mated"] == 48 and korean["total"]["rank_1"] <= 0.85
    assert korean["total"]["fpir_at_threshold"] >= 0.8
    assert korean["total"]["rank_1"] < west["total"]["rank_1"]
    # Subgroups from the metadata, at the global thresholds, with counts that add up.
    groups = {k: v for k, v in korean["subgroups"].items() if k.startswith("age_class=")}
    assert len(groups) >= 4
    assert sum(g["n_mated"] for g in groups.values()) == 48
    assert sum(g["n_nonmated"] for g in groups.values()) == korean["total"]["n_nonmated"]
    assert any("family_role" in n for n in kdoc["subgroup_notes"])  # one value per family: no subgroups


# ------------------------------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path, johns_dir: Path) -> None:
    few = fake_folders(tmp_path / "few", {"a": 3, "b": 1, "c": 1})
    code, err = run_here(capsys, few, "--out", tmp_path / "r1", "--strangers", 0)
    assert code == 1 and "needs at least 2 gallery persons" in one_line_error(err)
    code, err = run_here(capsys, johns_dir, "--out", tmp_path / "r2", "--enrol", 11)
    assert code == 1 and "has more than 11 image(s)" in one_line_error(err)
    code, err = run_here(capsys, johns_dir, "--out", tmp_path / "r3", "--strangers", 4)
    assert code == 1 and "can be strangers" in one_line_error(err)
    code, err = run_here(capsys, johns_dir, "--out", tmp_path / "r4", "--persons", 1)
    assert code == 2 and "--persons" in one_line_error(err)
    code, err = run_here(capsys, tmp_path / "missing", "--out", tmp_path / "r5")
    assert code == 1 and "no such folder" in one_line_error(err)
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 6))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics_1n.json").write_text("{}")
    code, err = run_here(capsys, johns_dir, "--out", taken)
    assert code == 1 and "already exists; pass --overwrite" in one_line_error(err)
    assert (taken / "metrics_1n.json").read_text() == "{}"
