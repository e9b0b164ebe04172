"""A live source that drops: reopened with back-off, frames continue after the gap, tracks end at it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facefit.errors import UsageError
from facefit.stream import source as source_mod
from facefit.stream.source import SourceError, VideoSource, default_reconnect


class ScriptedCapture:
    """A capture that delivers ``frames`` (or ``n`` grey frames), then fails every read, like a dropped camera."""

    def __init__(self, n: int = 0, frames: list[np.ndarray] | None = None) -> None:
        self.frames = list(frames) if frames is not None else [np.full((48, 64, 3), 100, np.uint8)] * n
        self.released = False

    def read(self):
        if self.frames:
            time.sleep(0.04)  # a 25 fps camera
            return True, self.frames.pop(0).copy()
        return False, None

    def get(self, _prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def scripted_source(monkeypatch: pytest.MonkeyPatch, plan: list, **kw) -> tuple[VideoSource, list]:
    """A live VideoSource whose opens follow ``plan``: a capture, or an exception when the camera is away."""
    opened: list = []
    script = list(plan)

    def fake_open(self, cv2):
        if not script:
            raise SourceError("rtsp://cam/live: cannot open the stream")
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        opened.append(step)
        return step

    monkeypatch.setattr(VideoSource, "_open", fake_open)
    monkeypatch.setattr(source_mod, "RECONNECT_BACKOFF_S", (0.01, 0.02))
    return VideoSource("rtsp://cam/live", timeout_s=0.5, **kw), opened


def test_defaults_reconnect_cameras_and_live_streams_only() -> None:
    assert default_reconnect("0") == default_reconnect("rtsp://cam/live") == 60.0
    assert default_reconnect("srt://cam:9000") == 60.0
    assert default_reconnect("http://host/clip.mp4") == 0.0 and default_reconnect("clip.mp4") == 0.0


def test_a_dropped_stream_comes_back_and_frames_continue(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = ScriptedCapture(5), ScriptedCapture(4)
    src, opened = scripted_source(monkeypatch, [first, SourceError("down"), SourceError("down"), second],
                                  reconnect_s=5)
    notes: list[str] = []
    src.notify = notes.append
    with src:
        frames = list(src.frames())
    assert src.reconnects == 1 and opened == [first, second] and first.released
    assert len(frames) + src.dropped == 5 + 4  # a live source hands out the newest frame: some may be dropped
    assert [f.after_gap for f in frames].count(True) == 1
    assert all(b.index > a.index for a, b in zip(frames, frames[1:]))  # one timeline across the gap
    # The second capture fails for good too: the reason says it did not come back.
    assert "did not come back within 5 s" in src.read_error
    assert any("reconnecting for up to 5 s" in n for n in notes) and any("back after" in n for n in notes)


def test_without_reconnect_the_stream_ends_at_the_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    src, opened = scripted_source(monkeypatch, [ScriptedCapture(3), ScriptedCapture(3)], reconnect_s=0)
    with src:
        frames = list(src.frames())
    assert len(frames) + src.dropped == 3 and src.reconnects == 0 and len(opened) == 1
    assert "stopped delivering frames" in src.read_error


def test_interrupt_stops_the_wait_for_a_lost_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = scripted_source(monkeypatch, [ScriptedCapture(2)], reconnect_s=60)
    monkeypatch.setattr(source_mod, "RECONNECT_BACKOFF_S", (0.2,))
    threading.Timer(0.5, src.interrupt).start()
    start = time.monotonic()
    with src:
        assert len(list(src.frames())) + src.dropped == 2
    assert time.monotonic() - start < 5  # not the 60 s it would otherwise wait
    assert "did not come back" not in src.read_error


def test_reconnect_on_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not video files"):
        VideoSource(str(tmp_path / "clip.mp4"), reconnect_s=10)


def test_tracks_end_at_the_gap_and_the_face_is_found_again(monkeypatch: pytest.MonkeyPatch, lfw: Path,
                                                           tmp_path: Path, model) -> None:
    """Real frames of a face, a drop in the middle: two tracks, one ended by the gap, both named."""
    from facefit.bench.synthetic_video import Actor, build_video
    from facefit.gallery.gallery import Gallery
    from facefit.stream.runner import StreamConfig, StreamRunner
    from facefit.stream.source import VideoSource as FileSource

    photos = sorted((lfw / "Colin_Powell").glob("*.jpg"))
    video = build_video(tmp_path / "clip.avi", [Actor("Colin_Powell", photos[0])], frames=24, noise=0)
    with FileSource(str(video.path)) as f:
        real = [fr.bgr for fr in f.frames()]
    src, _ = scripted_source(monkeypatch, [ScriptedCapture(frames=real[:12]), ScriptedCapture(frames=real[12:])],
                             reconnect_s=5)
    with Gallery.open(tmp_path / "g.sqlite") as g, src:
        g.add("Colin_Powell", photos[1:3], model)
        stats = StreamRunner(StreamConfig(detect_every=3), model, g).run(src)
    assert stats.reconnects == 1 and stats.frames + stats.dropped == 24
    ends = [r.end for r in stats.records]
    assert ends.count("stream_gap") == 1 and len(ends) == 2
    assert all(r.name == "Colin_Powell" for r in stats.records)
