"""``facefit bench stream``: a tiny run, and a clear message when there are no face photos."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_bench_runs_on_real_faces_and_scores_itself(lfw: Path, tmp_path: Path) -> None:
    from facefit.bench.stream import bench_stream

    rows = bench_stream(lfw, tmp_path, faces=[1], frames=20, detect_every=[3], trackers=["flow"])
    assert [(r.faces, r.write) for r in rows] == [(1, False), (1, True)]
    for r in rows:
        assert r.frames == 20 and r.fps > 0
        assert r.box_iou > 0.6 and r.face_recall > 0.9 and r.named == 1.0
        assert r.identifications == 1  # one face, identified once


def test_bench_without_face_photos_says_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from facefit.cli.app import main

    monkeypatch.delenv("FACEFIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    with pytest.raises(SystemExit) as exc:
        main(["bench", "stream"])
    err = capsys.readouterr().err
    assert exc.value.code != 0 and "Traceback" not in err
    assert "--faces-from" in err and "face photos" in err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "stream", "--faces-from", str(tmp_path / "missing")])
    assert exc.value.code != 0 and "no such folder" in capsys.readouterr().err
