"""The stream end to end on a synthetic video of real faces: names, tracking, outputs, stopping."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.stream.conftest import ENROLLED, FRAMES, STRANGER_ENTERS, STRANGER_LEAVES, Scene, read_video


def _cli(args: list[str]) -> int:
    from facefit.cli.app import main

    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return int(exc.value.code or 0)


def _run(scene: Scene, model, config=None, **kwargs):
    from facefit.gallery.gallery import Gallery
    from facefit.stream.runner import StreamConfig, StreamRunner
    from facefit.stream.source import VideoSource

    with Gallery.open(scene.gallery, create=False) as g, VideoSource(str(scene.video)) as src:
        runner = StreamRunner(config or StreamConfig(), model, g)
        return runner, runner.run(src, **kwargs)


def test_runner_names_enrolled_people_and_calls_the_stranger_unknown(scene: Scene, model, tmp_path: Path) -> None:
    from facefit.stream.events import EventLog, read_events
    from facefit.stream.video_out import VideoOut

    out = tmp_path / "annotated.avi"
    with EventLog(tmp_path / "events.jsonl") as log, VideoOut(out, 25.0, (640, 480)) as video:
        _, stats = _run(scene, model, video=video, events=log)
    events = read_events(tmp_path / "events.jsonl")
    assert stats.frames == FRAMES and len(events) == stats.tracks == 3
    by_name = {e["name"]: e for e in events}
    assert set(by_name) == {*ENROLLED, None}
    for name in ENROLLED:
        e = by_name[name]
        assert e["distance"] < 0.6 and e["end"] == "stream_end"
        assert (e["first_frame"], e["last_frame"], e["frames"]) == (0, FRAMES - 1, FRAMES)
    stranger = by_name[None]
    assert stranger["distance"] > 0.6 and stranger["identifications"] >= 1
    # It is logged when it leaves, before the others end with the stream.
    assert events[0] is not None and events[0]["name"] is None and events[0]["end"] == "lost"
    assert STRANGER_ENTERS <= stranger["first_frame"] <= STRANGER_ENTERS + 3
    assert STRANGER_LEAVES - 4 <= stranger["last_frame"] <= STRANGER_LEAVES - 1
    assert stranger["first_seen_s"] == pytest.approx(stranger["first_frame"] / 25.0)
    # The tracker works: a face is identified a few times, not on every frame.
    face_frames = sum(len(f) for f in scene.truth)
    assert stats.identifications <= face_frames / 10
    assert stats.detection_frames < FRAMES
    assert read_video(out) == (FRAMES, (640, 480))


def test_cli_writes_video_and_events_and_prints_a_summary(scene: Scene, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    out, events = tmp_path / "out" / "annotated.mp4", tmp_path / "events.jsonl"
    code = _cli(["stream", scene.video, "--gallery", scene.gallery, "--out", out, "--events", events, "--headless",
                 "--detect-every", "5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "George_W_Bush" in captured.out and "unknown" in captured.out
    assert "75 frames in" in captured.err and "FPS" in captured.err
    names = sorted(str(json.loads(line)["name"]) for line in events.read_text().splitlines())
    assert names == sorted([*ENROLLED, "None"])
    assert read_video(out) == (FRAMES, (640, 480))


def test_ctrl_c_stops_cleanly_and_still_logs_open_tracks(scene: Scene, model, tmp_path: Path) -> None:
    from facefit.stream.events import EventLog, read_events
    from facefit.stream.video_out import VideoOut

    def interrupt(frame, tracks) -> None:
        if frame.index == 20:
            raise KeyboardInterrupt

    out = tmp_path / "partial.avi"
    with EventLog(tmp_path / "events.jsonl") as log, VideoOut(out, 25.0, (640, 480)) as video:
        _, stats = _run(scene, model, video=video, events=log, on_frame=interrupt)
    assert stats.stopped_by == "ctrl-c" and stats.frames == 20
    events = read_events(tmp_path / "events.jsonl")
    assert len(events) == 3 and {e["end"] for e in events} == {"stream_end"}
    assert read_video(out)[0] == 21  # the frame being handled when Ctrl-C came was already written


def test_every_and_max_frames_limit_what_is_read(scene: Scene, model) -> None:
    from facefit.stream.runner import StreamConfig

    seen = []
    _, stats = _run(scene, model, StreamConfig(every=2, max_frames=10, detect_every=1),
                    on_frame=lambda f, t: seen.append(f.index))
    assert stats.frames == 10 and seen == list(range(0, 20, 2))


def test_existing_outputs_are_refused_without_overwrite(scene: Scene, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    for option, name in (("--events", "events.jsonl"), ("--out", "annotated.avi")):
        path = tmp_path / name
        path.write_text("keep me")
        code = _cli(["stream", scene.video, "--gallery", scene.gallery, option, path, "--headless"])
        err = capsys.readouterr().err
        assert code != 0 and "already exists" in err and "--overwrite" in err
        assert path.read_text() == "keep me"
    link = tmp_path / "same-file.avi"
    os.link(scene.video, link)  # a hard link: another name, the same file
    for option, target in (("--out", scene.video), ("--events", scene.video), ("--out", link)):
        before = Path(scene.video).read_bytes()  # not even with --overwrite: the source itself
        code = _cli(["stream", scene.video, "--gallery", scene.gallery, option, target, "--headless",
                     "--overwrite"])
        assert code != 0 and "is the video being read" in capsys.readouterr().err
        assert Path(scene.video).read_bytes() == before
    code = _cli(["stream", scene.video, "--gallery", scene.gallery, "--events", tmp_path / "events.jsonl",
                 "--headless", "--overwrite", "--max-frames", "5"])
    assert code == 0
    assert "keep me" not in (tmp_path / "events.jsonl").read_text()
