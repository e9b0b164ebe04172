"""Video sources: a webcam index, a video file or a network stream (RTSP/HTTP), read through OpenCV.

Opening checks everything it can up front (the file exists, is a video, the
camera or URL answers, a first frame decodes) and raises one clear
``SourceError``; reading then yields ``Frame``s until the end of the stream.
Live sources (cameras, URLs) are read on a background thread that keeps only
the newest frame, so a slow consumer drops frames instead of falling ever
further behind the live picture.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from facefit.errors import FacefitError, UsageError
from facefit.io.images import is_image_name

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
# Streams that are live by nature: when one drops, the camera is usually still there. Over http(s) the end
# of the stream is more often the end of a file, so those are not reconnected unless asked.
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "udp", "tcp", "srt")
DEFAULT_FPS = 25.0
LIVE_READ_RETRIES = 3  # consecutive failed reads before a live stream counts as lost
DEFAULT_RECONNECT_S = 60.0
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between attempts; the last one repeats


class SourceError(FacefitError):
    """A video source that cannot be opened or read."""


@dataclass
class Frame:
    """One decoded frame: BGR pixels as OpenCV gives them, its number in the source and its time."""

    index: int  # position in the source (counts skipped and dropped frames)
    time_s: float  # seconds from the start: media time for files, wall-clock time for live sources
    bgr: np.ndarray  # (H, W, 3) uint8
    after_gap: bool = False  # the first frame after a lost live stream was reconnected

    def rgb(self) -> np.ndarray:
        import cv2

        return cv2.cvtColor(self.bgr, cv2.COLOR_BGR2RGB)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def classify(spec: str) -> str:
    """``webcam`` (all digits), ``url`` (a known scheme) or ``file``."""
    if spec.isdigit():
        return "webcam"
    scheme = urlsplit(spec).scheme.lower()
    if scheme in URL_SCHEMES:
        return "url"
    if "://" in spec:
        raise UsageError(f"{spec}: unsupported stream scheme {scheme!r}; use one of {', '.join(URL_SCHEMES)}, "
                         f"a video file or a webcam index")
    return "file"


def default_reconnect(spec: str) -> float:
    """How long to keep reconnecting a lost source by default: cameras and live-by-nature streams only."""
    kind = classify(spec)
    if kind == "webcam" or (kind == "url" and urlsplit(spec).scheme.lower() in LIVE_SCHEMES):
        return DEFAULT_RECONNECT_S
    return 0.0


def _quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own log lines out of the CLI; our errors say what failed."""
    import cv2

    # Read by OpenCV when it first initialises FFmpeg; a user's own setting wins.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class VideoSource:
    """An opened source; iterate ``frames()`` and ``close()`` it (or use it as a context manager)."""

    def __init__(self, spec: str | int, *, timeout_s: float = 10.0, reconnect_s: float | None = None) -> None:
        import cv2

        self.spec = str(spec)
        self.kind = classify(self.spec)
        self.name = redact(self.spec) if self.kind == "url" else self.spec
        self.timeout_s = timeout_s
        if reconnect_s is not None and reconnect_s < 0:
            raise UsageError(f"--reconnect must be >= 0 seconds, got {reconnect_s:g}")
        if reconnect_s and self.kind == "file":
            raise UsageError(f"{self.spec}: --reconnect is for cameras and network streams, not video files")
        # A lost live source is opened again for up to this many seconds (0: the stream ends there).
        self.reconnect_s = default_reconnect(self.spec) if reconnect_s is None else float(reconnect_s)
        self.reconnects = 0  # times a lost live source came back
        self.notify: Callable[[str], None] | None = None  # told when the source is lost and when it is back
        self.dropped = 0  # live frames replaced by newer ones before they were used
        self.read_error: str | None = None  # why reading stopped early, if it did
        self._interrupted = threading.Event()
        _quiet_opencv()
        self._cap = self._open(cv2)
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise SourceError(self._first_frame_error())
        self._first: np.ndarray | None = first
        self.height, self.width = first.shape[:2]
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        # Containers sometimes report 0, or nonsense like 1000 or 90000 (a time base).
        self.fps = fps if 0.5 <= fps <= 240 else DEFAULT_FPS
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.kind == "file" else 0
        self.frame_count = count if count > 0 else None
        self._reader: _LatestFrameReader | None = None

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def _open(self, cv2):
        if self.kind == "webcam":
            cap = cv2.VideoCapture(int(self.spec))
            if not cap.isOpened():
                raise SourceError(f"webcam {self.spec}: cannot open it (no such camera, no permission, or it is "
                                  f"in use by another program)")
            return cap
        if self.kind == "file":
            path = Path(self.spec)
            if not path.exists():
                raise SourceError(f"{path}: no such file (SOURCE is a video file, a webcam index such as 0, or an "
                                  f"rtsp:// or http:// URL)")
            if path.is_dir():
                raise SourceError(f"{path}: is a folder, not a video file")
            if not os.access(path, os.R_OK):
                raise SourceError(f"{path}: permission denied")
            if is_image_name(path):
                # FFmpeg would play a photo as a one-frame video; that is a mistake, not a stream.
                raise SourceError(f"{path}: is a photo, not a video (facefit identify names the faces in photos)")
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                raise SourceError(f"{path}: not a video OpenCV can read (unknown format or a damaged file)")
            return cap
        ms = int(self.timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            raise SourceError(f"{self.name}: cannot open the stream (unreachable, refused, timed out after "
                              f"{self.timeout_s:g} s, or not a video stream)")
        return cap

    def _first_frame_error(self) -> str:
        if self.kind == "webcam":
            return f"webcam {self.spec}: opened, but it delivers no frames"
        if self.kind == "file":
            return f"{self.spec}: no frame could be decoded (empty or damaged video)"
        return f"{self.name}: connected, but no frame arrived within {self.timeout_s:g} s"

    def frames(self, *, every: int = 1, max_frames: int | None = None) -> Iterator[Frame]:
        """Decoded frames: every ``every``-th of a file (others are skipped undecoded), the newest of a live one."""
        if every < 1:
            raise UsageError("--every must be >= 1")
        produced = 0
        source = self._live_frames() if self.live else self._file_frames(every)
        for frame in source:
            if max_frames is not None and produced >= max_frames:
                return
            yield frame
            produced += 1

    def _file_frames(self, every: int) -> Iterator[Frame]:
        index = 0
        image = self._take_first()
        while image is not None:
            yield Frame(index, index / self.fps, image)
            for _ in range(every - 1):  # grab() skips a frame without decoding it
                if not self._cap.grab():
                    self._note_file_end(index)
                    return
                index += 1
            index += 1
            ok, image = self._cap.read()
            if not ok:
                self._note_file_end(index)
                return

    def _note_file_end(self, index: int) -> None:
        # A file that ends well before the frame count its header promised is damaged: say so.
        if self.frame_count is not None and index < self.frame_count - 1:
            self.read_error = f"decoding stopped at frame {index} of {self.frame_count} (damaged or truncated file)"

    def _live_frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        yield Frame(0, 0.0, self._take_first())
        offset, last, dropped_before = 0, 0, 0
        while True:
            self._reader = _LatestFrameReader(self._cap, self.timeout_s)
            while (got := self._reader.next()) is not None:
                index, image = got
                last = offset + index
                self.dropped = dropped_before + self._reader.dropped
                yield Frame(last, time.monotonic() - start, image)
            self._reader.stop()
            dropped_before = self.dropped = dropped_before + self._reader.dropped
            lost = self._reader.error
            if not self.reconnect_s or self._interrupted.is_set():
                self.read_error = lost
                return
            if self.notify is not None:
                self.notify(f"{self.name}: {lost}; reconnecting for up to {self.reconnect_s:g} s")
            lost_at = time.monotonic()
            image = self._reconnect()
            if image is not None and self.notify is not None:
                self.notify(f"{self.name}: back after {time.monotonic() - lost_at:.1f} s")
            if image is None:
                self.read_error = (f"{lost}; it did not come back within {self.reconnect_s:g} s"
                                   if not self._interrupted.is_set() else lost)
                return
            self.reconnects += 1
            offset = last = last + 1  # the new capture counts from 1 again: continue after the gap
            yield Frame(last, time.monotonic() - start, image, after_gap=True)

    def _reconnect(self) -> np.ndarray | None:
        """Open the source again, with growing waits, until it gives a frame or ``reconnect_s`` has passed."""
        import cv2

        self._cap.release()
        deadline = time.monotonic() + self.reconnect_s
        attempt = 0
        while time.monotonic() < deadline:
            wait = RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)]
            if self._interrupted.wait(min(wait, max(0.0, deadline - time.monotonic()))):
                return None
            attempt += 1
            try:
                cap = self._open(cv2)
            except SourceError:
                continue
            ok, image = cap.read()
            if ok and image is not None:
                self._cap = cap
                return image
            cap.release()
        return None

    def interrupt(self) -> None:
        """Stop waiting for a lost stream to come back (safe from a signal handler or another thread)."""
        self._interrupted.set()

    def _take_first(self) -> np.ndarray:
        image, self._first = self._first, None
        if image is None:
            raise RuntimeError("frames() can be iterated only once")
        return image

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
        self._cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        count = f", {self.frame_count} frames" if self.frame_count else ""
        what = {"webcam": "webcam", "file": "file", "url": "stream"}[self.kind]
        again = f", reconnects for up to {self.reconnect_s:g} s" if self.live and self.reconnect_s else ""
        return f"{what} {self.name}: {self.width}x{self.height} at {self.fps:g} fps{count}{again}"


class _LatestFrameReader:
    """Reads a live capture on a thread and hands out only the newest frame (cv2 releases the GIL)."""

    def __init__(self, cap, timeout_s: float) -> None:
        self._cap = cap
        self._timeout_s = timeout_s
        self._cond = threading.Condition()
        self._latest: tuple[int, np.ndarray] | None = None
        self._done = False
        self._stop = threading.Event()
        self.error: str | None = None
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="facefit-stream-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        index, failures = 0, 0
        try:
            while not self._stop.is_set():
                ok, image = self._cap.read()
                if not ok or image is None:
                    failures += 1
                    if failures >= LIVE_READ_RETRIES:
                        self.error = f"the stream stopped delivering frames ({failures} failed reads in a row)"
                        return
                    time.sleep(0.05)
                    continue
                failures = 0
                index += 1
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = (index, image)
                    self._cond.notify()
        except Exception as exc:  # a thread's exception would otherwise vanish; report it as the stop reason
            self.error = f"reading the stream failed: {exc}"
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def next(self) -> tuple[int, np.ndarray] | None:
        """The newest unread frame, waiting for one; None once the stream has ended."""
        deadline = time.monotonic() + self._timeout_s
        with self._cond:
            while self._latest is None and not self._done:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.error = f"no frame arrived for {self._timeout_s:g} s"
                    return None
                self._cond.wait(left)
            got, self._latest = self._latest, None
            return got

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._timeout_s + 1.0)
