"""Pairs files that repeat a pair, or pair a photo with itself: evaluated as given, but warned about, with counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import cli, error_lines

from facefit.data.pairs import read_pairs


def _csv(johns_dir: Path, tmp_path: Path) -> Path:
    rel = {p.parent.name: [x.relative_to(johns_dir) for x in sorted(p.parent.glob("*.jpg"))[:3]]
           for p in johns_dir.glob("*/*.jpg")}
    sa, sm = rel["John_Salley"], rel["John_Simm"]
    rows = [
        (sa[0], sa[1], 1, 0),   # line 2
        (sm[0], sm[1], 1, 1),   # line 3
        (sa[0], sm[0], 0, 0),   # line 4
        (sa[2], sm[2], 0, 1),   # line 5
        (sa[1], sa[0], 1, 0),   # line 6: line 2 again, the other way round
        (sm[0], sm[1], 1, 1),   # line 7: line 3 again
        (sa[2], sa[2], 1, 0),   # line 8: a photo with itself
        (sm[0], sa[0], 1, 1),   # line 9: line 4 again, labelled the opposite way
    ]
    path = tmp_path / "pairs.csv"
    path.write_text("path_a,path_b,same,fold\n" + "".join(f"{a},{b},{s},{f}\n" for a, b, s, f in rows))
    return path


def test_repeated_and_self_pairs_are_counted(johns_dir: Path, tmp_path: Path) -> None:
    pairs = read_pairs(_csv(johns_dir, tmp_path), johns_dir)
    assert len(pairs) == 8  # nothing dropped
    repeat, self_pair = pairs.warnings
    assert "3 of 8 pairs repeat an earlier pair" in repeat and "line 6 repeats line 2" in repeat
    assert "1 of them with the opposite same/different label" in repeat
    assert "1 pair(s) compare an image with itself" in self_pair and "line 8" in self_pair
    # LFW's format too: a repeated line, and 'name i i'.
    lfw = tmp_path / "pairs.txt"
    lfw.write_text("1 2\nJohn_Salley 1 2\nJohn_Salley 1 1\nJohn_Salley 1 John_Simm 1\nJohn_Simm 1 John_Salley 1\n")
    (tmp_path / "lfw" / "John_Salley").mkdir(parents=True)
    (tmp_path / "lfw" / "John_Simm").mkdir()
    warnings = read_pairs(lfw, tmp_path / "lfw", check=False).warnings
    assert len(warnings) == 2 and "1 of 4 pairs repeat" in warnings[0] and "line 5 repeats line 4" in warnings[0]
    assert "line 3" in warnings[1]
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join(_csv(johns_dir, tmp_path).read_text().splitlines()[:5]) + "\n")
    assert read_pairs(clean, johns_dir).warnings == []


def test_eval_warns_about_repeated_pairs_and_records_it(johns_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    code, _, err = cli(["eval", johns_dir, "--pairs", _csv(johns_dir, tmp_path), "--out", out], capsys)
    assert code == 0 and not error_lines(err), err
    warned = [ln for ln in err.splitlines() if ln.startswith("facefit: warning:")]
    assert any("3 of 8 pairs repeat" in ln for ln in warned), err
    assert any("1 pair(s) compare an image with itself" in ln for ln in warned), err
    doc = json.loads((out / "metrics.json").read_text())
    assert len(doc["pairs"]["warnings"]) == 2 and doc["pairs"]["n_pairs"] == 8
    assert "- warning: " in (out / "report.md").read_text()
