"""Bad sources and options: one line on stderr, a non-zero exit, never a traceback, and fast."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest


def _cli(args: list, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from facefit.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return int(exc.value.code or 0), err


def _one_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("facefit: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _closed_port() -> int:
    """A localhost port nothing listens on (bound, then released), so connecting fails at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stream(source: str, tmp_path: Path, *extra: str) -> list:
    # A gallery that does not exist: bad sources must fail before it is ever opened.
    return ["stream", source, "--gallery", tmp_path / "no-gallery.sqlite", "--headless", *extra]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _cli(_stream(str(tmp_path / "nope.mp4"), tmp_path), capsys)
    assert code != 0 and "nope.mp4: no such file" in _one_error(err)
    assert not (tmp_path / "no-gallery.sqlite").exists()


def test_not_a_video(tmp_path: Path, capsys: pytest.CaptureFixture, lfw: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    code, err = _cli(_stream(str(text), tmp_path), capsys)
    assert code != 0 and "not a video" in _one_error(err)
    photo = next((lfw / "Colin_Powell").glob("*.jpg"))
    code, err = _cli(_stream(str(photo), tmp_path), capsys)
    assert code != 0 and "Colin_Powell" in _one_error(err)
    code, err = _cli(_stream(str(tmp_path), tmp_path), capsys)
    assert code != 0 and "is a folder" in _one_error(err)


def test_bad_webcam_index(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _cli(_stream("97", tmp_path), capsys)
    assert code != 0 and "webcam 97: cannot open" in _one_error(err)


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_unreachable_url_fails_fast(scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"{scheme}://user:pw@127.0.0.1:{_closed_port()}/live"
    start = time.monotonic()
    code, err = _cli(_stream(url, tmp_path, "--timeout", "3"), capsys)
    assert time.monotonic() - start < 10
    line = _one_error(err)
    assert code != 0 and "cannot open the stream" in line
    assert "pw" not in line and "user:***@127.0.0.1" in line  # no password in messages


def test_unsupported_scheme_and_output_format(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _cli(_stream("ftp://example.com/a.mp4", tmp_path), capsys)
    assert code != 0 and "unsupported stream scheme" in _one_error(err)
    code, err = _cli(_stream("0", tmp_path, "--out", tmp_path / "out.gif"), capsys)
    assert code != 0 and "out.gif" in _one_error(err)
    code, err = _cli(_stream("0", tmp_path, "--out", tmp_path / "same.avi", "--events", tmp_path / "same.avi"),
                     capsys)
    assert code != 0 and "different files" in _one_error(err)


def test_missing_gallery_is_one_line(scene, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _cli(["stream", scene.video, "--gallery", tmp_path / "none.sqlite", "--headless"], capsys)
    assert code != 0 and "no gallery here" in _one_error(err)
    assert not (tmp_path / "none.sqlite").exists()


def test_truncated_video_warns_and_keeps_what_it_read(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      lfw: Path, model) -> None:
    from facefit.bench.synthetic_video import Actor, build_video
    from facefit.gallery.gallery import Gallery

    photos = sorted((lfw / "Colin_Powell").glob("*.jpg"))
    video = build_video(tmp_path / "clip.avi", [Actor("Colin_Powell", photos[0])], frames=30, noise=0)
    data = video.path.read_bytes()
    video.path.write_bytes(data[: len(data) // 2])  # as if the copy was cut off
    with Gallery.open(tmp_path / "g.sqlite") as g:
        g.add("Colin_Powell", photos[1:3], model)
    events = tmp_path / "events.jsonl"
    code, err = _cli(["stream", video.path, "--gallery", tmp_path / "g.sqlite", "--events", events, "--headless"],
                     capsys)
    assert code == 3, err
    assert "facefit: warning:" in err and "damaged or truncated" in err
    assert events.read_text().count("Colin_Powell") == 1
