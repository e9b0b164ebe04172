"""Symbolic links in inputs: a looping link is one reported failure, and enrolment never follows a link to a folder
out of the tree or back into it (which made one person of everybody's photos)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_run import cli, error_lines


def _copy_person(johns_dir: Path, name: str, dest: Path, n: int = 2) -> list[Path]:
    dest.mkdir(parents=True)
    files = sorted((johns_dir / name).glob("*.jpg"))[:n]
    for f in files:
        shutil.copy(f, dest / f.name)
    return [dest / f.name for f in files]


def test_a_self_referencing_link_is_one_failure_and_the_batch_goes_on(johns_dir: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    d = tmp_path / "d"
    good = _copy_person(johns_dir, "John_Salley", d)
    os.symlink("self.jpg", d / "self.jpg")  # ln -s self.jpg d/self.jpg
    os.symlink(d, d / "again")  # a link to a folder, inside the input folder: listed, not followed
    out = tmp_path / "o.npz"
    code, _, err = cli(["embed", d, "--out", out], capsys)
    assert code == 3, err
    assert f"{d / 'self.jpg'}: a symbolic link that loops back on itself" in err
    assert "not following 1 link(s) to folders" in err and "again" in err
    with np.load(out) as z:
        assert len(z["paths"]) == len(good)
    # Named on the command line, and in compare and gallery add, it is the same one line.
    code, _, err = cli(["embed", d / "self.jpg", *good, "--out", tmp_path / "o2.npz"], capsys)
    assert code == 3 and "self.jpg: a symbolic link that loops back on itself" in err, err
    code, out_text, err = cli(["compare", d], capsys)
    assert code == 3 and "self.jpg: a symbolic link that loops back on itself" in err and out_text, err
    code, _, err = cli(["gallery", "add", "John", d, "-g", tmp_path / "g.sqlite"], capsys)
    assert code == 3 and "self.jpg: a symbolic link that loops back on itself" in err, err
    assert "added 2 face(s) of 1 person(s)" in err


def test_add_folder_follows_no_link_out_of_or_back_into_the_tree(johns_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "root"
    _copy_person(johns_dir, "John_Salley", root / "John_Salley")
    _copy_person(johns_dir, "John_Simm", root / "John_Simm")
    outside = tmp_path / "elsewhere" / "John_Savage"
    _copy_person(johns_dir, "John_Savage", outside)
    os.symlink(root.resolve(), root / "aaa")  # ln -s "$PWD/root" root/aaa: sorts first, would take everyone's photos
    os.symlink(outside, root / "John_Savage")  # out of the tree
    os.symlink(root / "John_Simm", root / "John_Salley" / "more")  # inside a person's folder
    db = tmp_path / "g.sqlite"
    code, _, err = cli(["gallery", "add-folder", root, "-g", db], capsys)
    assert code == 0, err
    assert "did not follow 3 link(s) to folders" in err, err
    assert "already enrolled" not in err
    assert "added 4 face(s) of 2 person(s)" in err
    code, out, _ = cli(["gallery", "list", "-g", db, "--json"], capsys)
    import json

    assert sorted(p["name"] for p in json.loads(out)["persons"]) == ["John_Salley", "John_Simm"]


def test_pairs_leave_out_links_back_into_the_tree_and_looping_links(johns_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "root"
    for name in ("John_Salley", "John_Simm", "John_Savage", "John_Shimkus"):
        _copy_person(johns_dir, name, root / name, n=3)
    os.symlink(root.resolve(), root / "aaa")
    os.symlink("self.jpg", root / "John_Simm" / "self.jpg")  # would fail every evaluation on these pairs
    out = tmp_path / "pairs.csv"
    code, _, err = cli(["pairs", root, "--out", out, "--folds", "2"], capsys)
    assert code == 0 and not error_lines(err), err
    assert "did not follow 1 link(s) to folders" in err and "left out 1 link(s) that loop or lead nowhere" in err
    text = out.read_text()
    assert "aaa" not in text and "self.jpg" not in text and "from 4 persons, 12 images" in err


def test_a_pairs_file_naming_a_looping_link_says_so(johns_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "root"
    good = _copy_person(johns_dir, "John_Salley", root / "John_Salley")
    os.symlink("self.jpg", root / "John_Salley" / "self.jpg")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"path_a,path_b,same\nJohn_Salley/self.jpg,John_Salley/{good[0].name},1\n")
    code, _, err = cli(["eval", root, "--pairs", pairs, "--out", tmp_path / "report"], capsys)
    line = error_lines(err)
    assert code == 1 and len(line) == 1 and "self.jpg (line 2: a symbolic link that loops back on itself)" in line[0]
