"""The stream's parts on their own: association, votes, policy, config, sources, the event log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facefit.errors import OutputExistsError, UsageError
from facefit.stream.identity import IdentifyPolicy, TrackIdentity
from facefit.stream.tracker import Track, Tracker, greedy_match, iou_matrix


def test_iou_and_greedy_match_pair_each_box_once() -> None:
    tracks = [(0, 0, 10, 10), (20, 0, 30, 10)]
    dets = [(21, 0, 31, 10), (1, 0, 11, 10), (100, 100, 110, 110)]
    iou = iou_matrix(tracks, dets)
    assert iou.shape == (2, 3)
    assert iou[0, 1] == pytest.approx(90 / 110)
    assert iou[0, 2] == 0
    assert sorted(greedy_match(iou, 0.3)) == [(0, 1), (1, 0)]
    assert greedy_match(iou_matrix([], dets), 0.3) == []


class _Still:
    """A propagator that never moves boxes, to test the bookkeeping alone."""

    name = "still"

    def start(self, key, gray, box) -> None:
        pass

    def drop(self, key) -> None:
        pass

    def step(self, gray, boxes):
        return dict(boxes)


def test_tracker_starts_matches_and_ends_tracks() -> None:
    gray = np.zeros((100, 100), np.uint8)
    tracker = Tracker(_Still(), max_missed=1)
    step = tracker.update(gray, 0, 0.0, [(10, 10, 30, 30)])
    assert [t.id for t in step.new] == [1]
    step = tracker.update(gray, 1, 0.04, None)  # between detections: followed, still seen
    assert step.active[0].last_frame == 1 and step.active[0].frames == 2
    step = tracker.update(gray, 2, 0.08, [(12, 11, 32, 31), (60, 60, 80, 80)])
    assert [t.id for t in step.new] == [2]
    assert step.active[0].hits == 2 and step.active[0].detected_on(2)
    step = tracker.update(gray, 3, 0.12, [(60, 60, 80, 80)])  # track 1 missed once: coasting
    assert {t.id: t.confirmed for t in step.active} == {1: False, 2: True}
    step = tracker.update(gray, 4, 0.16, None)
    assert step.active[0].last_frame == 2  # a coasting track is not "seen"
    step = tracker.update(gray, 5, 0.2, [(61, 60, 81, 80)])  # missed twice > max_missed: ended
    assert [t.id for t in step.ended] == [1]
    assert [t.id for t in step.active] == [2]


def test_flow_follows_a_moving_textured_patch() -> None:
    import cv2

    from facefit.stream.propagate import FlowPropagator

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (200, 300), dtype=np.uint8), (0, 0), 1.5)
    flow = FlowPropagator()
    box = (100.0, 50.0, 160.0, 110.0)
    flow.start(1, texture, box)
    moved = flow.step(np.roll(texture, (3, 5), axis=(0, 1)), {1: box})[1]
    assert moved is not None
    assert moved[0] == pytest.approx(105, abs=0.5) and moved[1] == pytest.approx(53, abs=0.5)
    lost = flow.step(np.zeros_like(texture), {1: moved})[1]  # the face vanished
    assert lost is None


def test_identity_vote_is_stable_and_keeps_the_best_distance() -> None:
    ident = TrackIdentity()
    assert ident.pending and ident.name is None
    ident.add("ann", 0.45, hits=1)
    ident.add(None, 0.63, hits=3)
    assert ident.name == "ann"  # a tie goes to the accepted match
    ident.add("ann", 0.40, hits=5)
    ident.add("bob", 0.55, hits=7)
    assert ident.name == "ann" and ident.distance == pytest.approx(0.40)
    assert ident.count == 4


def test_policy_identifies_new_retries_unknown_then_rarely() -> None:
    policy = IdentifyPolicy(reid_every=10, retry_every=2, unknown_tries=2)
    ident = TrackIdentity()
    assert policy.due(ident, hits=1)
    ident.add(None, 0.8, hits=1)
    assert not policy.due(ident, hits=2) and policy.due(ident, hits=3)
    ident.add(None, 0.8, hits=3)
    assert not policy.due(ident, hits=5) and policy.due(ident, hits=13)
    named = TrackIdentity()
    named.add("ann", 0.3, hits=1)
    assert not policy.due(named, hits=10) and policy.due(named, hits=11)


@pytest.mark.parametrize("kwargs", [{"detect_every": 0}, {"tracker": "kcf"}, {"max_frames": 0},
                                    {"threshold": -1.0}, {"iou_min": 0.0}, {"every": 0}])
def test_config_rejects_bad_values(kwargs: dict) -> None:
    from facefit.stream.runner import StreamConfig

    with pytest.raises(UsageError):
        StreamConfig(**kwargs)


def test_source_kinds_and_password_redaction() -> None:
    from facefit.stream.source import classify, redact

    assert classify("0") == "webcam" and classify("12") == "webcam"
    assert classify("rtsp://cam/stream") == "url" and classify("HTTPS://x/y.mjpg") == "url"
    assert classify("clip.mp4") == "file" and classify("0.mp4") == "file"
    with pytest.raises(UsageError, match="unsupported stream scheme"):
        classify("ftp://host/video.mp4")
    assert redact("rtsp://admin:secret@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    assert redact("http://host/x") == "http://host/x"


def test_latest_frame_reader_drops_stale_frames_and_reports_the_end() -> None:
    from facefit.stream.source import _LatestFrameReader

    class Cap:
        def __init__(self) -> None:
            self.n = 0

        def read(self):
            self.n += 1
            return (True, np.full((2, 2, 3), self.n, np.uint8)) if self.n <= 50 else (False, None)

    reader = _LatestFrameReader(Cap(), timeout_s=2.0)
    got = []
    while (item := reader.next()) is not None:
        got.append(item[0])
    reader.stop()
    assert got and got == sorted(got) and got[-1] == 50
    assert len(got) + reader.dropped == 50
    assert "stopped delivering frames" in reader.error


def _record(track: int = 1):
    from facefit.stream.events import TrackRecord

    t = Track(track, (0, 0, 10, 10), first_frame=3, first_s=0.12, last_frame=40, last_s=1.6, frames=38)
    t.identity.add("ann", 0.41234, hits=1)
    return TrackRecord.of(t, "lost")


def test_event_log_is_flushed_per_line_and_never_overwrites(tmp_path: Path) -> None:
    from facefit.stream.events import EventLog, read_events

    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.write(_record())
    first = read_events(path)  # readable before close: a killed run keeps its lines
    assert first == [{"track": 1, "name": "ann", "distance": 0.4123, "first_seen_s": 0.12, "last_seen_s": 1.6,
                      "first_frame": 3, "last_frame": 40, "frames": 38, "identifications": 1, "end": "lost"}]
    log.close()
    with pytest.raises(OutputExistsError):
        EventLog(path)
    with EventLog(path, overwrite=True) as log2:
        log2.write(_record(2))
    assert [json.loads(x)["track"] for x in path.read_text().splitlines()] == [2]


def test_labels_are_ascii_for_opencv_fonts() -> None:
    from facefit.stream.overlay import ascii_label, track_label

    assert ascii_label("José Müller") == "Jose Muller"
    assert ascii_label("王小明") == "?"
    t = Track(7, (0, 0, 1, 1), 0, 0.0, 0, 0.0)
    assert track_label(t) == "#7 ..."
    t.identity.add("Colin_Powell", 0.4, hits=1)
    assert track_label(t) == "#7 Colin Powell 0.40"


def test_video_codec_follows_the_suffix() -> None:
    from facefit.stream.video_out import codec_for

    assert codec_for("a.avi") == "MJPG" and codec_for("b.MP4") == "mp4v"
    with pytest.raises(UsageError, match="video format"):
        codec_for("c.gif")


def test_video_out_fits_frames_of_another_size(tmp_path: Path) -> None:
    from tests.stream.conftest import read_video

    from facefit.stream.video_out import VideoOut

    with VideoOut(tmp_path / "v.avi", 10.0, (64, 48)) as out:
        out.write(np.zeros((48, 64, 3), np.uint8))
        out.write(np.zeros((96, 128, 3), np.uint8))  # a stream that changed resolution
    assert read_video(tmp_path / "v.avi") == (2, (64, 48))
