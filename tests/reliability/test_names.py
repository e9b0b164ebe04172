"""Issue 15.4: names that print alike are refused, in the library, the CLI and the REST API alike.

Control characters (C0, DEL, C1), format characters (bidi overrides, zero-width spaces) and line or
paragraph separators make two names that look the same ("subj02" and "subj02" + U+200B) two persons.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from tests.reliability.cli_run import cli, error_lines

from facefit.gallery.store import GalleryError, check_name

LOOK_ALIKES = {
    "DEL": "a\x7fb",
    "C1 NEL": "a\x85b",
    "C1 CSI": "a\x9bb",
    "bidi override": "abc\u202edef",
    "zero-width space": "subj02\u200b",
    "zero-width joiner": "a\u200db",
    "word joiner": "a\u2060b",
    "BOM": "\ufeffsubj02",
    "line separator": "a\u2028b",
    "paragraph separator": "a\u2029b",
}


@pytest.mark.parametrize("name", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
def test_check_name_refuses_invisible_characters(name: str) -> None:
    with pytest.raises(GalleryError, match="not a usable name") as exc:
        check_name(name)
    assert "U+" in str(exc.value)  # names the offending character, printable


@pytest.mark.parametrize("name", [".", "..", " .. "])
def test_check_name_refuses_names_a_url_resolves_away(name: str) -> None:
    """/persons/.. is / to a browser (even written %2E%2E), so the page could not reach such a person."""
    with pytest.raises(GalleryError, match="path step"):
        check_name(name)


@pytest.mark.parametrize("name", ["Kim Minji", "José", "AC/DC", "Zoë O'Brien-Ünal", "김민지", "محمد", "...", "a.b"])
def test_ordinary_names_still_pass(name: str) -> None:
    assert check_name(name) == name


def test_cli_add_refuses_a_zero_width_twin(tmp_path: Path, yale_dir: Path, capsys: pytest.CaptureFixture) -> None:
    gallery = tmp_path / "g.sqlite"
    photo = yale_dir / "subject02" / "02_normal.png"
    code, _, err = cli(["gallery", "add", "subj02", photo, "--gallery", gallery], capsys)
    assert code == 0, err
    other = yale_dir / "subject02" / "02_happy.png"
    code, _, err = cli(["gallery", "add", "subj02\u200b", other, "--gallery", gallery], capsys)
    assert code != 0
    lines = error_lines(err)
    assert len(lines) == 1 and "U+200B ZERO WIDTH SPACE" in lines[0], err
    code, out, _ = cli(["gallery", "list", "--json", "--gallery", gallery], capsys)
    assert code == 0 and out.count('"name"') == 1  # still one person


def test_cli_add_refuses_del_and_c1(tmp_path: Path, yale_dir: Path, capsys: pytest.CaptureFixture) -> None:
    photo = yale_dir / "subject03" / "03_normal.png"
    for name in ("a\x7fb", "a\x85b"):
        code, _, err = cli(["gallery", "add", name, photo, "--gallery", tmp_path / "g.sqlite"], capsys)
        assert code != 0 and len(error_lines(err)) == 1, err


def test_cli_add_folder_names_a_look_alike_folder_and_enrols_the_rest(
        tmp_path: Path, yale_dir: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "people"
    for folder, src in (("subj02", "subject02/02_normal.png"), ("subj04\u202e", "subject04/04_normal.png")):
        (root / folder).mkdir(parents=True)
        (root / folder / "a.png").write_bytes((yale_dir / src).read_bytes())
    code, _, err = cli(["gallery", "add-folder", root, "--gallery", tmp_path / "g.sqlite"], capsys)
    assert "U+202E" in err
    code, out, _ = cli(["gallery", "list", "--json", "--gallery", tmp_path / "g.sqlite"], capsys)
    assert '"subj02"' in out and out.count('"name"') == 1


@pytest.mark.parametrize("name", ["subj02\u200b", "a\x7fb", "a\x85b", "x\u202ey"])
def test_api_refuses_look_alike_names(tmp_path: Path, yale_dir: Path, name: str) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facefit.serve.app import create_app
    from facefit.serve.settings import ServeSettings

    photo = ("a.png", (yale_dir / "subject02" / "02_normal.png").read_bytes())
    with TestClient(create_app(ServeSettings(gallery=str(tmp_path / "g.sqlite")))) as c:
        r = c.post(f"/persons/{quote(name)}/faces", files=[("images", photo)])
        assert r.status_code == 422, r.text
        assert "U+" in str(r.json()["detail"])
        assert c.get("/persons").json() == []
