"""Outputs that cannot be written: refused before the work starts; a late failure is one line, nothing claimed."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from cli_run import cli, error_lines, locked


@pytest.fixture
def photos(johns_dir: Path, tmp_path: Path) -> Path:
    """Two real face chips of one person and one file that is not an image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for f in sorted((johns_dir / "John_Salley").glob("*.jpg"))[:2]:
        shutil.copy(f, folder / f.name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


@pytest.fixture
def gallery(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    db = tmp_path / "g.sqlite"
    code, _, err = cli(["gallery", "add", "John", *sorted(photos.glob("0*.jpg")), "-g", db], capsys)
    assert code == 0, err
    return db


def _pairs_csv(johns_dir: Path, tmp_path: Path) -> Path:
    a, b = sorted((johns_dir / "John_Salley").glob("*.jpg"))[:2]
    c, d = sorted((johns_dir / "John_Simm").glob("*.jpg"))[:2]
    rows = [(a, b, 1, 0), (c, d, 1, 1), (a, c, 0, 0), (b, d, 0, 1)]
    path = tmp_path / "pairs.csv"
    path.write_text("path_a,path_b,same,fold\n" + "".join(
        f"{x.relative_to(johns_dir)},{y.relative_to(johns_dir)},{s},{f}\n" for x, y, s, f in rows))
    return path


def test_unwritable_outputs_are_refused_before_any_work(photos: Path, gallery: Path, johns_dir: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pairs = _pairs_csv(johns_dir, tmp_path)
    with locked(tmp_path / "ro") as ro:
        commands = {
            "embed": ["embed", photos, "--out", ro / "e.npz"],
            "eval": ["eval", johns_dir, "--pairs", pairs, "--out", ro / "report"],
            "eval (a new sub-folder)": ["eval", johns_dir, "--pairs", pairs, "--out", ro / "sub" / "report"],
            "compare --plot": ["compare", photos, "--plot", ro / "m.png"],
            "pairs": ["pairs", johns_dir, "--out", ro / "p.csv", "--folds", "2"],
            "gallery export": ["gallery", "export", ro / "g.zip", "-g", gallery],
        }
        for what, args in commands.items():
            t0 = time.perf_counter()
            code, out, err = cli(args, capsys)
            lines = error_lines(err)
            assert code == 2 and len(lines) == 1 and "cannot be written" in lines[0], (what, err)
            assert str(ro) in lines[0], (what, lines)
            assert err.strip() == lines[0] and not out, (what, err, out)  # nothing ran before the refusal
            assert time.perf_counter() - t0 < 5, what
        assert not any(ro.iterdir())


def _lock_after(monkeypatch: pytest.MonkeyPatch, module: str, name: str, folder: Path) -> None:
    """Let ``module.name`` run, then take the output folder's write access away: a late failure."""
    import importlib

    from cli_run import lock

    owner = importlib.import_module(module)
    *path, name = name.split(".")
    for part in path:  # "Class.method"
        owner = getattr(owner, part)
    real = getattr(owner, name)

    def then_lock(*args, **kwargs):
        result = real(*args, **kwargs)
        lock(folder)
        return result

    monkeypatch.setattr(owner, name, then_lock)


def test_a_late_write_failure_is_one_line_and_claims_no_list(photos: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from cli_run import unlock

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _lock_after(monkeypatch, "facefit.engine.engine", "FaceEngine.embed_files", out_dir)
    try:
        code, _, err = cli(["embed", photos, "--out", out_dir / "e.npz"], capsys)
    finally:
        unlock(out_dir)
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and "e.npz: cannot be written" in lines[0], err
    assert "broken.jpg" in err  # the failures are still reported, on stderr ...
    assert "failures.tsv" not in err and "list written" not in err  # ... and no list is claimed
    assert not any(out_dir.iterdir())


def test_late_failures_of_pairs_eval_and_export_are_one_line(gallery: Path, johns_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    from cli_run import unlock

    pairs = _pairs_csv(johns_dir, tmp_path)
    cases = [
        ("facefit.data.pairgen", "make_pairs", ["pairs", johns_dir, "--folds", "2", "--out"], "p.csv"),
        ("facefit.eval.run", "evaluate", ["eval", johns_dir, "--pairs", pairs, "--out"], "report"),
        ("facefit.gallery.gallery.Gallery", "faces", ["gallery", "export", "-g", gallery, "--"], "g.zip"),
    ]
    for module, name, args, target in cases:
        out_dir = tmp_path / f"late-{name}"
        out_dir.mkdir()
        with monkeypatch.context() as m:
            if "." in module and module.endswith("Gallery"):
                from facefit.gallery.gallery import Gallery

                real = Gallery.faces

                def faces_then_lock(self, *a, _real=real, _dir=out_dir):
                    from cli_run import lock

                    result = _real(self, *a)
                    lock(_dir)
                    return result

                m.setattr(Gallery, "faces", faces_then_lock)
            else:
                _lock_after(m, module, name, out_dir)
            try:
                code, _, err = cli([*args, out_dir / target], capsys)
            finally:
                unlock(out_dir)
        lines = error_lines(err)
        assert code == 1 and len(lines) == 1 and f"{target}: cannot be written" in lines[0], (name, err)
        assert not [p for p in out_dir.iterdir() if not p.name.startswith(".")], name


def test_a_gallery_in_a_folder_that_takes_no_files_is_named_for_what_it_is(gallery: Path, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    export = tmp_path / "g.zip"
    assert cli(["gallery", "export", export, "-g", gallery], capsys)[0] == 0
    ro = tmp_path / "ro"
    ro.mkdir()
    shutil.copy(gallery, ro / "g.sqlite")
    with locked(ro):
        for args in (["gallery", "import", export, "-g", ro / "new.sqlite"],
                     ["gallery", "list", "-g", ro / "g.sqlite"]):
            code, _, err = cli(args, capsys)
            lines = error_lines(err)
            assert code == 1 and len(lines) == 1 and f"{ro} does not accept new files" in lines[0], err
            assert "not a facefit gallery" not in err


def test_an_output_that_is_an_input_is_never_replaced(photos: Path, gallery: Path, johns_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    photo = sorted(photos.glob("0*.jpg"))[0]
    metadata = tmp_path / "meta.csv"
    metadata.write_text("path,age\n" + "".join(f"{p.relative_to(johns_dir)},30\n" for p in johns_dir.glob("*/*.jpg")))
    meta_before = metadata.read_text()
    before = photo.read_bytes()
    db_before = gallery.read_bytes()
    for args in (["embed", photos, "--out", photo, "--overwrite"],
                 ["compare", photos, "--plot", photos / "../photos" / photo.name, "--overwrite"],
                 ["gallery", "export", gallery, "-g", gallery, "--overwrite"],
                 ["pairs", johns_dir, "--metadata", metadata, "--out", metadata, "--overwrite"]):
        code, out, err = cli(args, capsys)
        lines = error_lines(err)
        assert code == 2 and len(lines) == 1 and "refusing to replace it" in lines[0], (args, err)
    assert photo.read_bytes() == before and gallery.read_bytes() == db_before and metadata.read_text() == meta_before
