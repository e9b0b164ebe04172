"""Pairs files: the official LFW protocol, CSV, and every malformed input a user can hand us."""

from __future__ import annotations

from pathlib import Path

import pytest

from facefit.data.attributes import image_attributes, pair_attributes
from facefit.data.pairs import PairsError, read_pairs


def test_official_lfw_pairs(data_root: Path) -> None:
    ps = read_pairs(data_root / "lfw" / "pairs.txt", data_root / "lfw")  # parent folder accepted
    assert ps.format == "lfw" and len(ps) == 6000 and ps.folds == list(range(10))
    assert ps.root == data_root / "lfw" / "images"
    assert len(ps.images()) == 7701
    for k in range(10):
        fold = [p for p in ps.pairs if p.fold == k]
        assert len(fold) == 600 and sum(p.same for p in fold) == 300
    first = ps.pairs[0]
    assert first.same and first.a.name == "Abel_Pacheco_0001.jpg" and first.b.name == "Abel_Pacheco_0004.jpg"
    assert first.line == 2
    neg = ps.pairs[300]
    assert not neg.same and neg.a.parent.name != neg.b.parent.name


def test_korean_csv_with_age_subgroups(data_root: Path) -> None:
    ps = read_pairs(data_root / "kfamily" / "val_pairs.csv", data_root / "kfamily" / "val")
    assert ps.format == "csv" and len(ps) == 3000 and len(ps.images()) == 1205
    assert sum(p.same for p in ps.pairs) == 1500
    assert ps.attribute_names == ["age_class", "age_gap"]
    assert all(p.attrs.get("age_gap") for p in ps.pairs)


def _lfw_tree(tmp_path: Path, names: dict[str, int]) -> Path:
    root = tmp_path / "lfw"
    for name, n in names.items():
        (root / name).mkdir(parents=True)
        for i in range(1, n + 1):
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(b"x")
    return root


def test_lfw_errors_name_the_line(tmp_path: Path) -> None:
    root = _lfw_tree(tmp_path, {"Ann": 3, "Bob": 2})
    f = tmp_path / "pairs.txt"
    f.write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\n")
    with pytest.raises(PairsError, match=r"pairs.txt:3: image number 'Bob'"):
        read_pairs(f, root)
    f.write_text("1\t1\nAnn\t1\t2\tx\ty\nAnn\t1\tBob\t2\n")
    with pytest.raises(PairsError, match=r"pairs.txt:2: expected 'name i j'"):
        read_pairs(f, root)
    f.write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t2\n")
    with pytest.raises(PairsError, match="promises 2 folds x 2 pairs = 4 lines, found 2"):
        read_pairs(f, root)
    f.write_text("1\t1\nAnn\t1\t9\nAnn\t1\tBob\t2\n")
    with pytest.raises(PairsError, match=r"1 image\(s\) referenced by pairs do not exist.*Ann_0009.jpg \(line 2\)"):
        read_pairs(f, root)
    f.write_text("1\t1\nAnn\t1\t0\nAnn\t1\tBob\t2\n")
    with pytest.raises(PairsError, match="must be >= 1"):
        read_pairs(f, root)
    f.write_text("1\t1\nAnn\t1\t3\nAnn\t2\tBob\t2\n")
    ps = read_pairs(f, root)
    assert [p.same for p in ps.pairs] == [True, False] and ps.folds == [0]


def test_csv_format_and_errors(tmp_path: Path) -> None:
    root = _lfw_tree(tmp_path, {"Ann": 3, "Bob": 2, "Cy": 2})
    f = tmp_path / "p.csv"
    f.write_text("path_a,path_b,same,light\nAnn/Ann_0001.jpg,Ann/Ann_0002.jpg,1,dark\n"
                 "Ann/Ann_0001.jpg,Bob/Bob_0001.jpg,0,\nCy/Cy_0001.jpg,Cy/Cy_0002.jpg,true,dark\n")
    ps = read_pairs(f, root, n_folds=4)
    assert [p.same for p in ps.pairs] == [True, False, True]
    assert ps.pairs[0].attrs == {"light": "dark"} and ps.pairs[1].attrs == {}
    assert ps.pairs[0].fold == ps.pairs[1].fold  # same person folder -> same fold
    assert all(0 <= p.fold < 4 for p in ps.pairs)
    assert any("subgroup columns: light" in n for n in ps.notes) and any("no 'fold' column" in n for n in ps.notes)
    used = len({p.fold for p in ps.pairs})  # 2 person folders (Ann, Cy) cannot fill 4 folds
    assert any(f"assigned to {used} folds by a hash of path_a's folder (4 asked" in n for n in ps.notes), ps.notes
    bad = {
        "img1,img2,label\na,b,1\n": r"p.csv:1: missing column\(s\) path_a, path_b, same",
        "path_a,path_b,same\nAnn/Ann_0001.jpg,Ann/Ann_0002.jpg,maybe\n": r"p.csv:2: 'same' must be",
        "path_a,path_b,same,fold\nAnn/Ann_0001.jpg,Ann/Ann_0002.jpg,1,x\n": r"p.csv:2: fold 'x'",
        "path_a,path_b,same\nAnn/Ann_0001.jpg,Ann/Ann_0002.jpg\n": r"p.csv:2: expected 3 fields",
        "path_a,path_b,same\n": "no pairs after the header",
        "path_a,path_b,same,same\n": "duplicate column",
        "path_a,path_b,same\nAnn/Ann_0001.jpg,Nobody/x.jpg,0\n": r"Nobody/x.jpg \(line 2\)",
        "": "empty file",
    }
    for text, message in bad.items():
        f.write_text(text)
        with pytest.raises(PairsError, match=message):
            read_pairs(f, root)
    with pytest.raises(PairsError, match="no such pairs file"):
        read_pairs(tmp_path / "none.csv", root)
    with pytest.raises(PairsError, match="is a folder; give the pairs file"):
        read_pairs(tmp_path, root)
    with pytest.raises(PairsError, match="no such image folder"):
        read_pairs(f, tmp_path / "nowhere")


def test_attribute_parsing() -> None:
    assert image_attributes("P0716/F0801_AGE_F_48_b2.jpg") == {"age_class": "b (7-12)"}
    assert image_attributes("P1/F0808_AGE_D2_20_c1.jpg") == {"age_class": "c (13-19)"}
    assert image_attributes("subject01/01_leftlight.png") == {"condition": "leftlight"}
    kface = image_attributes("19062421/S001/L1/E01/C7.jpg")
    assert kface == {"accessory": "S001", "lighting": "L1", "expression": "E01", "pose": "C7"}
    assert image_attributes("people/L3/photo.jpg") == {}  # a lone L3 folder is not K-Face
    pa = pair_attributes("P1/F1_AGE_F_48_a1.jpg", "P1/F1_AGE_F_48_d1.jpg")
    assert pa == {"age_class": "mixed", "age_gap": "3+ classes"}
    assert pair_attributes("P1/F1_AGE_F_48_b1.jpg", "P2/F2_AGE_M_40_c1.jpg")["age_gap"] == "1 class"
    assert pair_attributes("a/01_happy.png", "b/02_happy.png") == {"condition": "happy"}
