"""``facefit bench serve``: a tiny run over real HTTP on LFW photos, and a clear message without photos."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


def test_bench_serves_real_faces_and_scores_itself(lfw: Path, tmp_path: Path) -> None:
    from facefit.bench.serve import bench_serve

    rows = bench_serve(lfw, tmp_path, persons=4, requests=6, concurrency=[1, 2])
    assert [(r.endpoint, r.concurrency) for r in rows] == [("verify", 1), ("verify", 2), ("identify", 1),
                                                           ("identify", 2)]
    for r in rows:
        assert r.requests == 6 and r.per_s > 0 and 0 < r.p50_ms <= r.p95_ms <= r.p99_ms
    assert all(r.correct == 1.0 for r in rows if r.endpoint == "identify")  # the persons with most LFW photos
    assert all(r.correct >= 0.5 for r in rows if r.endpoint == "verify")


def test_bench_serve_without_face_photos_says_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    from facefit.cli.app import main

    monkeypatch.delenv("FACEFIT_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["bench", "serve"])
    err = capsys.readouterr().err
    assert exc.value.code != 0 and "Traceback" not in err and "--faces-from" in err
