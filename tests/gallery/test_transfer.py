"""Importing damaged or tampered gallery exports, and gallery locations that are neither a path nor PostgreSQL.

Every bad archive is built from a real export of real LFW faces, changed in one place, and must be
refused whole with one line naming the archive and the problem, leaving the target gallery as it was.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tests.cli.test_cli import one_line_error
from tests.gallery.conftest import run_cli as run

from facefit.gallery.gallery import Gallery
from facefit.gallery.location import resolve_location
from facefit.gallery.store import GalleryError
from facefit.gallery.transfer import export_gallery, import_gallery

Files = dict[str, bytes]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, lfw_people, model) -> tuple[Path, Path]:
    """(an export of 2 persons x 2 photos, an export of 1 other person) made by the real exporter."""
    root = tmp_path_factory.mktemp("exports")
    with Gallery.open(root / "src.sqlite") as g:
        for name in ("George_W_Bush", "Colin_Powell"):
            assert len(g.add(name.replace("_", " "), lfw_people[name][:2], model).added) == 2
        assert export_gallery(g, root / "src.zip") == 4
    with Gallery.open(root / "other.sqlite") as g:
        assert len(g.add("Tony Blair", lfw_people["Tony_Blair"][:1], model).added) == 1
        assert export_gallery(g, root / "other.zip") == 1
    return root / "src.zip", root / "other.zip"


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _emb(files: Files) -> np.ndarray:
    return np.load(io.BytesIO(files["embeddings.npy"]))


def _edit_face(key: str, value: object) -> Callable[[Files], None]:
    """Set (or, with value ``...``, drop) one field of the first face record."""
    def edit(files: Files) -> None:
        lines = [json.loads(line) for line in files["faces.jsonl"].decode().splitlines() if line]
        if value is ...:
            lines[0].pop(key)
        else:
            lines[0][key] = value
        files["faces.jsonl"] = "\n".join(json.dumps(x) for x in lines).encode()
    return edit


def _edit_manifest(change: Callable[[dict], None]) -> Callable[[Files], None]:
    def edit(files: Files) -> None:
        manifest = json.loads(files["manifest.json"])
        change(manifest)
        files["manifest.json"] = json.dumps(manifest).encode()
    return edit


def _nan(files: Files) -> None:
    e = _emb(files)
    e[0, 3] = np.nan
    files["embeddings.npy"] = _npy(e)


def _other_model(m: dict) -> None:
    m["contract"].update(id="other:1234", embedding_dim=512)


# (name, tampering, what the one error line must say). Face 1 is the first record of faces.jsonl.
TAMPERED = [
    ("crop_missing", lambda f: f.pop("crops/0.jpg"), "face 1 (person '{p}'): its crop crops/0.jpg is missing"),
    ("crop_traversal", _edit_face("crop", "../../../../tmp/evil.jpg"), "its crop ../../../../tmp/evil.jpg is missing"),
    ("crop_garbage", lambda f: f.update({"crops/0.jpg": b"garbage"}), "its crop crops/0.jpg is not a readable image"),
    ("faces_missingkey", _edit_face("person", ...), "face 1: the record has no person"),
    ("box_text", _edit_face("box", ["a", "b", "c", "d"]), "box is not 4 finite numbers"),
    ("landmarks_short", _edit_face("landmarks", [[1, 2]] * 4), "landmarks are not 5 pairs of finite numbers"),
    ("person_ctrl", _edit_face("person", "bad\nname"), "not a usable name"),
    ("nocontract", _edit_manifest(lambda m: m.pop("contract")), "the manifest has no model contract"),
    ("othermodel", _edit_manifest(_other_model), "contract id other:1234 does not match its fields"),
    ("emb_wrongdim", lambda f: f.update({"embeddings.npy": _npy(_emb(f)[:, :64])}),
     "face 1 (person '{p}'): embedding has 64 values, the contract's model gives 128"),
    ("emb_nan", _nan, "face 1 (person '{p}'): embedding has values that are not finite numbers"),
]


def _tamper(src: Path, dst: Path, change: Callable[[Files], object]) -> str:
    """Write ``src`` changed by ``change`` to ``dst``; returns the first face's person."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    first = json.loads(files["faces.jsonl"].decode().splitlines()[0])["person"]
    change(files)
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return first


def _state(g: Gallery) -> tuple:
    _, _, emb = g.store.vectors()
    return g.store.counts(), g.store.revision(), emb.shape


@pytest.mark.parametrize(("name", "change", "reason"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_tampered_export_is_refused_whole(exports, tmp_path: Path, name: str, change, reason: str) -> None:
    src, other = exports
    bad = tmp_path / f"{name}.zip"
    person = _tamper(src, bad, change)
    with Gallery.open(tmp_path / "target.sqlite") as g:
        assert import_gallery(g, other) == (1, 0)
        before = _state(g)
        with pytest.raises(GalleryError) as caught:
            import_gallery(g, bad)
        assert _state(g) == before  # nothing of the bad archive was written
        assert [p.name for p in g.persons()] == ["Tony Blair"]
    message = str(caught.value)
    assert message.startswith(f"{bad}: ") and "\n" not in message, message
    assert reason.format(p=person) in message, message


def test_a_tampered_export_is_one_line_from_the_cli(exports, tmp_path: Path) -> None:
    src, _ = exports
    bad = tmp_path / "emb_wrongdim.zip"
    _tamper(src, bad, lambda f: f.update({"embeddings.npy": _npy(_emb(f)[:, :64])}))
    target = tmp_path / "g.sqlite"
    refused = run("gallery", "import", bad, "-g", target)
    assert refused.returncode == 1
    assert f"{bad}: face 1" in one_line_error(refused) and "64 values" in refused.stderr
    assert not any(tmp_path.glob("g.sqlite*"))  # a refused import into a new gallery leaves no empty file
    assert run("gallery", "import", src, "-g", target).returncode == 0  # the untouched export still imports
    with Gallery.open(target) as g:
        assert g.store.counts() == (2, 4)


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:///tmp/g.sqlite", "MySQL://bob:secret@db/g"])
def test_an_unknown_url_is_not_taken_for_a_file(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args, env in ((("-g", url), None), ((), {"FACEFIT_GALLERY": url})):
        proc = run("gallery", "import", tmp_path / "x.zip", *args, env=env)
        line = one_line_error(proc)
        assert proc.returncode == 1
        assert "SQLite file path" in line and "postgresql://" in line, line
        assert "secret" not in line
        assert ("$FACEFIT_GALLERY" in line) == (env is not None)
    assert list(tmp_path.iterdir()) == []  # no "mysql:" folder or SQLite file appeared
    with pytest.raises(GalleryError, match="not a kind of gallery"):
        resolve_location(url)


def test_paths_and_postgres_urls_pass_the_location_check(tmp_path: Path) -> None:
    from facefit.gallery.location import check_location

    for location in ("postgresql://bob@db/g", "postgres://db/g", str(tmp_path / "g.sqlite"), "rel/a://b.sqlite"):
        assert check_location(location) == location
