"""Identity-folder data sets scanned from real face photos, with and without metadata."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from facefit.data.attributes import image_attributes
from facefit.data.folders import IdentityFolders
from facefit.errors import FacefitError


@pytest.fixture(scope="module")
def kfamily(data_root: Path) -> Path:
    return data_root / "kfamily" / "val"


@pytest.fixture(scope="module")
def kfamily_meta(data_root: Path) -> Path:
    return data_root / "kfamily" / "val_metadata.csv"


@pytest.fixture()
def small_tree(tmp_path: Path, yale_dir: Path) -> Path:
    """Two persons of real faces plus the clutter real folders have."""
    root = tmp_path / "faces"
    for person, files in {"alice": ["01_normal.png", "01_happy.png"], "bob": ["02_sad.png"]}.items():
        (root / person).mkdir(parents=True)
        subject = f"subject{files[0][:2]}"
        for name in files:
            shutil.copy(yale_dir / subject / name, root / person / name)
    (root / "bob" / "session2").mkdir()
    shutil.copy(yale_dir / "subject02" / "02_wink.png", root / "bob" / "session2" / "02_wink.png")
    (root / "README.txt").write_text("about this data set")
    (root / "alice" / "notes.txt").write_text("not an image")
    (root / "alice" / ".DS_Store").write_bytes(b"\0")
    (root / ".thumbs").mkdir()
    shutil.copy(yale_dir / "subject03" / "03_glasses.png", root / ".thumbs" / "03_glasses.png")
    (root / "carol").mkdir()
    return root


def test_scan_kfamily(kfamily: Path) -> None:
    data = IdentityFolders.scan(kfamily)
    assert len(data.persons) == 125
    assert data.n_images == 1211
    assert data.skipped == [] and data.empty == []
    names = [p.name for p in data.persons]
    assert names == sorted(names) and len(set(names)) == 125
    for person in data.persons:
        assert person.images == sorted(person.images)
        assert all(img.parent.name == person.name and img.is_file() for img in person.images)
    assert any(img.suffix == ".JPG" for img in data.images())  # upper-case suffixes are images too
    assert data.relative(data.persons[0].images[0]) == f"{data.persons[0].name}/{data.persons[0].images[0].name}"


def test_metadata_merges_with_file_name_attributes(kfamily: Path, kfamily_meta: Path) -> None:
    data = IdentityFolders.scan(kfamily, metadata=kfamily_meta)
    assert len(data.metadata) == 1211 and data.unmatched_metadata == 0
    for img in data.images():
        attrs = data.attributes(img)
        letter = img.stem.rsplit("_", 1)[1][0]  # F0801_AGE_F_48_a1 -> a
        assert attrs["age_class"] == letter  # the metadata's value wins over the file name's "a (0-6)"
        assert image_attributes(data.relative(img))["age_class"].startswith(letter)
        assert attrs["family_role"] and attrs["age"].isdigit()
        assert "person_id" not in attrs and "file" not in attrs


def test_unmatched_metadata_rows_are_counted(kfamily: Path, kfamily_meta: Path, tmp_path: Path) -> None:
    rows = kfamily_meta.read_text().splitlines()
    extra = ["P9999,nobody_AGE_F_30_d1.jpg,F9999_F,30,d", "P0716,F0801_AGE_F_48_z9.jpg,F0801_F,48,a",
             "P0001,missing.png,x,1,a"]
    meta = tmp_path / "meta.csv"
    meta.write_text("\n".join(rows[:11] + extra) + "\n")
    data = IdentityFolders.scan(kfamily, metadata=meta)
    assert data.unmatched_metadata == 3
    assert len(data.metadata) == 10
    assert "family_role" not in data.attributes(data.images()[-1])  # images without a row keep name attributes


def test_metadata_by_relative_path(small_tree: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta.csv"
    meta.write_text("path,lighting,note\nalice/01_normal.png,even,\nbob\\session2\\02_wink.png,dim,odd\n")
    data = IdentityFolders.scan(small_tree, metadata=meta)
    assert data.attributes(small_tree / "alice" / "01_normal.png") == {"condition": "normal", "lighting": "even"}
    assert data.attributes(small_tree / "bob" / "session2" / "02_wink.png")["note"] == "odd"
    assert data.unmatched_metadata == 0


def test_skipped_hidden_nested_and_empty(small_tree: Path) -> None:
    data = IdentityFolders.scan(small_tree)
    assert [p.name for p in data.persons] == ["alice", "bob"]  # carol has no image, .thumbs is hidden
    assert [img.name for img in data.persons[1].images] == ["02_sad.png", "02_wink.png"]  # nested folder kept
    assert sorted(p.name for p in data.skipped) == ["README.txt", "notes.txt"]
    assert data.empty == [small_tree / "carol"]
    assert data.relative(data.persons[1].images[1]) == "bob/session2/02_wink.png"


def test_loose_images_beside_person_folders_are_skipped(small_tree: Path) -> None:
    shutil.copy(small_tree / "alice" / "01_happy.png", small_tree / "stray.png")
    data = IdentityFolders.scan(small_tree)
    assert small_tree / "stray.png" in data.skipped
    assert data.n_images == 4


def test_folder_of_images_is_an_error(yale_dir: Path, tmp_path: Path) -> None:
    for name in ("01_normal.png", "01_sad.png"):
        shutil.copy(yale_dir / "subject01" / name, tmp_path / name)
    with pytest.raises(FacefitError, match="looks like a folder of images, not of persons"):
        IdentityFolders.scan(tmp_path)
    with pytest.raises(FacefitError, match="looks like a folder of images"):
        IdentityFolders.scan(yale_dir / "subject01")


def test_empty_or_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FacefitError, match="no person folders"):
        IdentityFolders.scan(tmp_path)
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "readme.md").write_text("no photos yet")
    with pytest.raises(FacefitError, match="contains an image"):
        IdentityFolders.scan(tmp_path)
    with pytest.raises(FacefitError, match="nowhere"):
        IdentityFolders.scan(tmp_path / "nowhere")
    with pytest.raises(FacefitError, match="not a folder"):
        IdentityFolders.scan(tmp_path / "alice" / "readme.md")


def test_file_column_needs_unique_file_names(small_tree: Path, tmp_path: Path) -> None:
    shutil.copy(small_tree / "bob" / "02_sad.png", small_tree / "alice" / "02_sad.png")
    meta = tmp_path / "meta.csv"
    meta.write_text("file,mood\n02_sad.png,sad\n")
    with pytest.raises(FacefitError, match=r"02_sad\.png occurs more than once"):
        IdentityFolders.scan(small_tree, metadata=meta)
    meta.write_text("path,mood\nalice/02_sad.png,sad\n")  # a path column is unambiguous
    assert IdentityFolders.scan(small_tree, metadata=meta).metadata == {"alice/02_sad.png": {"mood": "sad"}}


def test_malformed_metadata_names_file_and_line(small_tree: Path, tmp_path: Path) -> None:
    meta = tmp_path / "meta.csv"
    meta.write_text("\nimage,mood\n01_normal.png,calm\n")
    with pytest.raises(FacefitError, match=r"meta\.csv:2: metadata needs a 'path'"):
        IdentityFolders.scan(small_tree, metadata=meta)
    with meta.open("w", newline="") as fh:
        csv.writer(fh).writerows([["file", "mood"], ["01_normal.png", "calm"], ["01_happy.png", "happy", "extra"]])
    with pytest.raises(FacefitError, match=r"meta\.csv:3: expected 2 fields"):
        IdentityFolders.scan(small_tree, metadata=meta)
    meta.write_text("file,mood\n01_normal.png,calm\n01_normal.png,happy\n")
    with pytest.raises(FacefitError, match=r"meta\.csv:3: alice/01_normal\.png is already described on line 2"):
        IdentityFolders.scan(small_tree, metadata=meta)
    with pytest.raises(FacefitError, match="no such metadata file"):
        IdentityFolders.scan(small_tree, metadata=tmp_path / "absent.csv")
