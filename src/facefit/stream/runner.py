"""The stream loop: read, detect now and then, track, identify new faces, draw, write, log."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from facefit.distances import is_threshold
from facefit.errors import UsageError
from facefit.stream import DEFAULT_DETECT_EVERY
from facefit.stream.events import EventLog, TrackRecord
from facefit.stream.identity import IdentifyPolicy
from facefit.stream.propagate import PROPAGATORS
from facefit.stream.source import Frame, VideoSource
from facefit.stream.tracker import Track


@dataclass(frozen=True)
class StreamConfig:
    """How a stream is processed. Frame counts are in processed frames (after ``every``)."""

    detect_every: int = DEFAULT_DETECT_EVERY  # run the detector on every n-th frame, track in between
    min_face: int = 80  # smallest face width (px) the detector looks for; larger = faster
    tracker: str = "flow"  # how boxes move between detections: flow, correlation or none
    iou_min: float = 0.3  # overlap for a detection to continue a track
    max_missed: int = 2  # detection rounds a track may go unfound before it ends
    reid_every: int = 10  # detections between re-identifications of a named track
    retry_every: int = 2  # detections between retries of a still-unknown track
    unknown_tries: int = 3  # answers before an unknown track is checked only every reid_every
    threshold: float | None = None  # accept a match at this distance or less (None: the model's own)
    every: int = 1  # process every n-th frame of a file
    max_frames: int | None = None  # stop after this many processed frames
    torch_threads: int = 1  # one thread embeds a face or two fastest when other work shares the cores

    def __post_init__(self) -> None:
        for name in ("detect_every", "every", "reid_every", "retry_every", "unknown_tries", "torch_threads"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_missed < 0:
            raise UsageError(f"max-missed must be >= 0, got {self.max_missed}")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"max-frames must be >= 1, got {self.max_frames}")
        if self.tracker not in PROPAGATORS:
            raise UsageError(f"unknown tracker {self.tracker!r}; choose one of: {', '.join(PROPAGATORS)}")
        if not 0 < self.iou_min <= 1:
            raise UsageError(f"iou-min must be in (0, 1], got {self.iou_min}")
        if self.threshold is not None and not is_threshold(self.threshold):
            raise UsageError(f"threshold must be > 0, got {self.threshold}")

    @property
    def policy(self) -> IdentifyPolicy:
        return IdentifyPolicy(self.reid_every, self.retry_every, self.unknown_tries)


@dataclass
class StreamStats:
    frames: int = 0  # processed frames
    seconds: float = 0.0  # wall time of the loop, decoding included
    detection_frames: int = 0
    detections: int = 0  # faces found by the detector, over all detection frames
    identifications: int = 0  # faces embedded and searched
    dropped: int = 0  # live frames skipped because processing was slower than the source
    stopped_by: str | None = None  # "ctrl-c", "stop" (stop(), e.g. from SIGTERM) or "window"; None: ran out
    stop_reason: str | None = None  # why reading ended early, when the source broke
    reconnects: int = 0  # times a lost live source came back
    records: list[TrackRecord] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def tracks(self) -> int:
        return len(self.records)

    def persons(self) -> dict[str | None, list[TrackRecord]]:
        """Track records by name (None: unknown faces)."""
        out: dict[str | None, list[TrackRecord]] = {}
        for r in self.records:
            out.setdefault(r.name, []).append(r)
        return out


FrameHook = Callable[[Frame, list[Track]], None]


class StreamRunner:
    """Runs ``StreamConfig`` over a source with a model and (optionally) a gallery to name faces.

    Without a gallery faces are detected and tracked but not identified.
    """

    def __init__(self, config: StreamConfig, model=None, gallery=None) -> None:
        from facefit.engine import FaceEngine
        from facefit.stream.detect import FrameDetector

        if gallery is not None and model is None:
            raise UsageError("identifying faces needs a model")
        self.config = config
        self.model = model
        self.gallery = gallery
        self.threshold = config.threshold
        if gallery is not None:
            gallery.check_model(model)
            if self.threshold is None:
                self.threshold = gallery.default_threshold()
            gallery.index()  # built (or loaded) now, so that neither errors nor build time land mid-stream
        self.detector = FrameDetector(config.min_face)
        # Boxes come from the frame detector and its tracker; the engine finds each model's landmarks in them.
        self.engine = FaceEngine(model) if model is not None else None
        if model is not None:
            # The first call builds the inference copies; do it now rather than when the first face appears.
            model.warm_up()
        self._stop = False

    def stop(self) -> None:
        """Ask the loop to finish after the current frame (safe from a signal handler)."""
        self._stop = True

    def run(self, source: VideoSource, *, video=None, events: EventLog | None = None, window=None,
            draw: bool | None = None, on_frame: FrameHook | None = None) -> StreamStats:
        """Process the source until it ends, ``max_frames``, Ctrl-C or ``stop()``; tracks still open are logged."""
        import cv2

        from facefit.stream.overlay import FpsMeter, draw_tracks
        from facefit.stream.propagate import make_propagator
        from facefit.stream.tracker import Tracker

        cfg = self.config
        threads = _TorchThreads(cfg.torch_threads) if self.model is not None else None
        draw = (video is not None or window is not None) if draw is None else draw
        tracker = Tracker(make_propagator(cfg.tracker), iou_min=cfg.iou_min, max_missed=cfg.max_missed)
        stats, meter = StreamStats(), FpsMeter()
        self._stop = False

        def finish(track: Track, end: str) -> None:
            record = TrackRecord.of(track, end)
            stats.records.append(record)
            if events is not None:
                events.write(record)

        start = time.perf_counter()
        try:
            for n, frame in enumerate(source.frames(every=cfg.every, max_frames=cfg.max_frames)):
                if frame.after_gap:
                    # The picture before the gap says nothing about where faces are now: end every track.
                    for track in tracker.active():
                        finish(track, "stream_gap")
                    tracker = Tracker(make_propagator(cfg.tracker), iou_min=cfg.iou_min, max_missed=cfg.max_missed)
                gray = cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2GRAY)
                detections = None
                if n % cfg.detect_every == 0 or frame.after_gap:
                    detections = self.detector.detect(gray)
                    stats.detection_frames += 1
                    stats.detections += len(detections)
                step = tracker.update(gray, frame.index, frame.time_s, detections)
                if detections is not None and self.gallery is not None:
                    stats.identifications += self._identify(frame, step.active)
                for track in step.ended:
                    finish(track, "lost")
                meter.tick()
                if draw:
                    draw_tracks(frame.bgr, step.active, meter.fps)
                if video is not None:
                    video.write(frame.bgr)
                if on_frame is not None:
                    on_frame(frame, step.active)
                stats.frames += 1
                if window is not None and not window.show(frame.bgr):
                    stats.stopped_by = "window"
                    break
                if self._stop:
                    stats.stopped_by = "stop"
                    break
        except KeyboardInterrupt:
            stats.stopped_by = "ctrl-c"
        finally:
            stats.seconds = time.perf_counter() - start
            if threads is not None:
                threads.restore()
            stats.dropped = source.dropped
            stats.stop_reason = source.read_error
            stats.reconnects = getattr(source, "reconnects", 0)
            for track in tracker.active():
                finish(track, "stream_end")
        return stats

    def _identify(self, frame: Frame, tracks: list[Track]) -> int:
        """Identify the tracks detected on this frame that are due; returns how many were searched."""
        policy = self.config.policy
        due = [t for t in tracks if t.detected_on(frame.index) and policy.due(t.identity, t.hits)]
        if not due:
            return 0
        rgb = frame.rgb()
        embeddings = self.engine.embed([self.engine.align_box(rgb, t.box) for t in due])
        for track, answer in zip(due, self.gallery.identify(embeddings, self.model, threshold=self.threshold)):
            track.identity.add(answer.name, answer.distance, track.hits)
        return len(due)


class _TorchThreads:
    """Sets torch's CPU thread count for the loop and puts the old one back after."""

    def __init__(self, n: int) -> None:
        import torch

        self._torch = torch
        self._before = torch.get_num_threads()
        torch.set_num_threads(n)

    def restore(self) -> None:
        self._torch.set_num_threads(self._before)
