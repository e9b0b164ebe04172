"""A gallery export/import round trip keeps every stored field: faces, embeddings, crops, and the times."""

from __future__ import annotations

import sqlite3
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from cli_run import cli

from facefit.gallery.sqlite import SQLiteStore


def _snapshot(db: Path) -> dict:
    """Everything a gallery stores, keyed by content rather than by row id."""
    store = SQLiteStore(db, create=False)
    try:
        faces = {f.id: asdict(f) for f in store.faces()}
        ids, _, emb = store.vectors()
        vectors = {int(i): e for i, e in zip(ids, emb)}
        crops = {c.face_id: c for c in store.crops()}
        rows = []
        for fid, face in faces.items():
            c = crops[fid]
            rows.append(({k: v for k, v in face.items() if k != "id"}, vectors[fid].tobytes(), c.jpeg,
                         None if c.landmarks is None else c.landmarks.tobytes(), c.box))
        persons = [asdict(p) for p in store.persons()]
        return {"faces": sorted(rows, key=lambda r: (r[0]["person"], r[0]["image_sha256"])), "persons": persons,
                "contract": store.contract_json()}
    finally:
        store.close()


def _age(db: Path) -> None:
    """Move every stored time into the past (as an old gallery has), each one different."""
    with sqlite3.connect(db) as c:
        c.execute("UPDATE facefit_faces SET created = 1500000000 + id * 1000.25")
        c.execute("UPDATE facefit_persons SET created = 1400000000 + id * 7.5, updated = 1450000000 + id * 3.25")


def test_export_then_import_keeps_every_stored_field(johns_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "src.sqlite"
    for person in ("John_Salley", "John_Simm"):
        photos = sorted((johns_dir / person).glob("*.jpg"))[:2]
        code, _, err = cli(["gallery", "add", person, *photos, "-g", src], capsys)
        assert code == 0, err
    code, _, err = cli(["gallery", "add", "NoCrops", sorted((johns_dir / "John_Savage").glob("*.jpg"))[0],
                        "-g", src, "--no-crops"], capsys)
    assert code == 0, err
    _age(src)
    before = _snapshot(src)
    export = tmp_path / "g.zip"
    assert cli(["gallery", "export", export, "-g", src], capsys)[0] == 0
    dst = tmp_path / "dst.sqlite"
    code, _, err = cli(["gallery", "import", export, "-g", dst], capsys)
    assert code == 0 and "imported 5 face(s)" in err, err
    after = _snapshot(dst)
    assert after["persons"] == before["persons"]
    assert after["contract"] == before["contract"]
    assert len(after["faces"]) == 5
    for a, b in zip(after["faces"], before["faces"]):
        assert a[0] == b[0]  # every face field, created included
        assert a[1:] == b[1:]  # embedding, crop, landmarks, crop box
    # Importing again changes nothing, times included.
    assert cli(["gallery", "import", export, "-g", dst], capsys)[0] == 0
    assert _snapshot(dst) == after


def test_an_export_without_times_still_imports(johns_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "src.sqlite"
    photos = sorted((johns_dir / "John_Salley").glob("*.jpg"))[:2]
    assert cli(["gallery", "add", "John", *photos, "-g", src], capsys)[0] == 0
    export, old = tmp_path / "g.zip", tmp_path / "old.zip"
    assert cli(["gallery", "export", export, "-g", src], capsys)[0] == 0
    with zipfile.ZipFile(export) as z, zipfile.ZipFile(old, "w") as w:  # as written before times were kept
        for name in z.namelist():
            if name != "persons.jsonl":
                data = z.read(name)
                if name == "faces.jsonl":
                    data = data.replace(b'"created": ', b'"was_created": ')
                w.writestr(name, data)
    code, _, err = cli(["gallery", "import", old, "-g", tmp_path / "dst.sqlite"], capsys)
    assert code == 0 and "imported 2 face(s)" in err, err
    faces = _snapshot(tmp_path / "dst.sqlite")["faces"]
    assert all(np.isfinite(face["created"]) and face["created"] > 1.7e9 for face, *_ in faces)  # enrolled now
