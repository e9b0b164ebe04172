"""Bad input found by a fuzz sweep of the CLI: each gives one error line (or a reported failure), never a traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from facefit.gallery.store import GalleryError, check_name


def _cli(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    from facefit.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main([a if isinstance(a, str) else os.fsdecode(a) for a in map(os.fspath, args)])
    got = capsys.readouterr()
    assert "Traceback" not in got.err
    return int(exc.value.code or 0), got.out, got.err


def _one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("facefit: error:") or "Invalid value" in ln]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def yale_people(yale_dir: Path, tmp_path: Path) -> Path:
    """Six Yale subjects, three photos each, one of them under a file name that is not UTF-8."""
    root = tmp_path / "people"
    for subject in sorted(yale_dir.iterdir())[:6]:
        (root / subject.name).mkdir(parents=True)
        for f in sorted(subject.glob("*.png"))[:3]:
            shutil.copy(f, root / subject.name / f.name)
    odd = os.fsencode(root / "subject01") + b"/caf\xe9.png"  # Latin-1 bytes, as old cameras and zips write them
    os.rename(os.fsencode(root / "subject01" / "01_glasses.png"), odd)
    return root


def test_names_that_are_not_utf8_are_left_out_of_data_sets_with_a_warning(yale_people: Path, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    os.rename(os.fsencode(yale_people / "subject04"), os.fsencode(yale_people) + b"/subj\xff04")
    code, _, err = _cli(["pairs", yale_people, "-o", tmp_path / "pairs.csv", "--folds", "2"], capsys)
    assert code == 0, err
    assert "left out 2 folder(s)/image(s) whose names are not valid UTF-8" in err and "subj\\xff04" in err
    text = (tmp_path / "pairs.csv").read_text()
    assert "subject02" in text and "subj" not in text.replace("subject", "") and "caf" not in text


def test_gallery_enrols_a_photo_whose_name_is_not_utf8_and_refuses_such_a_person(
        yale_people: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gallery = tmp_path / "g.sqlite"
    odd = os.fsencode(yale_people / "subject01") + b"/caf\xe9.png"
    code, _, err = _cli(["gallery", "add", "Ann", os.fsdecode(odd), "-g", gallery], capsys)
    assert code == 0, err
    from facefit.gallery.sqlite import SQLiteStore

    store = SQLiteStore(gallery, create=False)
    assert [f.source.rsplit("/", 1)[-1] for f in store.faces("Ann")] == ["caf\\xe9.png"]
    store.close()
    with pytest.raises(GalleryError, match="not valid UTF-8"):
        check_name(os.fsdecode(b"Jo\xffhn"))
    code, _, err = _cli(["gallery", "add-folder", yale_people, "-g", tmp_path / "g2.sqlite"], capsys)
    # A data set scan leaves the odd name out (like pairs, eval-1n and train do), says so, and goes on.
    assert code == 3 and "caf\\xe9.png: the file name is not valid UTF-8" in err
    assert "added 17 face(s) of 6 person(s)" in err


def test_outputs_that_can_never_be_created_are_refused_before_any_work(tmp_path: Path, johns_dir: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    user = tmp_path / "user.txt"
    user.write_text("keep")
    for args in (["eval", johns_dir, "--out", user / "report"],
                 ["eval-1n", johns_dir, "--out", user / "report"],
                 ["train", johns_dir, "--out", user / "run"],
                 ["import", tmp_path / "x.bin", "--out", user / "imported"],
                 ["embed", johns_dir, "-o", user / "e.npz"]):
        if args[0] == "import":
            (tmp_path / "x.bin").write_bytes(b"")
        code, _, err = _cli(args, capsys)
        line = _one_error(err)
        assert code != 0 and ("is a file" in line or "cannot" in line), (args, line)
    assert user.read_text() == "keep"
    code, _, err = _cli(["eval", johns_dir, "--out", user], capsys)
    assert code == 2 and "is a file; the report needs a folder" in _one_error(err)
    code, _, err = _cli(["embed", johns_dir, "-o", tmp_path, "--overwrite"], capsys)
    assert code == 2 and "is a folder; give a file name" in _one_error(err)


def test_a_cache_that_is_not_one_is_refused_in_one_line(tmp_path: Path, johns_dir: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    from facefit.data.folders import IdentityFolders

    pairs = tmp_path / "pairs.csv"
    assert _cli(["pairs", johns_dir, "-o", pairs, "--folds", "2"], capsys)[0] == 0
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not a database " * 100)
    for cache, message in ((bad, "not a facefit face cache"), (tmp_path, "is a folder")):
        code, _, err = _cli(["eval", johns_dir, "--pairs", pairs, "--out", tmp_path / "r", "--cache", cache],
                            capsys)
        assert code != 0 and message in _one_error(err)
    assert bad.read_text().startswith("not a database")  # never touched
    assert IdentityFolders.scan(johns_dir).persons  # the data set itself is fine


def test_training_config_device_and_checkpoint_problems_are_one_line(tmp_path: Path, johns_dir: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim:\n  lr: [1, 2\n")
    cases = [(["--device", "bogus"], "device"), (["--set", "optim.lr=["], "not valid YAML"),
             (["-c", binary], "cannot read config"), (["-c", broken], "cannot read config")]
    for extra, message in cases:
        code, _, err = _cli(["train", johns_dir, "--out", tmp_path / "run", *extra], capsys)
        assert code == 2 and message in _one_error(err), (extra, err)
    assert not (tmp_path / "run").exists()
    from facefit.errors import FacefitError
    from facefit.train.checkpoint import load_checkpoint

    for content in (b"garbage\n", b"PK\x03\x04" + b"\x00" * 50):
        (tmp_path / "last.pt").write_bytes(content)
        with pytest.raises(FacefitError, match="not a readable facefit checkpoint"):
            load_checkpoint(tmp_path / "last.pt")


@pytest.mark.parametrize("value", ["nan", "-1", "0", "inf"])
def test_thresholds_must_be_distances_above_zero(value: str, johns_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    for command in (["compare", johns_dir, "--aligned"], ["identify", johns_dir, "-g", tmp_path / "g.sqlite"],
                    ["eval-1n", johns_dir, "--out", tmp_path / "r"]):
        code, _, err = _cli([*command, "--threshold", value], capsys)
        assert code == 2 and "must be a distance above 0" in err, (command, err)
    assert not (tmp_path / "r").exists() and not (tmp_path / "g.sqlite").exists()


def test_a_plot_format_matplotlib_cannot_write_is_refused_first(johns_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    code, out, err = _cli(["compare", johns_dir, "--aligned", "--plot", tmp_path / "m.xyz"], capsys)
    assert code == 2 and "suffixes .png" in err and out == ""  # before any embedding is printed


def test_bad_choices_and_addresses_say_what_is_allowed(tmp_path: Path, johns_dir: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    for option, value, allowed in (("--aggregate", "bogus", "choose one of best, mean"),
                                   ("--index", "kd-tree", "choose one of auto, exact, ivf, hnsw")):
        code, _, err = _cli(["identify", johns_dir, "-g", tmp_path / "g.sqlite", option, value], capsys)
        assert code != 0 and allowed in _one_error(err)
    code, _, err = _cli(["serve", "--host", "999.999.1.1", "--no-gallery"], capsys)
    assert code == 2 and "--host 999.999.1.1: not an address" in _one_error(err)
    code, _, err = _cli(["gallery", "reembed", "-m", "inception-resnet-v1", "-g", tmp_path / "g.sqlite"], capsys)
    assert code != 0 and "pretrained=false" in _one_error(err) and "use pretrained=False" not in err


def test_ctrl_c_in_training_says_how_to_continue(tmp_path: Path, johns_dir: Path, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import facefit.train.loop

    def interrupted(cfg, run_dir: Path, **_) -> None:
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "checkpoints" / "last.pt").write_bytes(b"an epoch")
        raise KeyboardInterrupt

    monkeypatch.setattr(facefit.train.loop, "train", interrupted)
    code, _, err = _cli(["train", johns_dir, "--out", tmp_path / "run"], capsys)
    assert code == 130 and "facefit: interrupted" in err
    assert f"continue with facefit train --resume {tmp_path / 'run'}" in err
